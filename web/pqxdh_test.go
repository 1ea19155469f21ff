package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestBrowserGoPQXDH: a browser and a Go SDK caller set up their sessions
// with PQXDH both ways, to a one-time ML-KEM prekey and to the last-resort
// one, and hear each other every time. The directory hands a caller one
// one-time prekey of an identity per window, so a second session from the
// same identity to the same peer uses the last-resort KEM prekey. The Go
// side counts which KEM prekey each of its sessions used, as initiator (it
// joins after the browser) and as responder (the browser rejoins after
// it).
func TestBrowserGoPQXDH(t *testing.T) {
	srv := startCallServer(t)
	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 10*time.Second))
	started := alice.startCall(srv, "Alice")
	invite := started.InviteLink[len(srv.URL+"/join#invite="):]
	bobToken := redeem(t, srv, alice, invite, "GoBob").Token
	// Bob's device keeps its identity across his two joins.
	bobKey, err := e2ee.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}

	// talk checks that audio flows both ways between the browser (as
	// aliceID) and bob: the browser's frames decrypt in Go, and bob's echo
	// of them decrypts in the browser.
	talk := func(phase string, bob *goCaller, aliceID string) {
		t.Helper()
		bobID := bob.call.ID()
		alice.waitEncrypted(1)
		before := bob.framesFrom(aliceID)
		wait.For(t, phase+": the browser's frames decrypted in Go", func() bool { return bob.framesFrom(aliceID) > before+50 })
		alice.waitStats(phase+": the Go caller's frames decrypted in the browser", func(s pageStats) bool {
			return s.Decrypt != nil && s.Decrypt.ByParticipant[bobID].Decrypted > 50 && s.Inbound[bobID].Energy > 0
		})
		bob.checkClean("Bob (" + phase + ")")
		if st := alice.stats(); st.failures() != 0 {
			t.Errorf("%s: the browser failed to decrypt %d frames", phase, st.failures())
		}
	}
	sessions := func(phase string, bob *goCaller, oneTime, lastResort uint64) {
		t.Helper()
		var st client.Stats
		wait.For(t, phase+": the Go caller's sessions", func() bool {
			st = bob.call.Stats()
			return st.SessionsOneTimeKEM+st.SessionsLastResortKEM >= oneTime+lastResort
		})
		if st.SessionsOneTimeKEM != oneTime || st.SessionsLastResortKEM != lastResort {
			t.Fatalf("%s: sessions to one-time KEM prekeys %d, to the last-resort one %d; want %d and %d",
				phase, st.SessionsOneTimeKEM, st.SessionsLastResortKEM, oneTime, lastResort)
		}
	}

	// rejoin reloads the page and rejoins the call, with the Go caller in
	// it or not.
	rejoin := func(phase string, bob *goCaller) {
		t.Helper()
		alice.do(chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#rejoin-button")))
		if bob != nil {
			wait.For(t, phase+": the Go caller sees the browser leave", func() bool { return len(bob.call.Participants()) == 0 })
		}
		alice.do(chromedp.Click(chromedp.CSS("#rejoin-button")))
	}

	// Go -> browser, to the browser's one-time KEM prekey.
	bob := joinGoAs(t, srv, bobToken, true, bobKey)
	talk("Go initiates, one-time", bob, started.SelfID)
	sessions("Go initiates, one-time", bob, 1, 0)

	// Browser -> Go: the browser rejoins after a reload and initiates, to
	// bob's one-time KEM prekey the first time, to his last-resort one the
	// second (the directory hands a caller one one-time prekey of an
	// identity per window).
	rejoin("browser initiates, one-time", bob)
	talk("browser initiates, one-time", bob, alice.waitEncrypted(1).SelfID)
	sessions("browser initiates, one-time", bob, 2, 0)
	rejoin("browser initiates, last-resort", bob)
	talk("browser initiates, last-resort", bob, alice.waitEncrypted(1).SelfID)
	sessions("browser initiates, last-resort", bob, 2, 1)

	// Go -> browser again within the window: the last-resort KEM prekey.
	// The browser comes back first (a fresh page: a publisher that rejoins
	// under a browser that stayed is the page's transceiver reuse, not
	// key agreement), then bob, from the same device.
	if err := bob.call.Leave(); err != nil {
		t.Fatal(err)
	}
	rejoin("Go initiates, last-resort", nil)
	alice.waitState("the browser back in the call, alone", func(s pageState) bool { return s.Screen == "call" && len(s.Participants) == 1 })
	bob = joinGoAs(t, srv, bobToken, true, bobKey)
	talk("Go initiates, last-resort", bob, alice.state().SelfID)
	sessions("Go initiates, last-resort", bob, 0, 1)
}
