package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
)

// peerState returns the page's entry for its only peer.
func onlyPeer(t *testing.T, s pageState) (id, warning string, verified bool) {
	t.Helper()
	for _, p := range s.Participants {
		if !p.Self {
			return p.ID, p.Warning, p.Verified
		}
	}
	t.Fatalf("no peer in %+v", s.Participants)
	return "", "", false
}

// TestBrowserIdentityAcrossCalls: the device identity and the verified
// marks persist in the browser; someone who comes back under a known name
// with another identity key gets a loud warning, and a key verified in an
// earlier call is shown verified again.
func TestBrowserIdentityAcrossCalls(t *testing.T) {
	srv := startCallServer(t)
	wav := browsertest.WriteToneWAV(t, 5*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	impostor := openPage(t, "impostor", wav)

	call := func(p *page, name string) pageState {
		t.Helper()
		link := alice.startCall(srv, "Alice").InviteLink
		p.joinAsGuest(alice, link, "Alice", name)
		p.waitEncrypted(1)
		return alice.waitEncrypted(1)
	}
	hangUp := func(p *page) {
		t.Helper()
		for _, q := range []*page{p, alice} {
			if q.state().Screen == "call" {
				q.do(chromedp.Click(chromedp.CSS("#leave-button")))
			}
			q.waitState("the call to be left", func(s pageState) bool { return s.Screen == "message" })
		}
	}

	// First call: Bob is new, nothing to warn about; Alice verifies him.
	s := call(bob, "Bob")
	if _, warning, verified := onlyPeer(t, s); warning != "" || verified || s.Banner != "" {
		t.Fatalf("first call with Bob: warning %q, verified %v, banner %q", warning, verified, s.Banner)
	}
	alice.do(chromedp.Click(chromedp.CSS("li.participant:not(:first-child) .p-verify")))
	alice.waitState("Bob verified", func(s pageState) bool { _, _, v := onlyPeer(t, s); return v })
	hangUp(bob)

	// Second call: someone else calls themselves Bob.
	call(impostor, "Bob")
	s = alice.waitState("the identity warning", func(s pageState) bool { _, w, _ := onlyPeer(t, s); return w != "" })
	_, warning, verified := onlyPeer(t, s)
	if verified || !strings.Contains(warning, "not the one you verified") || !strings.Contains(s.Banner, "Security warning") {
		t.Fatalf("impostor: warning %q, verified %v, banner %q", warning, verified, s.Banner)
	}
	hangUp(impostor)

	// Third call: the real Bob again. His key is still the verified one.
	s = call(bob, "Bob")
	if _, _, verified := onlyPeer(t, s); !verified {
		t.Errorf("Bob's key, verified in the first call, is not shown verified: %+v", s.Participants)
	}
}
