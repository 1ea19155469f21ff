package web_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// Resumable calls in the page (issue 11): a real "sotto serve" process
// is killed or stopped and started again on the same ports mid-call, and
// the pages rejoin by themselves.

// sottoProcess is a "sotto serve" that can be stopped and started again
// on the same ports.
type sottoProcess struct {
	t      *testing.T
	bin    string
	args   []string
	url    string
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan struct{}
	// spawned is when the current process was started.
	spawned time.Time
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePort returns a loopback port of network ("tcp" or "udp") that was
// free a moment ago.
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// startSottoProcess builds the binary and runs "sotto serve" on loopback
// (HTTP and media UDP on fixed free ports; no ICE-TCP, no TURN).
func startSottoProcess(t *testing.T) *sottoProcess {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not in PATH")
	}
	bin := filepath.Join(t.TempDir(), "sotto")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/sotto-voice/sotto/cmd/sotto").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	httpPort := freePort(t, "tcp")
	p := &sottoProcess{t: t, bin: bin, url: fmt.Sprintf("http://127.0.0.1:%d", httpPort), args: []string{
		"serve", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--udp-port", strconv.Itoa(freePort(t, "udp")),
		"--tcp-port", "-1", "--turn=false", "--secret", "resume-test-secret-0123456789",
	}}
	t.Cleanup(func() {
		if p.cmd != nil {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("sotto serve stderr:\n%s", p.stderr.String())
		}
	})
	p.start()
	return p
}

