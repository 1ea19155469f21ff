package web_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// notificationTitle is all a notification may say (web/static/chat.js).
const notificationTitle = "New private message in your call"

// notificationScript runs before the page's scripts: it replaces the
// browser's Notification with one that records what the page shows (and
// grants permission when asked), and lets the test put the page in the
// background (window.__hidden) as far as document.hidden is concerned.
const notificationScript = `(() => {
  window.__notes = [];
  window.__hidden = false;
  let permission = 'default';
  Object.defineProperty(Document.prototype, 'hidden', { configurable: true, get: () => window.__hidden });
  Object.defineProperty(Document.prototype, 'visibilityState', { configurable: true, get: () => (window.__hidden ? 'hidden' : 'visible') });
  window.Notification = class {
    constructor(title, options) {
      window.__notes.push({ title: String(title), body: (options && options.body) || '', options: JSON.stringify(options || {}) });
    }
    static get permission() { return permission; }
    static requestPermission() { permission = 'granted'; return Promise.resolve(permission); }
  };
})()`

type note struct {
	Title   string `json:"title"`
	Body    string `json:"body"`
	Options string `json:"options"`
}

// chatState mirrors window.sottoTest.messages().
type chatState struct {
	Refused  int           `json:"refused"`
	Messages []chatMessage `json:"messages"`
}

type chatMessage struct {
	ID       int    `json:"id"`
	Dir      string `json:"dir"`
	From     string `json:"from"`
	Text     string `json:"text"`
	Direct   bool   `json:"direct"`
	Missed   int    `json:"missed"`
	Verified bool   `json:"verified"`
	File     *struct {
		Name string `json:"name"`
		Type string `json:"type"`
		Size int64  `json:"size"`
	} `json:"file"`
	Status     map[string]string `json:"status"`
	StatusText string            `json:"statusText"`
	Progress   *struct {
		Phase string `json:"phase"`
		Done  int64  `json:"done"`
		Total int64  `json:"total"`
	} `json:"progress"`
	Result *struct {
		Size   int64  `json:"size"`
		SHA256 string `json:"sha256"`
	} `json:"result"`
	Error     string `json:"error"`
	ErrorCode string `json:"errorCode"`
}

// find returns the last message that matches.
func (s chatState) find(match func(chatMessage) bool) (chatMessage, bool) {
	for i := len(s.Messages) - 1; i >= 0; i-- {
		if match(s.Messages[i]) {
			return s.Messages[i], true
		}
	}
	return chatMessage{}, false
}

