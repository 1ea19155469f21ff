package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/internal/browsertest"
)

// TestBrowserRejoinAfterReload: a reloaded call page offers to rejoin the
// call it was in (same identity, so the same safety number), and leaving on
// purpose forgets the call.
func TestBrowserRejoinAfterReload(t *testing.T) {
	srv := startCallServer(t)
	wav := browsertest.WriteToneWAV(t, 5*time.Second)
	alice := openPage(t, "alice", wav)
	bob := openPage(t, "bob", wav)
	link := alice.startCall(srv, "Alice").InviteLink
	bob.joinAsGuest(alice, link, "Alice", "Bob")
	bs := bob.waitEncrypted(1)
	as := alice.waitEncrypted(1)
	before := peerSafetyNumber(t, as, bs.SelfID)

	bob.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#rejoin-button")))
	alice.waitState("Bob gone after his reload", func(s pageState) bool { return len(s.peers()) == 0 })

	bob.do(chromedp.Click(chromedp.CSS("#rejoin-button")))
	bs2 := bob.waitEncrypted(1)
	as = alice.waitEncrypted(1)
	if bs2.Identity != bs.Identity || bs2.SelfID == bs.SelfID {
		t.Errorf("rejoined as %s (%s), want identity %s with a new participant id", bs2.Identity, bs2.SelfID, bs.Identity)
	}
	if after := peerSafetyNumber(t, as, bs2.SelfID); after != before {
		t.Errorf("safety number changed across the rejoin: %q, then %q", before, after)
	}
	if s := alice.state(); s.Banner != "" {
		t.Errorf("the caller shows a warning after a rejoin: %q", s.Banner)
	}
	bob.waitStats("audio after the rejoin", func(s pageStats) bool {
		return s.Decrypt != nil && s.Decrypt.ByParticipant[as.SelfID].Decrypted > 50 && s.failures() == 0
	})

	// Leaving on purpose: nothing to rejoin.
	bob.do(chromedp.Click(chromedp.CSS("#leave-button")))
	bob.waitState("the left message", func(s pageState) bool { return s.Screen == "message" })
	var hidden bool
	if err := bob.eval(`document.getElementById('rejoin-button').hidden`, &hidden); err != nil || !hidden {
		t.Errorf("after leaving, a rejoin is offered (hidden %v, %v)", hidden, err)
	}
}
