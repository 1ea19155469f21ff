package web_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// mediaPath is the media path a page reports: its selected candidate
// pair, and every local candidate.
type mediaPath struct {
	Local  string   `json:"local"`
	Remote string   `json:"remote"`
	Locals []string `json:"locals"`
}

func (p *page) mediaPath() mediaPath {
	p.t.Helper()
	var path *mediaPath
	if err := p.eval(`window.sottoTest.stats().then((s) => s.path)`, &path); err != nil || path == nil {
		p.t.Fatalf("%s: media path: %v (%v)", p.name, path, err)
	}
	return *path
}

func (p *page) iceRestarts() int {
	p.t.Helper()
	var n int
	if err := p.eval(`window.sottoTest.state().iceRestarts`, &n); err != nil {
		p.t.Fatalf("%s: ICE restarts: %v", p.name, err)
	}
	return n
}

// usableIPTables finds iptables, or skips the test without it (fails it on
// CI, where it must be installed).
func usableIPTables(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/iptables", "/sbin/iptables"} {
		if exec.Command(p, "-w", "-S", "OUTPUT").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("iptables (usable, as root) is needed to cut a page's media path")
	}
	t.Skip("iptables not usable here")
	return ""
}

// blockSockets drops every UDP packet from or to the local ports of
// addrs (the page's ICE sockets: what its network change leaves dead),
// with iptables rules that name this test and are removed when it ends,
// failed or not.
func blockSockets(t *testing.T, addrs []string) {
	t.Helper()
	ipt := usableIPTables(t)
	comment := fmt.Sprintf("sotto-web-test-%d", os.Getpid())
	for _, a := range addrs {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatalf("candidate address %q: %v", a, err)
		}
		for _, dir := range []string{"--sport", "--dport"} {
			r := []string{"OUTPUT", "-p", "udp", dir, port, "-m", "comment", "--comment", comment, "-j", "DROP"}
			t.Cleanup(func() {
				if out, err := exec.Command(ipt, append([]string{"-w", "-D"}, r...)...).CombinedOutput(); err != nil {
					t.Errorf("remove iptables rule %v: %v: %s", r, err, out)
				}
			})
			if out, err := exec.Command(ipt, append([]string{"-w", "-A"}, r...)...).CombinedOutput(); err != nil {
				t.Fatalf("iptables rule %v: %v: %s", r, err, out)
			}
		}
	}
}

// TestBrowserICERestartOnPathCut: one page's media path is cut (every
// UDP socket of its ICE agent blocked, as when its network changes). The page
// restarts ICE through the event stream, on the same peer connection with
// the same keys: both pages hear each other again on a new path, the page
// stays the same participant, and nothing fails to decrypt.
func TestBrowserICERestartOnPathCut(t *testing.T) {
	browsertest.Require(t)
	usableIPTables(t)
	// A real "sotto serve" without ICE-TCP or TURN: nothing but a new
	// UDP path can save the page's media.
	srv := &callServer{URL: startSottoProcess(t).url}
	wav := browsertest.WriteToneWAV(t, 10*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	bob.joinAsGuest(alice, alice.startCall(srv, "Alice").InviteLink, "Alice", "Bob")
	as, bs := alice.waitEncrypted(1), bob.waitEncrypted(1)
	decrypted := func(p *page, from string) int {
		st := p.stats()
		if st.Decrypt == nil {
			return 0
		}
		return st.Decrypt.ByParticipant[from].Decrypted
	}
	wait.For(t, "both to hear each other", func() bool {
		return decrypted(alice, bs.SelfID) > 50 && decrypted(bob, as.SelfID) > 50
	})

	old := alice.mediaPath()
	cut := time.Now()
	blockSockets(t, old.Locals)
	wait.For(t, "Alice to restart ICE", func() bool { return alice.iceRestarts() > 0 })
	restarted := time.Since(cut)
	// Nothing crosses the cut path: whatever arrives from now on came over
	// the new one.
	heardBob, heardAlice := decrypted(alice, bs.SelfID), decrypted(bob, as.SelfID)
	var back time.Duration
	wait.For(t, "both to hear each other again", func() bool {
		ok := decrypted(alice, bs.SelfID) > heardBob+25 && decrypted(bob, as.SelfID) > heardAlice+25
		back = time.Since(cut)
		return ok
	})
	now := alice.mediaPath()
	t.Logf("path %s cut: ICE restarted %v later, both hear each other again %v after the cut, on %s",
		old.Local, restarted.Round(time.Millisecond), back.Round(time.Millisecond), now.Local)
	for _, a := range old.Locals {
		if now.Local == a {
			t.Errorf("Alice still uses %s", a)
		}
	}
	// The page takes its path for dead after 1.5 s without audio (checked
	// every 0.5 s), long before Chromium calls it disconnected, and
	// restarts ICE at once; the machine is shared.
	if back > 6*time.Second {
		t.Errorf("heard again %v after the cut, want within 6 s", back)
	}
	for _, p := range []*page{alice, bob} {
		s := p.state()
		if s.SelfID != map[*page]string{alice: as.SelfID, bob: bs.SelfID}[p] || s.Status != "connected" || s.Banner != "" {
			t.Errorf("%s: participant %s, status %q, banner %q after the ICE restart; want the same participant, connected, no banner", p.name, s.SelfID, s.Status, s.Banner)
		}
		if st := p.stats(); st.failures() != 0 {
			t.Errorf("%s: %d frames failed to decrypt", p.name, st.failures())
		}
	}
}

// TestBrowserSilentPeerIsNoDeadPath: the only other caller stops sending
// (an SDK caller that writes no frames for a while). The page's path is
// fine: it may restart ICE once, when the audio stops, but it neither
// keeps restarting nor rejoins, and hears the caller again when it talks.
func TestBrowserSilentPeerIsNoDeadPath(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 5*time.Second))
	as := alice.startCall(srv, "Alice")
	bob := joinGo(t, srv, redeem(t, srv, alice, as.InviteLink[len(srv.URL+"/join#invite="):], "Bob").Token, false)
	var talking atomic.Bool
	talking.Store(true)
	speakWhile(t, bob, talking.Load)
	heard := func() int {
		st := alice.stats()
		if st.Decrypt == nil {
			return 0
		}
		return st.Decrypt.ByParticipant[bob.call.ID()].Decrypted
	}
	wait.For(t, "Alice to hear Bob", func() bool { return heard() > 50 })

	talking.Store(false)
	// Longer than the page's give-up on a dead path (15 s).
	time.Sleep(18 * time.Second)
	s := alice.state()
	restarts := alice.iceRestarts()
	t.Logf("after 18 s of silence: %d ICE restarts, participant %s, status %q", restarts, s.SelfID, s.Status)
	if s.SelfID != as.SelfID || s.Screen != "call" || s.Status != "connected" || restarts > 1 {
		t.Errorf("after 18 s of silence: participant %s (was %s), screen %q, status %q, %d ICE restarts; want the same participant, in the call, connected, at most 1 restart",
			s.SelfID, as.SelfID, s.Screen, s.Status, restarts)
	}
	before := heard()
	talking.Store(true)
	wait.For(t, "Alice to hear Bob again", func() bool { return heard() > before+50 })
	if st := alice.stats(); st.failures() != 0 {
		t.Errorf("%d frames failed to decrypt", st.failures())
	}
}