// waitMessage polls the page's messages until one matches and returns it.
func (p *page) waitMessage(what string, match func(chatMessage) bool) chatMessage {
	p.t.Helper()
	deadline := time.Now().Add(2 * wait.Timeout)
	var s chatState
	for time.Now().Before(deadline) {
		if err := p.eval(`window.sottoTest.messages()`, &s); err == nil {
			if m, ok := s.find(match); ok {
				return m
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := json.Marshal(s)
	p.t.Fatalf("%s: waiting for %s; messages %s", p.name, what, b)
	return chatMessage{}
}

// sendText puts text into the message field and sends it to everyone.
func (p *page) sendText(text string) {
	p.t.Helper()
	p.do(chromedp.SetValue(chromedp.CSS("#message-text"), text), chromedp.Click(chromedp.CSS("#message-send")))
}

// attach picks the file at path, which the page sends to everyone.
func (p *page) attach(path string) {
	p.t.Helper()
	p.do(chromedp.SetUploadFiles(chromedp.CSS("#file-input"), []string{path}))
}

// download clicks the Download button of message id and waits until the
// file is decrypted; it returns the message.
func (p *page) download(id int) chatMessage {
	p.t.Helper()
	p.do(chromedp.Click(chromedp.CSS(fmt.Sprintf(`#message-list li[data-message="%d"] .m-download`, id))))
	return p.waitMessage("the file downloaded and decrypted", func(m chatMessage) bool {
		return m.ID == id && (m.Result != nil || m.Error != "")
	})
}

func (p *page) notes() []note {
	p.t.Helper()
	var n []note
	if err := p.eval(`window.__notes`, &n); err != nil {
		p.t.Fatalf("%s: notifications: %v", p.name, err)
	}
	return n
}

// randomFile writes n random bytes to a file called name in a new
// directory and returns its path and content.
func randomFile(t *testing.T, name string, n int) (string, []byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkUploads checks that every blob upload the tap saw is an encrypted
// file (the header, then ciphertext), of one of the sizes given.
func checkUploads(t *testing.T, tap *wireTap, plaintextSizes ...int) {
	t.Helper()
	ups := tap.blobUploads()
	if len(ups) != len(plaintextSizes) {
		t.Fatalf("the tap saw %d blob uploads, want %d", len(ups), len(plaintextSizes))
	}
	for i, up := range ups {
		if !bytes.HasPrefix(up, []byte("SOTF\x01\x00\x00\x40")) || int64(len(up)) != e2ee.EncryptedFileSize(int64(plaintextSizes[i])) {
			t.Errorf("upload %d: %d bytes starting % x, want an encrypted file of %d bytes", i, len(up), up[:min(8, len(up))], plaintextSizes[i])
		}
	}
}

// TestBrowserMessagesAndFiles: two pages exchange messages and 5 MB files
// both ways, through a tap that records everything the server receives
// and sends. Texts arrive in order, named by their sender, and turn
// delivered with the recipient's receipt; the files arrive byte-identical;
// no text, file name or piece of a file appears on the wire or in what the
// blob store was given. With the page in the background, each message
// raises a notification that says only "New private message in your
// call"; in the foreground, none.
func TestBrowserMessagesAndFiles(t *testing.T) {
	srv := startCallServer(t)
	tap := startWireTap(t, srv.URL)
	front := &callServer{Server: srv.Server, URL: tap.URL}
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	bob.onNewDocument(notificationScript, "the notification recorder")

	started := alice.startCall(front, "Alice")
	bob.joinAsGuest(alice, started.InviteLink, "Alice", "Bob")
	aliceID := alice.waitEncrypted(1).SelfID
	bobID := bob.waitEncrypted(1).SelfID

	bob.do(chromedp.Click(chromedp.CSS("#notify-button")))
	var permission string
	if err := bob.eval(`Notification.permission`, &permission); err != nil || permission != "granted" {
		t.Fatalf("bob's notification permission %q, %v", permission, err)
	}

	secrets := []string{"Meet me at the old mill at nine 🌙", "Bring the letters — all of them", "The code word is heliotrope"}
	for i, text := range secrets[:2] {
		from, to, fromID := alice, bob, aliceID
		if i == 1 {
			from, to, fromID = bob, alice, bobID
		}
		from.sendText(text)
		in := to.waitMessage("the text", func(m chatMessage) bool { return m.Dir == "in" && m.Text == text })
		if in.From != fromID || in.Direct || in.Missed != 0 {
			t.Fatalf("%s received %+v", to.name, in)
		}
		from.waitMessage("its receipt", func(m chatMessage) bool { return m.Dir == "out" && m.Text == text && m.StatusText == "delivered" })
	}
	if n := bob.notes(); len(n) != 0 {
		t.Fatalf("bob's page is in front, yet it raised notifications %+v", n)
	}

	// Bob's page goes to the background.
	if err := bob.eval(`window.__hidden = true`, new(bool)); err != nil {
		t.Fatal(err)
	}
	alice.sendText(secrets[2])
	bob.waitMessage("the text sent while in the background", func(m chatMessage) bool { return m.Text == secrets[2] })

	// Files, both ways.
	const size = 5 << 20
	aliceName, bobName := "merger-plan-q3-confidential.pdf", "holiday-photos-private.zip"
	alicePath, aliceFile := randomFile(t, aliceName, size)
	bobPath, bobFile := randomFile(t, bobName, size+777)
	for _, x := range []struct {
		from, to *page
		path     string
		name     string
		content  []byte
	}{{alice, bob, alicePath, aliceName, aliceFile}, {bob, alice, bobPath, bobName, bobFile}} {
		x.from.attach(x.path)
		in := x.to.waitMessage("the file "+x.name, func(m chatMessage) bool { return m.File != nil && m.File.Name == x.name && m.Dir == "in" })
		if in.File.Size != int64(len(x.content)) {
			t.Fatalf("%s: file of %d bytes announced, want %d", x.to.name, in.File.Size, len(x.content))
		}
		got := x.to.download(in.ID)
		if got.Error != "" || got.Result.Size != int64(len(x.content)) || got.Result.SHA256 != sha256Hex(x.content) {
			t.Fatalf("%s: the file it decrypted is not the one sent: %+v", x.to.name, got)
		}
		out := x.from.waitMessage("the file's receipt", func(m chatMessage) bool {
			return m.Dir == "out" && m.File != nil && m.File.Name == x.name && m.StatusText == "delivered"
		})
		if out.Progress == nil || out.Progress.Phase != "done" {
			t.Fatalf("%s: upload progress %+v", x.from.name, out.Progress)
		}
	}

	// Two messages reached bob in the background: two notifications, with
	// nothing of what they carried.
	notes := bob.notes()
	if len(notes) != 2 {
		t.Fatalf("bob's notifications %+v, want 2 (one text, one file)", notes)
	}
	for _, n := range notes {
		if n.Title != notificationTitle || n.Body != "" {
			t.Errorf("notification %+v, want only the title %q", n, notificationTitle)
		}
		for _, s := range append(secrets, aliceName, "Alice", "merger") {
			if strings.Contains(n.Title+n.Body+n.Options, s) {
				t.Errorf("notification %+v gives away %q", n, s)
			}
		}
	}

	// What the server sees: who is in the call, and the envelopes'
	// ciphertext (decoded by the tap), starting as ratchet messages do.
	visible := []string{started.Identity, bob.state().Identity, "\x01\x02"}
	tap.checkNoPlaintext(t, visible, append(secrets, aliceName, bobName), aliceFile, bobFile)
	checkUploads(t, tap, len(aliceFile), len(bobFile))
	for _, p := range []*page{alice, bob} {
		var s chatState
		if err := p.eval(`window.sottoTest.messages()`, &s); err != nil || s.Refused != 0 {
			t.Errorf("%s: %d messages refused (%v)", p.name, s.Refused, err)
		}
	}
}

// goInbox records what a Go caller's Messages delivers.
type goInbox struct {
	mu   sync.Mutex
	msgs []client.Message
}

func (in *goInbox) read(c *client.Call) {
	for m := range c.Messages() {
		in.mu.Lock()
		in.msgs = append(in.msgs, m)
		in.mu.Unlock()
	}
}

func (in *goInbox) wait(t *testing.T, what string, match func(client.Message) bool) client.Message {
	t.Helper()
	var found client.Message
	wait.For(t, what, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, m := range in.msgs {
			if match(m) {
				found = m
				return true
			}
		}
		return false
	})
	return found
}

// TestBrowserGoMessagesAndFiles: a page and a Go SDK caller exchange
// messages and 5 MB files both ways through the tap: each decrypts the
// other's, the files arrive byte-identical, receipts come back, and
// nothing readable crosses the wire. A caller of another room asking for
// one of the files gets blob_not_found.
func TestBrowserGoMessagesAndFiles(t *testing.T) {
	srv := startCallServer(t)
	tap := startWireTap(t, srv.URL)
	front := &callServer{Server: srv.Server, URL: tap.URL}
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 10*time.Second))
	started := alice.startCall(front, "Alice")
	aliceID := started.SelfID
	invite := started.InviteLink[len(front.URL+"/join#invite="):]
	bob := joinGo(t, front, redeem(t, front, alice, invite, "GoBob").Token, false)
	var inbox goInbox
	go inbox.read(bob.call)
	alice.waitEncrypted(1)
	wait.For(t, "the Go caller to get the page's key", func() bool { return bob.encrypted(aliceID) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()

	goText, pageText := "From Go: the vault opens at dawn", "From the page: understood, dawn it is"
	if _, err := bob.call.SendMessage(ctx, goText); err != nil {
		t.Fatal(err)
	}
	in := alice.waitMessage("the Go caller's text", func(m chatMessage) bool { return m.Text == goText })
	if in.From != bob.call.ID() {
		t.Fatalf("page: text from %q, want %q", in.From, bob.call.ID())
	}
	alice.sendText(pageText)
	gm := inbox.wait(t, "the page's text in Go", func(m client.Message) bool { return m.Text == pageText })
	if gm.From.ID != aliceID || !strings.HasPrefix(gm.From.Identity, "Alice-") || gm.Fingerprint == "" {
		t.Fatalf("Go received %+v", gm)
	}
	alice.waitMessage("the Go caller's receipt", func(m chatMessage) bool { return m.Text == pageText && m.StatusText == "delivered" })

	// Go -> page.
	const size = 5 << 20
	goName, pageName := "go-ledger-2026.xlsx", "page-scan-of-passport.png"
	goFile := make([]byte, size)
	rand.Read(goFile)
	if _, err := bob.call.SendFile(ctx, goName, "application/vnd.ms-excel", bytes.NewReader(goFile)); err != nil {
		t.Fatal(err)
	}
	fin := alice.waitMessage("the Go caller's file", func(m chatMessage) bool { return m.File != nil && m.File.Name == goName })
	if fin.File.Type != "application/vnd.ms-excel" || fin.File.Size != size {
		t.Fatalf("page: file %+v", fin.File)
	}
	if got := alice.download(fin.ID); got.Result == nil || got.Result.SHA256 != sha256Hex(goFile) {
		t.Fatalf("page: the file it decrypted is not the one sent: %+v", got)
	}

	// Page -> Go.
	pagePath, pageFile := randomFile(t, pageName, size+1)
	alice.attach(pagePath)
	gf := inbox.wait(t, "the page's file in Go", func(m client.Message) bool { return m.File != nil && m.File.Name == pageName })
	var buf bytes.Buffer
	if err := bob.call.ReceiveFile(ctx, gf.File, &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), pageFile) {
		t.Fatalf("Go: received %d bytes, not the file sent", buf.Len())
	}
	alice.waitMessage("the Go caller's receipt of the file", func(m chatMessage) bool {
		return m.File != nil && m.File.Name == pageName && m.StatusText == "delivered"
	})

	// The id of a file, asked for from another room.
	carol := joinGo(t, front, srv.Token("elsewhere", "carol"), false)
	if err := carol.call.ReceiveFile(ctx, gf.File, &buf); !isCode(err, api.CodeBlobNotFound) {
		t.Fatalf("a file of another room: %v, want %s", err, api.CodeBlobNotFound)
	}

	visible := []string{started.Identity, bob.call.Identity(), "\x01\x02"}
	tap.checkNoPlaintext(t, visible, []string{goText, pageText, goName, pageName, "vnd.ms-excel"}, goFile, pageFile)
	checkUploads(t, tap, len(goFile), len(pageFile))
}

// TestBrowserFileLimits: the page tells its user why the server refused a
// file: over the size cap (blob_too_large), over the room's quota
// (room_quota_exceeded).
func TestBrowserFileLimits(t *testing.T) {
	srv := startCallServerWith(t, &testserver.Options{MaxBlobBytes: 1 << 20, RoomBlobBytes: 2 << 20})
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 5*time.Second))
	started := alice.startCall(srv, "Alice")
	bob := joinGo(t, srv, redeem(t, srv, alice, started.InviteLink[len(srv.URL+"/join#invite="):], "GoBob").Token, false)
	alice.waitEncrypted(1)
	wait.For(t, "the Go caller to be keyed", func() bool { return bob.encrypted(started.SelfID) })

	big, _ := randomFile(t, "big.bin", 1<<20+1)
	alice.attach(big)
	m := alice.waitMessage("the refusal of a file over the cap", func(m chatMessage) bool { return m.File != nil && m.File.Name == "big.bin" && m.Error != "" })
	if m.ErrorCode != string(api.CodeBlobTooLarge) || !strings.Contains(m.Error, "larger than the server accepts") {
		t.Fatalf("oversized file: %+v", m)
	}
	for i := range 3 {
		name := fmt.Sprintf("part%d.bin", i)
		path, _ := randomFile(t, name, 900<<10)
		alice.attach(path)
		m := alice.waitMessage(name+" sent or refused", func(m chatMessage) bool {
			return m.File != nil && m.File.Name == name && (m.Error != "" || len(m.Status) > 0)
		})
		switch {
		case i < 2 && m.Error != "":
			t.Fatalf("%s: %+v", name, m)
		case i == 2 && (m.ErrorCode != string(api.CodeRoomQuotaExceeded) || !strings.Contains(m.Error, "as many files as the server keeps")):
			t.Fatalf("a file over the room's quota: %+v", m)
		}
	}
}

