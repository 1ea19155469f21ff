package aiortc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/sdp/v3"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/token"
)

// python is Debian's interpreter, which has python3-aiortc; a pyenv or
// virtualenv python3 earlier on PATH usually does not.
const python = "/usr/bin/python3"

// testTimeout bounds the whole interoperability run.
const testTimeout = 60 * time.Second

// requireAiortc skips the test without aiortc, or fails it on CI
// (CI=true), where .ci/run installs it.
func requireAiortc(t *testing.T) {
	t.Helper()
	out, err := exec.Command(python, "-c", "import aiortc; print(aiortc.__version__)").CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s cannot import aiortc (install the Debian package python3-aiortc): %v\n%s", python, err, out)
		}
		t.Skipf("%s cannot import aiortc (install the Debian package python3-aiortc)", python)
	}
	t.Logf("aiortc %s", strings.TrimSpace(string(out)))
}

// start skips or fails the test without aiortc, and starts the server of a
// test bounded by testTimeout.
func start(t *testing.T) (context.Context, *server) {
	t.Helper()
	requireAiortc(t)
	bin, err := sottoBin()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx, serve(t, ctx, bin)
}

// sottoBin builds the binary once per test run, outside the time the tests
// are bounded by: a cold build on a busy machine takes a while.
var sottoBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sotto-interop")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "sotto")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/sotto").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// binDir holds the binary once sottoBin has run.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// server is a running "sotto serve".
type server struct {
	url    string
	secret []byte
}

var servingLine = regexp.MustCompile(`(?m)^time=\S+ level=INFO msg=serving url=(http://127\.0\.0\.1:\d+) `)

