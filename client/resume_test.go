package client

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

func isReconnected(e Event) bool {
	_, ok := e.(Reconnected)
	return ok
}

// A caller the server drops (here: its media connection ends, as when its
// network fails for good) rejoins the room by itself, in the same Call:
// Reconnecting, then Reconnected; the others it knew keep their IDs and are
// not reported as joining again; new key sessions with everyone, and
// every stream is complete again, without a decryption failure.
func TestCallRejoinsWhenDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "rejoin", "alice")
	bob := joinPeer(ctx, t, srv, "rejoin", "bob")
	carol := joinPeer(ctx, t, srv, "rejoin", "carol")
	peers := []*peer{alice, bob, carol}
	talkAndCheck(ctx, t, peers, 10)
	aliceID, before := alice.call.ID(), alice.call.Participants()
	for _, p := range peers {
		p.forget()
	}

	lost := time.Now()
	if err := alice.call.tconn().pc.Close(); err != nil {
		t.Fatal(err)
	}
	wait.Until(ctx, t, "alice rejoins", func() bool {
		_, ok := alice.findEvent(isReconnected)
		return ok
	})
	t.Logf("alice rejoined after %v", time.Since(lost).Round(time.Millisecond))
	e, _ := alice.findEvent(func(e Event) bool { _, ok := e.(Reconnecting); return ok })
	var ce *ClosedError
	if r, ok := e.(Reconnecting); !ok || !errors.As(r.Cause, &ce) || ce.Reason != api.ReasonICEFailed {
		t.Errorf("Reconnecting = %#v, want the server's closed ice_failed as its cause", e)
	}
	if alice.call.ID() != aliceID {
		t.Errorf("alice's ID changed from %s to %s", aliceID, alice.call.ID())
	}
	for _, p := range before {
		if _, ok := alice.findEvent(isJoined(p.ID)); ok {
			t.Errorf("alice was told %s joined again", p.Identity)
		}
	}
	// Bob and carol stayed: for them alice left and joined again.
	wait.Until(ctx, t, "bob hears alice is back", func() bool {
		_, ok := bob.findEvent(func(e Event) bool {
			j, ok := e.(ParticipantJoined)
			return ok && j.Participant.Identity == "alice"
		})
		return ok
	})
	talkAndCheck(ctx, t, peers, 10)
	got := alice.call.Participants()
	if len(got) != len(before) || got[0] != before[0] || got[1] != before[1] {
		t.Errorf("alice's roster %v after the rejoin, want %v", got, before)
	}
	for _, p := range peers {
		st := p.call.Stats()
		if n := st.DecryptFailures(); n != 0 {
			t.Errorf("%s: %d decryption failures (%v)", p.name, n, st.Dropped)
		}
	}
	if st := alice.call.Stats(); st.Rejoins != 1 {
		t.Errorf("alice's stats count %d rejoins, want 1", st.Rejoins)
	}
}

// A caller restarts ICE through its event stream without leaving: new ICE
// credentials on both sides, the same PeerConnection and keys, and the
// call goes on; nobody is told anything.
func TestCallRestartsICE(t *testing.T) {
	// An ICE restart on a path that still works: the relay answers with new
	// credentials and follows the client onto the pair it picks.
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "restart", "alice")
	bob := joinPeer(ctx, t, srv, "restart", "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
	c := alice.call.tconn()
	ufrag := remoteUfrag(t, c)
	keys := bob.call.Stats().KeysReceived

	pair := selectedPair(t, c)
	c.restartICE()
	wait.Until(ctx, t, "the relay answers alice's restart", func() bool { return remoteUfrag(t, c) != ufrag })
	// pion drops the old candidates as the restart begins, so what is in
	// flight then is lost (and repaired by NACK, out of order); the check
	// of order starts once alice's agent has moved to its new pair.
	wait.Until(ctx, t, "alice's agent to select a new pair", func() bool { return selectedPair(t, c) != pair })
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
	if alice.call.tconn() != c {
		t.Error("alice joined again instead of restarting ICE")
	}
	if st := alice.call.Stats(); st.ICERestarts != 1 || st.Rejoins != 0 {
		t.Errorf("alice: %d ICE restarts, %d rejoins; want 1, 0", st.ICERestarts, st.Rejoins)
	}
	if n := bob.call.Stats().KeysReceived; n != keys {
		t.Errorf("bob received %d keys over alice's ICE restart: her keys were to stay", n-keys)
	}
	if _, ok := bob.findEvent(isLeft(alice.call.ID())); ok {
		t.Error("bob was told alice left")
	}
}

// selectedPair is the candidate pair c's ICE agent sends on, as text.
func selectedPair(t *testing.T, c *conn) string {
	t.Helper()
	pair, err := c.pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		t.Fatal(err)
	}
	if pair == nil {
		return ""
	}
	return pair.String()
}

func remoteUfrag(t *testing.T, c *conn) string {
	t.Helper()
	c.negMu.Lock()
	defer c.negMu.Unlock()
	d := c.pc.CurrentRemoteDescription()
	if d == nil {
		t.Fatal("no remote description")
	}
	return iceUfrag(d.SDP)
}

// A call whose server is gone for good ends when its resume window runs
// out, with the reason it was lost.
func TestCallEndsWhenRejoiningCannotHelp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv, err := testserver.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	call, err := Join(ctx, srv.URL, srv.Token("gone", "alice"), &Options{IPFilter: loopback, ResumeWindow: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var reconnecting bool
	start := time.Now()
	srv.Close()
	for e := range call.Events() {
		if _, ok := e.(Reconnecting); ok {
			reconnecting = true
		}
	}
	var ce *ClosedError
	if !reconnecting || !errors.As(call.Err(), &ce) || ce.Reason != api.ReasonShutdown {
		t.Errorf("reconnecting %v, call ended with %v; want a rejoin tried, then the shutdown", reconnecting, call.Err())
	}
	t.Logf("gave up after %v (window 2 s)", time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 2*time.Second+rejoinTimeout {
		t.Errorf("gave up after %v", time.Since(start))
	}
}

// iceUfrag returns the first ICE ufrag of an SDP.
func iceUfrag(sdp string) string {
	for _, line := range strings.Split(sdp, "\r\n") {
		if u, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok {
			return u
		}
	}
	return ""
}
