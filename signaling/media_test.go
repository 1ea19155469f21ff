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
	"github.com/sotto-voice/sotto/media"
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
	// Bob may be removed, and announced, before Alice. Clients are told
	// when to rejoin.
	if c := ea.expectClosed(api.ReasonShutdown, api.TypeLeft); c.RetryAfterMs != DefaultShutdownRetry.Milliseconds() {
		t.Errorf("server_shutdown with retry_after_ms %d, want %d", c.RetryAfterMs, DefaultShutdownRetry.Milliseconds())
	}
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

// TestClientOfferRestartsICE: a client restarts ICE with an offer on its
// event stream and gets the answer there, without leaving the call. An
// offer that crosses the server's own is refused as a collision.
func TestClientOfferRestartsICE(t *testing.T) {
	s := newTestServer(t, nil)
	_, b, pb, eb := s.aliceAndBob()
	// Bob's first server offer (alice's track) awaits his answer.
	var offer api.SDP
	eb.decode(eb.expect(api.TypeOffer), &offer)
	// Bob offers the way the SDK does: the offer restarts his ICE agent
	// but is applied only with the answer, so that a crossing server offer
	// can still be answered (pion cannot roll back).
	restart := func(p *peer) webrtc.SessionDescription {
		o, err := p.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	eb.send(api.SDP{Type: api.TypeOffer, SDP: restart(pb).SDP})
	eb.expectError(api.CodeOfferCollision)
	eb.send(api.SDP{Type: api.TypeAnswer, SDP: pb.answer(t, offer.SDP)})
	pending := restart(pb)
	eb.send(api.SDP{Type: api.TypeOffer, SDP: pending.SDP})
	var answer api.SDP
	eb.decode(eb.expect(api.TypeAnswer), &answer)
	if err := pb.pc.SetLocalDescription(pending); err != nil {
		t.Fatal(err)
	}
	if err := pb.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer.SDP}); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, pb)
	eb.send(api.SDP{Type: api.TypeOffer, SDP: "v=0\r\n"})
	eb.expectError(api.CodeNegotiation)
	s.srv.mu.Lock()
	_, stayed := s.srv.rooms["r1"].participants[b.ParticipantID]
	s.srv.mu.Unlock()
	if !stayed {
		t.Fatal("bob left the room over his ICE restart")
	}
}

// TestFrozenCallerTimesOut: a caller whose media falls silent and whose
// event stream does not answer a ping is dropped with reason timeout,
// within the media's disconnected timeout plus the probe timeout. One that
// still answers on its stream is not: it may be restarting ICE.
func TestFrozenCallerTimesOut(t *testing.T) {
	s := newTestServerOn(t, nil, media.Config{ICEDisconnectedTimeout: time.Second, ICEFailedTimeout: wait.Timeout},
		func(c *Config) { c.ProbeTimeout = 500 * time.Millisecond })
	ea, b, pb, _ := s.aliceAndBob()
	// Bob stops reading his stream, so that he answers no ping (a stopped
	// process), and his ICE agent stops.
	start := time.Now()
	if err := pb.pc.SCTP().Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	ea.expectLeft(b.ParticipantID, api.ReasonTimeout)
	took := time.Since(start)
	t.Logf("frozen caller dropped after %v", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("dropped after %v, want about 1.5 s", took)
	}
}

// TestSilentMediaWithLiveStreamStays: a caller whose media falls silent
// but whose event stream answers is kept (it may be restarting ICE) until
// its ICE fails.
func TestSilentMediaWithLiveStreamStays(t *testing.T) {
	s := newTestServerOn(t, nil, media.Config{ICEDisconnectedTimeout: time.Second, ICEFailedTimeout: 2 * time.Second},
		func(c *Config) { c.ProbeTimeout = 500 * time.Millisecond })
	ea, b, pb, eb := s.aliceAndBob()
	go func() {
		for {
			if _, err := eb.next(); err != nil {
				return
			}
		}
	}()
	if err := pb.pc.SCTP().Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	ea.expectLeft(b.ParticipantID, api.ReasonICEFailed)
}
