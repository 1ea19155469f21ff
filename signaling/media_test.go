package signaling

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/wait"
)

// TestRenegotiationDeliversAudio runs the documented sequence end to end
// with real peers: join, event stream, the server's offer answered over the
// stream, and the other participant's audio arriving on a track whose
// stream id is its participant id and whose track id is "audio-" + id.
func TestRenegotiationDeliversAudio(t *testing.T) {
	s := newTestServer(t, nil)
	a, pa := s.join("r1", "alice")
	ea := s.connect(a)

	type remote struct{ stream, track string }
	tracks := make(chan remote, 4)
	pa.pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		tracks <- remote{tr.StreamID(), tr.ID()}
	})

	b, pb := s.join("r1", "bob")
	// Media offers Bob's track as it admits him, so the offer may come
	// before or after the joined event.
	var offer api.SDP
	for joined := false; offer.SDP == "" || !joined; {
		m := ea.expectAny(api.TypeOffer, api.TypeJoined)
		if m.Type == api.TypeOffer {
			ea.decode(m, &offer)
		} else {
			joined = true
		}
	}
	ea.send(api.SDP{Type: api.TypeAnswer, SDP: pa.answer(t, offer.SDP)})

	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	// Bob talks (bytes the relay forwards without looking) until the test ends.
	go loopback.Talk(ctx, pb.track, []byte{0xf8, 0xff, 0xfe})
	select {
	case got := <-tracks:
		if got.stream != b.ParticipantID || got.track != "audio-"+b.ParticipantID {
			t.Fatalf("track msid %q %q, want %q %q", got.stream, got.track, b.ParticipantID, "audio-"+b.ParticipantID)
		}
	case <-ctx.Done():
		t.Fatal("alice never received bob's audio")
	}
	// The server ends the call first, while Alice's stream reads.
	cancel()
	shutdown := make(chan error, 1)
	go func() {
		sctx, scancel := contextWithWait()
		defer scancel()
		shutdown <- s.srv.Shutdown(sctx)
	}()
	// Bob may be removed, and announced, before Alice.
	ea.expectClosed(api.ReasonShutdown, api.TypeLeft)
	if err := <-shutdown; err != nil {
		t.Fatal(err)
	}
}

// TestMediaFailureDrops: when a participant's media connection ends, the
// participant is removed and the others are told.
func TestMediaFailureDrops(t *testing.T) {
	s := newTestServer(t, nil)
	ea, b, pb, eb := s.aliceAndBob()
	if err := pb.pc.Close(); err != nil {
		t.Fatal(err)
	}
	ea.expectLeft(b.ParticipantID, api.ReasonICEFailed)
	eb.expectClosed(api.ReasonICEFailed)
}

// TestMediaEndsWhileDisconnected: a participant whose event stream is gone
// and whose media then ends (the SDK closes its peer connection when it
// gives up reconnecting, just before the drop timeout) lost its connection;
// the others are told connection_lost, not ice_failed.
func TestMediaEndsWhileDisconnected(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.DropTimeout = wait.Timeout })
	ea, b, pb, eb := s.aliceAndBob()
	_ = eb.conn.CloseNow()
	s.waitDisconnected(b.ParticipantID)
	if err := pb.pc.Close(); err != nil {
		t.Fatal(err)
	}
	ea.expectLeft(b.ParticipantID, api.ReasonConnectionLost)
}

// aliceAndBob joins alice and then bob to room r1, both with their event
// streams, and waits until bob's media is connected.
func (s *testServer) aliceAndBob() (ea *events, b api.JoinResponse, pb *peer, eb *events) {
	s.t.Helper()
	a, _ := s.join("r1", "alice")
	ea = s.connect(a)
	b, pb = s.join("r1", "bob")
	ea.expectJoined(b.ParticipantID)
	eb = s.connect(b)
	waitConnected(s.t, pb)
	return ea, b, pb, eb
}

// waitConnected waits until p's media is connected to the relay.
func waitConnected(t *testing.T, p *peer) {
	t.Helper()
	connected := make(chan struct{})
	var once sync.Once
	p.pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	if p.pc.ConnectionState() == webrtc.PeerConnectionStateConnected {
		return
	}
	select {
	case <-connected:
	case <-time.After(wait.Timeout):
		t.Fatal("media never connected")
	}
}