// start runs the server and waits until it answers /healthz.
func (p *sottoProcess) start() {
	p.t.Helper()
	cmd := exec.Command(p.bin, p.args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOTTO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "XDG_CONFIG_HOME="+p.t.TempDir())
	if p.stderr == nil {
		p.stderr = &syncBuffer{}
	}
	cmd.Stderr = p.stderr
	p.spawned = time.Now()
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.cmd, p.exited = cmd, exited
	wait.For(p.t, "sotto serve to answer /healthz", func() bool {
		resp, err := http.Get(p.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// stop ends the server with sig and waits for it to exit.
func (p *sottoProcess) stop(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(wait.Timeout):
		p.t.Fatalf("sotto serve still running %v after %v", wait.Timeout, sig)
	}
	p.cmd = nil
}

// peerIdentities returns the identities of the other participants the
// page lists.
func (s pageState) peerIdentities() []string {
	var out []string
	for _, q := range s.Participants {
		if !q.Self {
			out = append(out, q.Identity)
		}
	}
	return out
}

// safetyNumbers returns the safety number the page shows for each peer,
// by identity.
func (s pageState) safetyNumbers() map[string]string {
	out := map[string]string{}
	for _, q := range s.Participants {
		if !q.Self {
			out[q.Identity] = q.SafetyNumber
		}
	}
	return out
}

// recordStatus makes the page log every text its call status shows, with
// the time, from now on.
func (p *page) recordStatus() {
	p.t.Helper()
	var ok bool
	err := p.eval(`(() => {
		const el = document.getElementById('call-status');
		window.statusLog = [{t: Date.now(), s: el.textContent}];
		new MutationObserver(() => window.statusLog.push({t: Date.now(), s: el.textContent}))
			.observe(el, {childList: true, characterData: true, subtree: true});
		return true;
	})()`, &ok)
	if err != nil || !ok {
		p.t.Fatalf("%s: record the status: %v", p.name, err)
	}
}

type statusEntry struct {
	T int64  `json:"t"` // unix ms
	S string `json:"s"`
}

func (p *page) statusLog() []statusEntry {
	p.t.Helper()
	var log []statusEntry
	if err := p.eval(`window.statusLog`, &log); err != nil {
		p.t.Fatalf("%s: status log: %v", p.name, err)
	}
	return log
}

// hearsAll reports whether the page is in the call as another participant
// than former, connected, and decrypts and plays audio from each of
// identities.
func (p *page) hearsAll(identities []string, former string) bool {
	s := p.state()
	if s.Screen != "call" || s.Reconnecting || s.Status != "connected" || s.SelfID == former {
		return false
	}
	ids := map[string]string{}
	for _, q := range s.Participants {
		ids[q.Identity] = q.ID
	}
	st := p.stats()
	for _, identity := range identities {
		id, ok := ids[identity]
		if !ok || st.Decrypt == nil || st.Decrypt.ByParticipant[id].Decrypted < 10 || st.Inbound[id].Energy <= 0 {
			return false
		}
	}
	return true
}

// TestBrowserResumesAfterServerKilled: two pages talk; the server is
// killed (SIGKILL) and started again on the same ports. Nobody touches the
// pages: each says "Reconnecting…", rejoins the room with its token,
// agrees new keys with the other and is back to normal, with the same
// people (the same safety numbers) and no decryption failure.
func TestBrowserResumesAfterServerKilled(t *testing.T) { testBrowserServerRestart(t, syscall.SIGKILL) }

// TestBrowserResumesAfterServerStopped: the same across a SIGTERM (a
// deploy): the server says server_shutdown with a retry hint, which the
// pages follow.
func TestBrowserResumesAfterServerStopped(t *testing.T) { testBrowserServerRestart(t, syscall.SIGTERM) }

func testBrowserServerRestart(t *testing.T, sig syscall.Signal) {
	browsertest.Require(t)
	srvProc := startSottoProcess(t)
	srv := &callServer{URL: srvProc.url} // all the page helpers use of a server
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	bob.joinAsGuest(alice, alice.startCall(srv, "Alice").InviteLink, "Alice", "Bob")
	pages := []*page{alice, bob}
	before := map[*page]pageState{}
	peers := map[*page][]string{}
	for _, pg := range pages {
		pg.waitEncrypted(1)
		s := pg.state()
		wait.For(t, pg.name+" to hear the other", func() bool { return pg.hearsAll(s.peerIdentities(), "") })
		before[pg], peers[pg] = s, s.peerIdentities()
		pg.recordStatus()
	}

	stopped := time.Now()
	srvProc.stop(sig)
	srvProc.start()
	spawned := srvProc.spawned

	// Polled in turn: each time is an upper bound, by a poll's length.
	pending := map[*page]bool{alice: true, bob: true}
	var worst time.Duration
	for deadline := spawned.Add(3 * wait.Timeout); len(pending) > 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for pg := range pending {
			if pg.hearsAll(peers[pg], before[pg].SelfID) {
				after := time.Since(spawned)
				t.Logf("%v: %s hears %v again %v after the new server process started", sig, pg.name, peers[pg], after.Round(time.Millisecond))
				worst = max(worst, after)
				delete(pending, pg)
			}
		}
	}
	for pg := range pending {
		t.Fatalf("%s does not hear %v %v after the new server started; state %+v", pg.name, peers[pg], time.Since(spawned).Round(time.Millisecond), pg.state())
	}
	t.Logf("%v: no server for %v; the pages hear each other %v after the new process started (%v after the stop)",
		sig, spawned.Sub(stopped).Round(time.Millisecond), worst.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	// The pages notice a crash when their event stream's reconnect is
	// refused (the first try comes 250 ms after the drop, the next a
	// second later), then rejoin and agree new keys; the machine is shared.
	if worst > 10*time.Second {
		t.Errorf("the pages heard each other again %v after the new server started, want within 10 s", worst)
	}

	for _, pg := range pages {
		s, b := pg.state(), before[pg]
		if s.Status != "connected" || s.Banner != "" || s.Screen != "call" {
			t.Errorf("%s: screen %q, status %q, banner %q after the rejoin, want the call, connected, no banner", pg.name, s.Screen, s.Status, s.Banner)
		}
		if s.SelfID == b.SelfID {
			t.Errorf("%s: still participant %s: no rejoin", pg.name, s.SelfID)
		}
		// The same people, recognised by identity under their new ids,
		// with the same identity keys.
		want, got := b.safetyNumbers(), s.safetyNumbers()
		if len(got) != len(want) {
			t.Errorf("%s lists %v after the rejoin, want %v", pg.name, got, want)
		}
		for id, sn := range want {
			if got[id] != sn {
				t.Errorf("%s: safety number of %s %q after the rejoin, want %q as before", pg.name, id, got[id], sn)
			}
		}
		for _, q := range s.Participants {
			if q.Warning != "" || !q.Self && !q.Encrypted {
				t.Errorf("%s: %s encrypted %v, warning %q", pg.name, q.Identity, q.Encrypted, q.Warning)
			}
		}
		if st := pg.stats(); st.failures() != 0 {
			t.Errorf("%s: %d frames failed to decrypt after the rekey", pg.name, st.failures())
		}
		// What the person saw: "Reconnecting…" after the stop, then
		// "connected", with no click in between.
		var texts []string
		reconnecting := false
		for _, e := range pg.statusLog() {
			texts = append(texts, e.S)
			reconnecting = reconnecting || e.S == "Reconnecting…" && e.T >= stopped.UnixMilli()
		}
		if !reconnecting || texts[len(texts)-1] != "connected" {
			t.Errorf("%s showed %q, want \"Reconnecting…\" after the stop and \"connected\" at the end", pg.name, texts)
		}
		t.Logf("%s showed %q", pg.name, texts)
	}
}