// isCode reports whether err wraps an *api.Error with code.
func isCode(err error, code api.ErrorCode) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Code == code
}

// TestE2EEMessagesInBrowser runs e2ee/testdata/sotto-message-vectors.json
// and the unit tests of the message and file formats (test/files.js) in
// Chromium: every vector of each group must pass, and a tampered,
// truncated or reordered chunk is refused.
func TestE2EEMessagesInBrowser(t *testing.T) {
	srv := e2eeServer(t)
	var v struct {
		Messages []json.RawMessage `json:"messages"`
		Receipts []json.RawMessage `json:"receipts"`
		Files    []json.RawMessage `json:"files"`
		Corrupt  []json.RawMessage `json:"corrupt"`
	}
	readJSON(t, "sotto-message-vectors.json", &v)
	want := map[string]int{
		"messages.messages": len(v.Messages),
		"messages.receipts": len(v.Receipts),
		"messages.files":    len(v.Files),
		"messages.corrupt":  len(v.Corrupt),
	}
	results := runPage(t, srv.URL+"/e2ee/test/files.html", "filesResults")
	got := map[string]int{}
	for _, r := range results {
		got[r.Group]++
		if !r.OK {
			t.Errorf("%s %s: %s", r.Group, r.Name, r.Error)
		}
	}
	for g, n := range want {
		if n == 0 || got[g] != n {
			t.Errorf("group %s: ran %d vectors, the file has %d", g, got[g], n)
		}
	}
	if got["units"] < 8 {
		t.Errorf("only %d unit tests ran", got["units"])
	}
}
