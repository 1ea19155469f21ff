package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/web"
)

// callServer is a complete Sotto server on loopback serving the page at /
// and the API under /v1, as `sotto serve` does.
type callServer struct {
	*testserver.Server
	URL  string
	http *httptest.Server
}

func startCallServer(t *testing.T) *callServer {
	t.Helper()
	return startCallServerWith(t, &testserver.Options{})
}

func startCallServerWith(t *testing.T, opts *testserver.Options) *callServer {
	t.Helper()
	return startCallServerVia(t, opts, nil)
}

// startCallServerVia is startCallServerWith with the event streams served
// by events (given the server), when not nil: a proxy in between.
func startCallServerVia(t *testing.T, opts *testserver.Options, events func(*testserver.Server) http.Handler) *callServer {
	t.Helper()
	if opts.DropTimeout == 0 {
		opts.DropTimeout = 10 * time.Second
	}
	ts := testserver.Start(t, opts)
	mux := http.NewServeMux()
	mux.Handle("/v1/", ts.Signaling)
	if events != nil {
		mux.Handle("GET /v1/rooms/{room}/participants/{id}/events", events(ts))
	}
	mux.Handle("/healthz", ts.Signaling)
	mux.Handle("/", web.Handler())
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		// Event streams are long requests: end them before closing.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ts.Signaling.Shutdown(ctx)
		hs.CloseClientConnections()
		hs.Close()
	})
	if !strings.HasPrefix(hs.URL, "http://127.0.0.1:") {
		t.Fatalf("server not on loopback: %s", hs.URL)
	}
	return &callServer{Server: ts, URL: hs.URL, http: hs}
}