// serve runs bin, "sotto serve", on loopback with ephemeral ports and a
// fresh secret until the test ends. TURN is off: this test is about the
// SDP API, and TURN has its own interoperability test against coturn.
func serve(t *testing.T, ctx context.Context, bin string) *server {
	t.Helper()
	secret := make([]byte, 32)
	rand.Read(secret)
	logPath := filepath.Join(t.TempDir(), "serve.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "serve", "--http", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--turn=false")
	cmd.Env = append(os.Environ(), "SOTTO_SECRET="+hex.EncodeToString(secret), "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			logTail(t, "sotto serve", logPath)
		}
	})
	for {
		b, _ := os.ReadFile(logPath)
		if m := servingLine.FindSubmatch(b); m != nil {
			return &server{url: string(m[1]), secret: []byte(hex.EncodeToString(secret))}
		}
		select {
		case <-exited:
			t.Fatalf("sotto serve exited:\n%s", b)
		case <-ctx.Done():
			t.Fatalf("no serving line:\n%s", b)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// logTail logs the end of a process's log file.
func logTail(t *testing.T, what, path string) {
	b, _ := os.ReadFile(path)
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	t.Logf("%s log (%s):\n%s", what, path, b)
}

func (s *server) token(t *testing.T, room, identity string) string {
	t.Helper()
	tok, err := token.Mint(s.secret, token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tracks reads the relay's count of published tracks from /metrics.
func (s *server) tracks(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^sotto_tracks (\d+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no sotto_tracks in /metrics")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// ---- the Go SDK callers ----

// frameSize is the size of every plaintext frame a Go caller sends.
const frameSize = 24

// plaintext is frame i of name as the Go caller writes it, before SFrame.
func plaintext(name string, i int) []byte {
	return fmt.Appendf(nil, "%-10.10s|plain|%07d", name, i)
}

// goCaller is a Go SDK participant that talks (unless listen-only) and
// records its events and the frames it hears.
type goCaller struct {
	name string
	call *client.Call

	mu     sync.Mutex
	events []client.Event
	heard  map[string]int // frames by publisher identity
	stop   context.CancelFunc
	done   chan struct{}
}

func joinGo(t *testing.T, ctx context.Context, s *server, room, name string, listenOnly bool) *goCaller {
	t.Helper()
	call, err := client.Join(ctx, s.url, s.token(t, room, name), &client.Options{
		IPFilter:   func(ip net.IP) bool { return ip.IsLoopback() },
		ListenOnly: listenOnly,
	})
	if err != nil {
		t.Fatalf("%s joins: %v", name, err)
	}
	g := &goCaller{name: name, call: call, heard: map[string]int{}, done: make(chan struct{})}
	tctx, stop := context.WithCancel(context.Background())
	g.stop = stop
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for e := range call.Events() {
			g.mu.Lock()
			g.events = append(g.events, e)
			g.mu.Unlock()
		}
	}()
	go func() {
		defer wg.Done()
		for f := range call.Frames() {
			g.mu.Lock()
			g.heard[f.From.Identity]++
			g.mu.Unlock()
		}
	}()
	if !listenOnly {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-tctx.Done():
					return
				case <-tick.C:
				}
				if err := call.WriteFrame(plaintext(name, i), 20*time.Millisecond); err != nil {
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(g.done)
	}()
	t.Cleanup(g.leave)
	return g
}

func (g *goCaller) leave() {
	g.stop()
	_ = g.call.Leave()
	<-g.done
}

func (g *goCaller) event(match func(client.Event) bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, e := range g.events {
		if match(e) {
			return true
		}
	}
	return false
}

func (g *goCaller) heardFrom(identity string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.heard[identity]
}

// ---- the aiortc participant ----

// report is one line client.py writes (see README.md).
type report struct {
	Event    string              `json:"event"`
	Response *api.JoinResponse   `json:"response"`
	Offer    string              `json:"offer"`
	Answer   string              `json:"answer"`
	Message  json.RawMessage     `json:"message"`
	Received map[string]received `json:"received"`
	State    string              `json:"state"`
	ID       string              `json:"id"`
	Mid      string              `json:"mid"`
	Status   int                 `json:"status"`
	Body     json.RawMessage     `json:"body"`
}

// received is what arrived on one m-line.
type received struct {
	Packets      int      `json:"packets"`
	SSRCs        []uint32 `json:"ssrcs"`
	PayloadTypes []int    `json:"payload_types"`
	Frames       []struct {
		SSRC    uint32  `json:"ssrc"`
		Seq     uint16  `json:"seq"`
		Payload string  `json:"payload"` // hex
		KID     *uint64 `json:"kid"`
		CTR     *uint64 `json:"ctr"`
		Header  *int    `json:"header"`
	} `json:"frames"`
}

// message decodes r's event-stream message.
func (r report) message() (typ string, m map[string]any) {
	_ = json.Unmarshal(r.Message, &m)
	typ, _ = m["type"].(string)
	return typ, m
}

type pyClient struct {
	t       *testing.T
	name    string
	stdin   io.WriteCloser
	reports chan report
	logPath string // its standard error
	done    chan struct{}
}

func startPy(t *testing.T, s *server, room, name string, args ...string) *pyClient {
	t.Helper()
	args = append([]string{"client.py", "--server", s.url, "--room", room, "--token", s.token(t, room, name), "--loopback"}, args...)
	cmd := exec.Command(python, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &pyClient{t: t, name: name, stdin: stdin, reports: make(chan report, 1024), logPath: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.reports)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var r report
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Errorf("%s: unreadable report %q: %v", name, sc.Bytes(), err)
				continue
			}
			p.reports <- r
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			logTail(t, name, p.logPath)
		}
	})
	return p
}

// joined waits for the client's join and fails the test if it was refused.
func (p *pyClient) joined(ctx context.Context) report {
	p.t.Helper()
	j := p.expect(ctx, "the join", func(r report) bool { return r.Event == "joined" || r.Event == "join_failed" })
	if j.Event != "joined" {
		p.t.Fatalf("%s: join refused: %d %s", p.name, j.Status, j.Body)
	}
	return j
}

func (p *pyClient) command(v any) {
	p.t.Helper()
	b, _ := json.Marshal(v)
	if _, err := p.stdin.Write(append(b, '\n')); err != nil {
		p.t.Fatalf("%s: command: %v", p.name, err)
	}
}

// send has the client write text on its event stream as it is.
func (p *pyClient) send(text string) {
	p.t.Helper()
	p.command(map[string]string{"cmd": "send", "text": text})
}

// expect reads reports until one matches, failing on an error event the
// test did not ask for.
func (p *pyClient) expect(ctx context.Context, what string, match func(report) bool) report {
	p.t.Helper()
	for {
		select {
		case r, ok := <-p.reports:
			if !ok {
				p.t.Fatalf("%s exited waiting for %s", p.name, what)
			}
			if match(r) {
				return r
			}
			if typ, _ := r.message(); typ == api.TypeError {
				p.t.Fatalf("%s: unexpected %s waiting for %s", p.name, r.Message, what)
			}
		case <-ctx.Done():
			p.t.Fatalf("%s: timed out waiting for %s", p.name, what)
		}
	}
}

func (p *pyClient) expectMessage(ctx context.Context, typ string) (report, map[string]any) {
	p.t.Helper()
	r := p.expect(ctx, "a "+typ+" message", func(r report) bool { got, _ := r.message(); return got == typ })
	_, m := r.message()
	return r, m
}

// expectError waits for an error event with code, failing on any other.
func (p *pyClient) expectError(ctx context.Context, code api.ErrorCode, after string) {
	p.t.Helper()
	r := p.expect(ctx, string(code)+" for "+after, func(r report) bool { typ, _ := r.message(); return typ == api.TypeError })
	var e api.ErrorEvent
	if err := json.Unmarshal(r.Message, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		p.t.Fatalf("%s: answered %s with %s, want %s", p.name, after, r.Message, code)
	}
}

// stats asks what arrived so far.
func (p *pyClient) stats(ctx context.Context) map[string]received {
	p.t.Helper()
	p.command(map[string]string{"cmd": "stats"})
	return p.expect(ctx, "stats", func(r report) bool { return r.Event == "stats" }).Received
}

// waitPackets waits until mid got at least n packets since a stats with
// before of them, and returns the stats.
func (p *pyClient) waitPackets(ctx context.Context, mid string, n int, ok func(received) bool) received {
	p.t.Helper()
	for {
		r := p.stats(ctx)[mid]
		if r.Packets >= n && (ok == nil || ok(r)) {
			return r
		}
		select {
		case <-ctx.Done():
			p.t.Fatalf("%s: mid %s got %d packets; wanted %d", p.name, mid, r.Packets, n)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ---- SDP, as a client reads it ----

// mline is what a client needs of one m-line of a server description.
type mline struct {
	mid, direction, msid string
	ssrc                 string
	rtpmap, fmtp         map[string]string // by payload type
	nack                 bool
}

func mlines(t *testing.T, desc string) (session sdp.SessionDescription, out []mline) {
	t.Helper()
	if err := session.UnmarshalString(desc); err != nil {
		t.Fatalf("server description does not parse: %v\n%s", err, desc)
	}
	for _, m := range session.MediaDescriptions {
		l := mline{direction: "sendrecv", rtpmap: map[string]string{}, fmtp: map[string]string{}}
		for _, a := range m.Attributes {
			pt, rest, _ := strings.Cut(a.Value, " ")
			switch a.Key {
			case "mid":
				l.mid = a.Value
			case "msid":
				l.msid = a.Value
			case "ssrc":
				l.ssrc = pt
			case "rtpmap":
				l.rtpmap[pt] = rest
			case "fmtp":
				l.fmtp[pt] = rest
			case "rtcp-fb":
				l.nack = l.nack || rest == "nack"
			case "sendrecv", "sendonly", "recvonly", "inactive":
				l.direction = a.Key
			}
		}
		out = append(out, l)
	}
	return session, out
}

// checkCodec checks one server m-line: Opus under the client's payload
// type only, with the stated format, and NACK only if offered.
func checkCodec(t *testing.T, what string, l mline, pt string, nack bool) {
	t.Helper()
	if len(l.rtpmap) != 1 || l.rtpmap[pt] != "opus/48000/2" {
		t.Errorf("%s, mid %s: rtpmap %v, want Opus under the client's payload type %s alone", what, l.mid, l.rtpmap, pt)
	}
	if l.fmtp[pt] != "minptime=10;useinbandfec=1" {
		t.Errorf("%s, mid %s: fmtp %q, want the documented minptime=10;useinbandfec=1", what, l.mid, l.fmtp[pt])
	}
	if l.nack != nack {
		t.Errorf("%s, mid %s: NACK %v, want it exactly when the client offered it (%v)", what, l.mid, l.nack, nack)
	}
}

func byMsid(ls []mline, participant string) (mline, bool) {
	for _, l := range ls {
		if l.msid == participant+" audio-"+participant {
			return l, true
		}
	}
	return mline{}, false
}

func byMid(ls []mline, mid string) mline {
	for _, l := range ls {
		if l.mid == mid {
			return l
		}
	}
	return mline{}
}

// checkSFrame checks the frames received on one m-line from a Go caller:
// each one an SFrame frame with a KID, the whole of it exactly header,
// a plaintext's worth of ciphertext and a 16-byte tag, none of it the
// plaintext the caller wrote. It returns the sender index of the KIDs.
func checkSFrame(t *testing.T, from string, r received) uint64 {
	t.Helper()
	if len(r.Frames) == 0 {
		t.Fatalf("no frames from %s", from)
	}
	marker := []byte("|plain|")
	var index uint64
	var lastCTR uint64
	for i, f := range r.Frames {
		b, err := hex.DecodeString(f.Payload)
		if err != nil || f.KID == nil || f.Header == nil {
			t.Fatalf("frame %d from %s is not SFrame: %s", i, from, f.Payload)
		}
		if len(b) != *f.Header+frameSize+16 {
			t.Errorf("frame %d from %s: %d bytes, want header %d + %d + 16-byte tag", i, from, len(b), *f.Header, frameSize)
		}
		if bytes.Contains(b, marker) || bytes.Contains(b, []byte(from)) {
			t.Fatalf("frame %d from %s carries its plaintext: %q", i, from, b)
		}
		if i == 0 {
			index = *f.KID >> 16
		} else if *f.KID>>16 != index {
			t.Errorf("frame %d from %s: KID %#x, sender index changed from %#x", i, from, *f.KID, index)
		}
		if i > 0 && *f.CTR <= lastCTR && *f.KID == *r.Frames[i-1].KID {
			t.Errorf("frame %d from %s: CTR %d after %d", i, from, *f.CTR, lastCTR)
		}
		lastCTR = *f.CTR
	}
	t.Logf("%s: %d frames checked, SFrame under sender index %#x", from, len(r.Frames), index)
	return index
}

// framesAfter keeps the frames of r after the first whose KID has sender
// index other than skip.
func framesAfter(r received, skip uint64) received {
	for i, f := range r.Frames {
		if f.KID != nil && *f.KID>>16 != skip {
			r.Frames = r.Frames[i:]
			return r
		}
	}
	r.Frames = nil
	return r
}

// TestAiortcClient runs a Sotto call with an aiortc participant among Go
// SDK callers, through a real "sotto serve".
func TestAiortcClient(t *testing.T) {
	ctx, s := start(t)
	const room = "interop"

	alice := joinGo(t, ctx, s, room, "alice", false)
	py := startPy(t, s, room, "aiortc")

	// The join: the answer states the relay's parameters under aiortc's
	// payload type for Opus, and nothing needs TURN.
	j := py.joined(ctx)
	jr := j.Response
	_, offered := mlines(t, j.Offer)
	pt := ""
	for p, enc := range offered[0].rtpmap {
		if strings.EqualFold(enc, "opus/48000/2") {
			pt = p
		}
	}
	if pt == "" || offered[0].nack {
		t.Fatalf("aiortc's offer: Opus under %q, NACK %v; the test expects Opus without NACK", pt, offered[0].nack)
	}
	_, answer := mlines(t, jr.SDP)
	if len(answer) != 1 || answer[0].direction != "recvonly" {
		t.Errorf("answer m-lines %+v, want one recvonly", answer)
	}
	checkCodec(t, "answer", answer[0], pt, false)
	if jr.ICEServers == nil || len(jr.ICEServers) != 0 {
		t.Errorf("ice_servers %v with --turn=false, want []", jr.ICEServers)
	}
	if len(jr.Participants) != 1 || jr.Participants[0].ID != alice.call.ID() || !jr.Participants[0].Encrypted() {
		t.Errorf("join lists %+v, want alice, encrypted", jr.Participants)
	}
	_, w := py.expectMessage(ctx, api.TypeWelcome)
	t.Logf("welcome %v", w)

	// Alice's track comes in an offer, as SFrame.
	offerWith := func(who string) (sdp.SessionDescription, []mline) {
		for {
			_, m := py.expectMessage(ctx, api.TypeOffer)
			session, ls := mlines(t, m["sdp"].(string))
			if who == "" {
				return session, ls
			}
			if _, ok := byMsid(ls, who); ok {
				return session, ls
			}
		}
	}
	session, ls := offerWith(alice.call.ID())
	// aiortc offers no cryptex, so the relay proposes none (API.md).
	if _, ok := session.Attribute("cryptex"); ok {
		t.Errorf("server offer with a=cryptex to a client that did not offer it")
	}
	la, _ := byMsid(ls, alice.call.ID())
	for _, l := range ls[1:] {
		checkCodec(t, "offer", l, pt, false)
	}
	if la.direction != "sendonly" {
		t.Errorf("alice's m-line is %s, want sendonly", la.direction)
	}
	ansr := py.expect(ctx, "its answer", func(r report) bool { return r.Event == "answered" })
	indexA := checkSFrame(t, "alice", py.waitPackets(ctx, la.mid, 50, nil))

	// Alice sees a participant that does not encrypt, and does not take its
	// plain Opus for a decryption failure.
	pyID := jr.ParticipantID
	wait.Until(ctx, t, "alice sees aiortc as not encrypted", func() bool {
		return alice.event(func(e client.Event) bool {
			n, ok := e.(client.PeerNotEncrypted)
			return ok && n.Participant.ID == pyID
		})
	})
	wait.Until(ctx, t, "alice drops aiortc's plain frames", func() bool { return alice.call.Stats().Dropped[client.DropNotEncrypted] >= 25 })
	if n := alice.call.Stats().DecryptFailures(); n != 0 {
		t.Errorf("alice: %d decryption failures from aiortc's plain Opus", n)
	}

	// Bob joins: a new m-line. Bob leaves: it goes inactive.
	bob := joinGo(t, ctx, s, room, "bob", false)
	_, ls = offerWith(bob.call.ID())
	lb, _ := byMsid(ls, bob.call.ID())
	py.expect(ctx, "its answer", func(r report) bool { return r.Event == "answered" })
	rb := py.waitPackets(ctx, lb.mid, 50, nil)
	indexB := checkSFrame(t, "bob", rb)
	if indexB == indexA {
		t.Errorf("alice and bob under one sender index %#x", indexA)
	}
	bob.leave()
	for {
		_, m := py.expectMessage(ctx, api.TypeLeft)
		if p, _ := m["participant"].(map[string]any); p["id"] == bob.call.ID() {
			break
		}
	}
	for {
		_, ls = offerWith("")
		if l := byMid(ls, lb.mid); l.direction == "inactive" && l.msid == "" {
			break
		}
	}
	py.expect(ctx, "its answer", func(r report) bool { return r.Event == "answered" })

	// Carol takes over Bob's m-line: same mid, same SSRC, Carol's msid.
	carol := joinGo(t, ctx, s, room, "carol", false)
	_, ls = offerWith(carol.call.ID())
	lc, _ := byMsid(ls, carol.call.ID())
	if lc.mid != lb.mid || lc.ssrc != lb.ssrc {
		t.Errorf("carol on mid %s SSRC %s; want bob's m-line reused (mid %s SSRC %s)", lc.mid, lc.ssrc, lb.mid, lb.ssrc)
	}
	if len(ls) != 3 {
		t.Errorf("%d m-lines after reuse, want 3", len(ls))
	}
	py.expect(ctx, "its answer", func(r report) bool { return r.Event == "answered" })
	rc := py.waitPackets(ctx, lc.mid, rb.Packets+50, func(r received) bool { return len(framesAfter(r, indexB).Frames) >= 20 })
	indexC := checkSFrame(t, "carol", framesAfter(rc, indexB))
	if indexC == indexA || indexC == indexB {
		t.Errorf("carol's sender index %#x is alice's or bob's", indexC)
	}

	// Everything the API refuses, refused as documented.
	line := ""
	for l := range strings.SplitSeq(j.Offer, "\r\n") {
		if strings.HasPrefix(l, "a=candidate:") {
			line = strings.TrimPrefix(l, "a=")
			break
		}
	}
	ufrag := regexp.MustCompile(`a=ice-ufrag:(\S+)`).FindStringSubmatch(j.Offer)[1]
	cand := func(fields string) string {
		return `{"type": "candidate", "candidate": {"candidate": "` + line + `"` + fields + `}}`
	}
	for _, bad := range []struct {
		what, text string
		code       api.ErrorCode
	}{
		{"a candidate for an unknown sdpMid", cand(`, "sdpMid": "99"`), api.CodeNegotiation},
		{"a candidate without sdpMid or sdpMLineIndex", cand(``), api.CodeNegotiation},
		{"a candidate for an sdpMLineIndex out of range", cand(`, "sdpMLineIndex": 42`), api.CodeNegotiation},
		{"a candidate with a stray usernameFragment", cand(`, "sdpMid": "0", "usernameFragment": "` + ufrag + `~"`), api.CodeNegotiation},
		{"a candidate line that does not parse", `{"type": "candidate", "candidate": {"candidate": "candidate:x", "sdpMid": "0"}}`, api.CodeNegotiation},
		{"an answer with no offer pending", `{"type": "answer", "sdp": ` + strconv.Quote(ansr.Answer) + `}`, api.CodeNegotiation},
		{"an unknown type", `{"type": "dance"}`, api.CodeUnknownMessageType},
		{"a message without type", `{"sdp": "x"}`, api.CodeBadRequest},
		{"not JSON", `not json`, api.CodeInvalidJSON},
		{"an envelope to nobody", `{"type": "envelope", "to": "p_nobody", "data": "AA==", "id": 7}`, api.CodeUnknownRecipient},
	} {
		py.send(bad.text)
		py.expectError(ctx, bad.code, bad.what)
	}
	// A candidate that applies is taken without a word: the next error is
	// about the next message.
	py.send(cand(`, "sdpMid": "0", "usernameFragment": "` + ufrag + `"`))
	py.send(`{"type": "dance"}`)
	py.expectError(ctx, api.CodeUnknownMessageType, "an unknown type after a good candidate")

	// Leave: closed, and the others are told.
	py.send(`{"type": "leave"}`)
	if _, m := py.expectMessage(ctx, api.TypeClosed); m["reason"] != api.ReasonLeft {
		t.Errorf("closed %v, want reason left", m)
	}
	py.expect(ctx, "the stream to close", func(r report) bool { return r.Event == "stream_closed" })
	wait.Until(ctx, t, "alice sees aiortc leave", func() bool {
		return alice.event(func(e client.Event) bool {
			l, ok := e.(client.ParticipantLeft)
			return ok && l.Participant.ID == pyID && l.Reason == api.ReasonLeft
		})
	})
	if alice.heardFrom("carol") == 0 {
		t.Error("alice never heard carol")
	}
}

// TestAiortcListenOnly: a listen-only participant, on aiortc and with the
// Go SDK option, receives everyone and publishes nothing.
func TestAiortcListenOnly(t *testing.T) {
	ctx, s := start(t)
	const room = "listen"

	alice := joinGo(t, ctx, s, room, "alice", false)
	goListener := joinGo(t, ctx, s, room, "golistener", true)
	py := startPy(t, s, room, "pylistener", "--listen-only")
	j := py.joined(ctx)
	if _, ls := mlines(t, j.Offer); len(ls) != 1 || ls[0].direction != "recvonly" {
		t.Fatalf("aiortc's listen-only offer %+v, want one recvonly m-line", ls)
	}
	if _, ls := mlines(t, j.Response.SDP); len(ls) != 1 || ls[0].direction != "inactive" || ls[0].msid != "" {
		t.Errorf("answer to a listen-only offer %+v, want its m-line inactive", ls)
	}
	var la mline
	for {
		_, m := py.expectMessage(ctx, api.TypeOffer)
		_, ls := mlines(t, m["sdp"].(string))
		if l, ok := byMsid(ls, alice.call.ID()); ok {
			la = l
			if _, ok := byMsid(ls, goListener.call.ID()); ok {
				t.Errorf("the listener was offered the Go listener's track")
			}
			break
		}
	}
	py.expect(ctx, "its answer", func(r report) bool { return r.Event == "answered" })
	checkSFrame(t, "alice", py.waitPackets(ctx, la.mid, 50, nil))
	wait.Until(ctx, t, "the Go listener hears alice", func() bool { return goListener.heardFrom("alice") >= 50 })
	if err := goListener.call.WriteFrame([]byte("x"), 20*time.Millisecond); !errors.Is(err, client.ErrListenOnly) {
		t.Errorf("Go listener WriteFrame: %v, want ErrListenOnly", err)
	}
	if n := s.tracks(t); n != 1 {
		t.Errorf("the relay forwards %d published tracks, want alice's alone", n)
	}
	for _, id := range []string{goListener.call.ID(), j.Response.ParticipantID} {
		wait.Until(ctx, t, "alice sees the listeners", func() bool {
			return alice.event(func(e client.Event) bool {
				pj, ok := e.(client.ParticipantJoined)
				return ok && pj.Participant.ID == id
			})
		})
	}
}
