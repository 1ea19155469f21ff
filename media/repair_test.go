package media

import (
	"context"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/impair"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestUpstreamLossRepaired: the publisher's socket loses 10 % of what it
// sends, over real UDP on loopback. The relay asks the publisher again for
// each lost packet and forwards it when it comes, so the subscriber gets
// the whole stream, some packets late; a repaired packet is in the history
// too, so the subscriber's own NACK for it is answered.
func TestUpstreamLossRepaired(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("lossy", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock, err := impair.Listen(ctx, "127.0.0.1:0", impair.Config{LossUp: 0.1, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	alice := joinClient(t, r, "alice", clientOptions{uplink: sock})
	bob := joinClient(t, r, "bob", clientOptions{noReplayCheck: true})
	bob.waitReceiving(t, 250, "alice")
	alice.waitReceiving(t, 1, "bob")
	wait.For(t, "the relay to measure alice's round trip", func() bool { return alice.peer.rtt.Load() > 0 })
	// From pion's sender reports, echoed by pion's receiver reports: a
	// clock or unit mismatch would give nonsense, not a loopback figure.
	if rtt := time.Duration(alice.peer.rtt.Load()); rtt > time.Second {
		t.Errorf("round trip to alice over loopback: %v", rtt)
	}

	packets, _, _ := bob.snapshot("alice")
	seen := map[int]bool{}
	newest, twice := -1, 0
	for _, p := range packets {
		id, track, i, ok := parsePayload(p.payload)
		if !ok || id != "alice" || track != 0 {
			t.Fatalf("bob got foreign payload %q", p.payload)
		}
		if seen[i] {
			twice++
		}
		seen[i] = true
		newest = max(newest, i)
	}
	s := e.Stats()
	// Bob's own NACKs (pion's generator) may ask for a packet the relay is
	// still repairing; answered once it is, bob has it twice. Nothing else
	// sends a packet twice.
	if uint64(twice) > s.NACKsAnswered {
		t.Errorf("bob got %d packets twice, the relay answered %d NACKs", twice, s.NACKsAnswered)
	}
	up := sock.Stats()
	t.Logf("alice's socket dropped %d of %d datagrams; the relay asked %d times, recovered %d, gave up %d",
		up.DroppedUp, up.DroppedUp+up.Sent, s.UpstreamNACKs, s.UpstreamRecovered, s.UpstreamGivenUp)
	if up.DroppedUp == 0 || s.UpstreamNACKs == 0 || s.UpstreamRecovered == 0 {
		t.Fatal("no loss repaired")
	}
	if s.UpstreamNACKs < s.UpstreamRecovered+s.UpstreamGivenUp {
		t.Errorf("%d requests for %d recovered and %d given up packets", s.UpstreamNACKs, s.UpstreamRecovered, s.UpstreamGivenUp)
	}
	// Every packet up to the last second arrived, or was given up.
	_, _, first, _ := parsePayload(packets[0].payload)
	missing := 0
	for i := first; i < newest-50; i++ {
		if !seen[i] {
			missing++
		}
	}
	if uint64(missing) > s.UpstreamGivenUp {
		t.Errorf("bob misses %d of alice's packets, the relay gave up on %d", missing, s.UpstreamGivenUp)
	}
	// A packet that arrived after a newer one was repaired. One recent
	// enough to be in the relay's history is resent when bob asks for it.
	var repaired received
	wait.For(t, "a repaired packet among bob's last 30", func() bool {
		packets, _, _ := bob.snapshot("alice")
		newest := -1
		for k, p := range packets {
			_, _, i, _ := parsePayload(p.payload)
			if i < newest && k >= len(packets)-30 {
				repaired = p
				return true
			}
			newest = max(newest, i)
		}
		return false
	})
	nackPacketAndExpectResend(t, e, bob, "alice", repaired)
}