// pageState mirrors window.sottoTest.state().
type pageState struct {
	Screen       string `json:"screen"`
	Role         string `json:"role"`
	Room         string `json:"room"`
	SelfID       string `json:"selfId"`
	Identity     string `json:"identity"`
	Status       string `json:"status"`
	Reconnecting bool   `json:"reconnecting"`
	ClosedReason string `json:"closedReason"`
	Banner       string `json:"banner"`
	InviteLink   string `json:"inviteLink"`
	Door         string `json:"door"`
	Knock        *struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"knock"`
	Knocks []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Identity string `json:"identity"`
		State    string `json:"state"`
		By       string `json:"by"`
	} `json:"knocks"`
	Focused string `json:"focused"`
	Muted   bool   `json:"muted"`
	SendKey *struct {
		SenderIndex uint32 `json:"senderIndex"`
		Generation  uint32 `json:"generation"`
		Step        int    `json:"step"`
	} `json:"sendKey"`
	Participants []struct {
		ID           string `json:"id"`
		Identity     string `json:"identity"`
		Self         bool   `json:"self"`
		Encrypted    bool   `json:"encrypted"`
		SafetyNumber string `json:"safetyNumber"`
		Verified     bool   `json:"verified"`
		Warning      string `json:"warning"`
		Failing      string `json:"failing"`
		Muted        bool   `json:"muted"`
		Note         string `json:"note"`
	} `json:"participants"`
}

// knockOf returns the id of the page's knock by a guest named name in
// state, or "".
func (s pageState) knockOf(name, state string) string {
	for _, k := range s.Knocks {
		if k.Name == name && k.State == state {
			return k.ID
		}
	}
	return ""
}

// peers returns the participants other than the page's own.
func (s pageState) peers() []string {
	var ids []string
	for _, p := range s.Participants {
		if !p.Self {
			ids = append(ids, p.ID)
		}
	}
	return ids
}

// pageStats mirrors window.sottoTest.stats().
type pageStats struct {
	Decrypt *struct {
		Encrypted     int `json:"encrypted"`
		Decrypted     int `json:"decrypted"`
		Malformed     int `json:"malformed"`
		UnknownKID    int `json:"unknown_kid"`
		AuthFailed    int `json:"auth_failed"`
		Replayed      int `json:"replayed"`
		ExpiredKey    int `json:"expired_key"`
		AwaitingKey   int `json:"awaiting_key"`
		WrongSender   int `json:"wrong_sender"`
		ByParticipant map[string]struct {
			Decrypted   int `json:"decrypted"`
			WrongSender int `json:"wrong_sender"`
		} `json:"byParticipant"`
	} `json:"decrypt"`
	Inbound map[string]struct {
		Energy  float64 `json:"energy"`
		Packets int     `json:"packets"`
	} `json:"inbound"`
	Codecs []string `json:"codecs"`
}

func (s pageStats) failures() int {
	d := s.Decrypt
	if d == nil {
		return 0
	}
	return d.Malformed + d.UnknownKID + d.AuthFailed + d.Replayed + d.ExpiredKey + d.WrongSender
}

// page is one browser tab running the client.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
}

func openPage(t *testing.T, name, wav string) *page {
	t.Helper()
	ctx := browsertest.New(t, browsertest.Options{Name: name, FakeAudio: wav, Timeout: 4 * time.Minute})
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1100, 820)); err != nil {
		t.Fatalf("%s: viewport: %v", name, err)
	}
	return &page{t: t, name: name, ctx: ctx}
}

func (p *page) do(actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*wait.Timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", p.name, err)
	}
}

func (p *page) navigate(url string) {
	p.t.Helper()
	p.do(chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("body")))
}

// eval runs a JavaScript expression (awaiting a promise) and decodes its
// JSON result into v.
func (p *page) eval(expr string, v any) error {
	ctx, cancel := context.WithTimeout(p.ctx, 2*wait.Timeout)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

func (p *page) state() pageState {
	p.t.Helper()
	var s pageState
	if err := p.eval(`window.sottoTest.state()`, &s); err != nil {
		p.t.Fatalf("%s: state: %v", p.name, err)
	}
	return s
}

func (p *page) stats() pageStats {
	p.t.Helper()
	var s pageStats
	if err := p.eval(`window.sottoTest.stats()`, &s); err != nil {
		p.t.Fatalf("%s: stats: %v", p.name, err)
	}
	return s
}

// waitState polls the page until ok accepts its state.
func (p *page) waitState(what string, ok func(pageState) bool) pageState {
	p.t.Helper()
	deadline := time.Now().Add(2 * wait.Timeout)
	var s pageState
	for time.Now().Before(deadline) {
		if err := p.eval(`window.sottoTest ? window.sottoTest.state() : null`, &s); err == nil && ok(s) {
			return s
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.t.Fatalf("%s: waiting for %s; last state %+v", p.name, what, s)
	return s
}

// waitFailing waits until the page flags participant's audio as failing.
func (p *page) waitFailing(participant, what string) pageState {
	p.t.Helper()
	return p.waitState(what, func(s pageState) bool {
		for _, q := range s.Participants {
			if q.ID == participant && q.Failing != "" {
				return true
			}
		}
		return false
	})
}

// onNewDocument runs script in every document the page loads from now
// on, before the page's own scripts.
func (p *page) onNewDocument(script, what string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*wait.Timeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: script}); err != nil {
		p.t.Fatalf("%s: install %s: %v", p.name, what, err)
	}
}

func (p *page) waitStats(what string, ok func(pageStats) bool) pageStats {
	p.t.Helper()
	deadline := time.Now().Add(2 * wait.Timeout)
	var s pageStats
	for time.Now().Before(deadline) {
		s = p.stats()
		if ok(s) {
			return s
		}
		time.Sleep(300 * time.Millisecond)
	}
	b, _ := json.Marshal(s)
	p.t.Fatalf("%s: waiting for %s; last stats %s", p.name, what, b)
	return s
}

func (p *page) text(sel string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*wait.Timeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("%s: text of %s: %v", p.name, sel, err)
	}
	return s
}

// startCall starts a private call as name and returns the invite link.
func (p *page) startCall(srv *callServer, name string) pageState {
	p.t.Helper()
	p.navigate(srv.URL + "/")
	p.do(chromedp.WaitVisible(chromedp.CSS("#start-name")),
		chromedp.SendKeys(chromedp.CSS("#start-name"), name),
		chromedp.Click(chromedp.CSS("#start-button")))
	return p.waitState("the call to start", func(s pageState) bool {
		return s.Screen == "call" && s.InviteLink != "" && len(s.Participants) == 1
	})
}

// acceptInvite opens link, checks the inviter is named, and accepts as
// name: the page knocks, and joins once the host lets it in.
func (p *page) acceptInvite(link, inviter, name string) {
	p.t.Helper()
	p.navigate(link)
	p.do(chromedp.WaitVisible(chromedp.CSS("#invite-name")))
	if got := p.text("#invite-title"); !strings.Contains(got, inviter) {
		p.t.Fatalf("%s: invite page says %q, want the inviter %q", p.name, got, inviter)
	}
	p.do(chromedp.SendKeys(chromedp.CSS("#invite-name"), name), chromedp.Click(chromedp.CSS("#accept-button")))
}

// joinAsGuest is acceptInvite, with host letting the guest in.
func (p *page) joinAsGuest(host *page, link, inviter, name string) {
	p.t.Helper()
	p.acceptInvite(link, inviter, name)
	host.letIn(name)
}

// waitKnock waits until the page shows a knock by a guest named name in
// state, and returns its id.
func (p *page) waitKnock(name, state string) string {
	p.t.Helper()
	return p.waitState(fmt.Sprintf("a knock of %s, %s", name, state), func(s pageState) bool {
		return s.knockOf(name, state) != ""
	}).knockOf(name, state)
}

// letIn waits for a guest named name at the page's door and lets it in.
func (p *page) letIn(name string) {
	p.t.Helper()
	id := p.waitKnock(name, "pending")
	p.do(chromedp.Click(chromedp.CSS(`li[data-knock="` + id + `"] .k-admit`)))
}

var safetyNumberPattern = regexp.MustCompile(`^\d{5}( \d{5}){11}$`)

// waitEncrypted waits until the page shows n peers, all end-to-end
// encrypted with a safety number, and returns the state.
func (p *page) waitEncrypted(n int) pageState {
	p.t.Helper()
	return p.waitState(fmt.Sprintf("%d encrypted peers", n), func(s pageState) bool {
		count := 0
		for _, q := range s.Participants {
			if !q.Self && q.Encrypted && q.SafetyNumber != "" {
				count++
			}
		}
		return s.Screen == "call" && count == n && len(s.peers()) == n
	})
}

func peerSafetyNumber(t *testing.T, s pageState, id string) string {
	t.Helper()
	for _, p := range s.Participants {
		if p.ID == id {
			if !safetyNumberPattern.MatchString(p.SafetyNumber) {
				t.Fatalf("safety number %q of %s is not 12 groups of 5 digits", p.SafetyNumber, id)
			}
			return p.SafetyNumber
		}
	}
	t.Fatalf("no participant %s in %+v", id, s.Participants)
	return ""
}

// TestBrowserCall: two browser profiles with fake microphones join one
// call through the page: each sees the other end-to-end encrypted with the
// same safety number, decrypts every frame, and receives audio with energy.
// The call page is screenshotted and checked for a real layout.
func TestBrowserCall(t *testing.T) {
	srv := startCallServer(t)
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)

	started := alice.startCall(srv, "Alice")
	if !strings.HasPrefix(started.InviteLink, srv.URL+"/join#invite=") {
		t.Fatalf("invite link %q: want the invite in the fragment of %s/join", started.InviteLink, srv.URL)
	}
	bob.joinAsGuest(alice, started.InviteLink, "Alice", "Bob")

	for _, c := range checkTalking(t, alice, bob) {
		st := c.stats
		if st.Decrypt.Encrypted == 0 {
			t.Errorf("%s: sent no encrypted frames", c.p.name)
		}
		// Opus alone: no RED, whose redundant copies would travel outside
		// the encrypted frame.
		if len(st.Codecs) == 0 {
			t.Errorf("%s: no codec statistics", c.p.name)
		}
		for _, codec := range st.Codecs {
			if !strings.EqualFold(codec, "audio/opus") {
				t.Errorf("%s: codec %s in use, want Opus only", c.p.name, codec)
			}
		}
		t.Logf("%s: decrypted %d frames from %s, energy %.4f", c.p.name, st.Decrypt.ByParticipant[c.peer].Decrypted, c.peer, st.Inbound[c.peer].Energy)
	}
	for _, p := range []*page{alice, bob} {
		if s := p.state(); s.Banner != "" {
			t.Errorf("%s shows a warning in a healthy call: %q", p.name, s.Banner)
		}
	}
	checkScreenshot(t, alice)
}

// talk is one page of a two-party call, the participant it hears and its
// statistics once that participant's audio decrypts.
type talk struct {
	p     *page
	peer  string
	stats pageStats
}

// checkTalking waits until alice and bob show each other end-to-end
// encrypted with the same safety number and each decrypts more than 50 of
// the other's frames with audio energy; no frame may fail to decrypt.
func checkTalking(t *testing.T, alice, bob *page) []talk {
	t.Helper()
	as := alice.waitEncrypted(1)
	bs := bob.waitEncrypted(1)
	if a, b := peerSafetyNumber(t, as, bs.SelfID), peerSafetyNumber(t, bs, as.SelfID); a != b {
		t.Fatalf("safety numbers differ: Alice sees %q, Bob sees %q", a, b)
	}
	talks := []talk{{p: alice, peer: bs.SelfID}, {p: bob, peer: as.SelfID}}
	for i := range talks {
		c := &talks[i]
		c.stats = c.p.waitStats("decrypted audio with energy", func(s pageStats) bool {
			in, ok := s.Inbound[c.peer]
			return s.Decrypt != nil && s.Decrypt.ByParticipant[c.peer].Decrypted > 50 && ok && in.Energy > 0
		})
		if f := c.stats.failures(); f != 0 {
			b, _ := json.Marshal(c.stats)
			t.Errorf("%s: %d frames failed to decrypt: %s", c.p.name, f, b)
		}
	}
	return talks
}

// checkScreenshot saves a screenshot of the page under the test's temp
// dir and fails on a blank or broken layout: too small a PNG, or too few
// distinct colours.
func checkScreenshot(t *testing.T, p *page) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*wait.Timeout)
	defer cancel()
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), "call.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("SOTTO_SCREENSHOT_DIR"); dir != "" {
		// For a person to look at; the test never reads it back.
		_ = os.WriteFile(filepath.Join(dir, "call.png"), shot, 0o644)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	if len(shot) < 20<<10 {
		t.Errorf("screenshot is %d bytes: the page looks blank", len(shot))
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	colors, stddev := pixelStats(img)
	t.Logf("screenshot: %d distinct colours, luminance stddev %.1f", colors, stddev)
	if colors < 50 || stddev < 10 {
		t.Errorf("screenshot has %d colours and luminance stddev %.1f: not a rendered page", colors, stddev)
	}
}

// pixelStats counts distinct colours and the standard deviation of the
// luminance over the image.
func pixelStats(img image.Image) (colors int, stddev float64) {
	seen := make(map[uint32]bool)
	var sum, sq float64
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			seen[(r>>8)<<16|(g>>8)<<8|bl>>8] = true
			l := 0.299*float64(r>>8) + 0.587*float64(g>>8) + 0.114*float64(bl>>8)
			sum += l
			sq += l * l
			n++
		}
	}
	mean := sum / float64(n)
	return len(seen), math.Sqrt(sq/float64(n) - mean*mean)
}

// TestBrowserCallTwoTabs is the manual check of the issue as a test: one
// browser, the call in one window and the invite opened in another. The
// tabs share the profile, so they share the device identity; the call
// still keys both ways and the safety numbers match.
func TestBrowserCallTwoTabs(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "tab1", browsertest.WriteToneWAV(t, 10*time.Second))
	tab := browsertest.NewTab(t, alice.ctx, "tab2", nil)
	bob := &page{t: t, name: "tab2", ctx: tab}
	bob.do(chromedp.EmulateViewport(1100, 820))

	started := alice.startCall(srv, "Alice")
	bob.joinAsGuest(alice, started.InviteLink, "Alice", "Bob")
	as := alice.waitEncrypted(1)
	bs := bob.waitEncrypted(1)
	if a, b := peerSafetyNumber(t, as, bs.SelfID), peerSafetyNumber(t, bs, as.SelfID); a != b {
		t.Fatalf("safety numbers differ: %q and %q", a, b)
	}
	for _, c := range []struct {
		p    *page
		peer string
	}{{alice, bs.SelfID}, {bob, as.SelfID}} {
		st := c.p.waitStats("decrypted audio with energy", func(s pageStats) bool {
			in := s.Inbound[c.peer]
			return s.Decrypt != nil && s.Decrypt.ByParticipant[c.peer].Decrypted > 50 && in.Energy > 0
		})
		if f := st.failures(); f != 0 {
			t.Errorf("%s: %d frames failed to decrypt", c.p.name, f)
		}
	}
}
