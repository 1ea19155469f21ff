package media

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/internal/wait"
)

// checkStream verifies what c received from publisher pub: every payload is
// byte-identical to one pub sent on its first track, in sending order, and
// the track carries pub's identity.
func checkStream(t *testing.T, c *client, pub string) {
	t.Helper()
	packets, _, ok := c.snapshot(pub)
	if !ok {
		t.Fatalf("%s has no track from %s", c.id, pub)
	}
	c.mu.Lock()
	trackID := c.remote[pub].track.ID()
	c.mu.Unlock()
	if want := "audio-" + pub; trackID != want {
		t.Errorf("%s: track ID of %s's stream = %q, want %q", c.id, pub, trackID, want)
	}
	last := -1
	for _, p := range packets {
		id, track, i, ok := parsePayload(p.payload)
		if !ok || id != pub || track != 0 {
			t.Fatalf("%s: stream %s carried foreign payload %q", c.id, pub, p.payload)
		}
		if !bytes.Equal(p.payload, testPayload(pub, 0, i)) {
			t.Fatalf("%s: payload %q altered", c.id, p.payload)
		}
		if i <= last {
			t.Fatalf("%s: stream %s out of order: %d after %d", c.id, pub, i, last)
		}
		last = i
	}
}

func TestForwardBetweenThreeThenFour(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("three", nil)
	ids := []string{"alice", "bob", "carol"}
	clients := map[string]*client{}
	for _, id := range ids {
		clients[id] = joinClient(t, r, id, clientOptions{})
	}
	for _, id := range ids {
		var others []string
		for _, o := range ids {
			if o != id {
				others = append(others, o)
			}
		}
		clients[id].waitReceiving(t, 25, others...)
	}
	for _, c := range clients {
		for _, pub := range ids {
			if pub == c.id {
				if _, _, ok := c.snapshot(pub); ok {
					t.Errorf("%s receives its own audio", c.id)
				}
				continue
			}
			checkStream(t, c, pub)
		}
	}

	// A fourth joins mid-call: it gets everyone, everyone gets it.
	dave := joinClient(t, r, "dave", clientOptions{})
	dave.waitReceiving(t, 25, ids...)
	for _, id := range ids {
		clients[id].waitReceiving(t, 25, "dave")
		checkStream(t, clients[id], "dave")
	}
	for _, id := range ids {
		checkStream(t, dave, id)
	}

	// Bob leaves: the others' tracks for him end through renegotiation.
	transceivers := len(clients["alice"].pc.GetTransceivers())
	clients["bob"].leave()
	for _, c := range []*client{clients["alice"], clients["carol"], dave} {
		wait.For(t, c.id+" to see bob's track end", func() bool {
			_, ended, ok := c.snapshot("bob")
			return ok && ended
		})
		wait.For(t, c.id+" to get an offer without bob", func() bool {
			return !strings.Contains(c.pc.RemoteDescription().SDP, "msid:bob ")
		})
	}
	// Everyone else still hears everyone else.
	for _, c := range []*client{clients["alice"], clients["carol"], dave} {
		for _, pub := range []string{"alice", "carol", "dave"} {
			if pub == c.id {
				continue
			}
			pk, _, _ := c.snapshot(pub)
			c.waitReceiving(t, len(pk)+10, pub)
		}
	}

	// Erin takes bob's place on the freed transceivers.
	erin := joinClient(t, r, "erin", clientOptions{})
	for _, c := range []*client{clients["alice"], clients["carol"], dave} {
		c.waitReceiving(t, 25, "erin")
		checkStream(t, c, "erin")
	}
	erin.waitReceiving(t, 25, "alice", "carol", "dave")
	if got := len(clients["alice"].pc.GetTransceivers()); got != transceivers {
		t.Errorf("alice has %d transceivers after bob left and erin joined, want %d (reuse)", got, transceivers)
	}

	for _, c := range []*client{clients["alice"], clients["carol"], dave, erin} {
		c.mu.Lock()
		if len(c.answerErrs) > 0 || len(c.failures) > 0 {
			t.Errorf("%s: answer errors %v, failures %v", c.id, c.answerErrs, c.failures)
		}
		c.mu.Unlock()
	}
	s := e.Stats()
	if s.Peers != 4 || s.Rooms != 1 || s.Tracks != 4 {
		t.Errorf("stats: peers %d rooms %d tracks %d, want 4 1 4", s.Peers, s.Rooms, s.Tracks)
	}
	if s.PacketsForwarded == 0 || s.BytesForwarded == 0 || s.PacketsReceived == 0 {
		t.Errorf("stats: nothing counted: %+v", s)
	}
}

func TestJoinRejectsBadOffers(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("offers", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{})
	alice.waitReceiving(t, 10, "bob")

	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()

	// A real pion offer with PCMU only.
	pcmu, offer := newClient(t, "pcmu", clientOptions{codec: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypePCMU, ClockRate: 8000}})
	if _, _, err := r.Join(ctx, "pcmu", offer, pcmu); !errors.Is(err, ErrUnsupportedCodec) {
		t.Errorf("PCMU-only offer: err = %v, want ErrUnsupportedCodec", err)
	}

	// Written by hand: video only, and audio that neither sends nor
	// receives.
	videoOnly := strings.Replace(offer, "m=audio", "m=video", 1)
	inactive := strings.Replace(strings.Replace(offer, "a=sendrecv", "a=inactive", 1), "PCMU/8000", "opus/48000/2", 1)
	for name, sdp := range map[string]string{
		"garbage":    "this is not SDP",
		"empty":      "",
		"video only": videoOnly,
		"inactive":   inactive,
		"truncated":  offer[:len(offer)/3],
	} {
		if _, _, err := r.Join(ctx, "bad", sdp, pcmu); !errors.Is(err, ErrInvalidSDP) {
			t.Errorf("%s offer: err = %v, want ErrInvalidSDP", name, err)
		}
	}

	// The room keeps working for the others.
	for _, c := range []*client{alice, bob} {
		other := map[string]string{"alice": "bob", "bob": "alice"}[c.id]
		pk, _, _ := c.snapshot(other)
		c.waitReceiving(t, len(pk)+25, other)
	}
	if s := e.Stats(); s.Peers != 2 {
		t.Errorf("peers = %d after rejected joins, want 2", s.Peers)
	}
	if _, _, err := r.Join(ctx, "alice", offer, pcmu); err == nil {
		t.Error("joining twice with one participant ID succeeded")
	}
}

func TestUnownedStreamDropped(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("ssrc", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	// Mallory publishes a second audio stream the server never accepted as
	// hers: it must be dropped and counted, never forwarded.
	mallory := joinClient(t, r, "mallory", clientOptions{tracks: 2})
	alice.waitReceiving(t, 50, "mallory")
	wait.For(t, "unknown_ssrc drops", func() bool { return e.Stats().Dropped[DropUnknownSSRC] >= 20 })
	checkStream(t, alice, "mallory") // only track 0 payloads
	if mallory.sentCount.Load() == 0 {
		t.Fatal("mallory sent nothing")
	}
}

// TestNACKAnsweredFromHistory: a subscriber's NACK is answered from the
// relay's history, on a fresh leg and on a leg reused for another publisher
// (whose sequence numbers the relay shifts to keep the leg continuous).
func TestNACKAnsweredFromHistory(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("nack", nil)
	// alice accepts a packet twice: the point is to see the resend.
	alice := joinClient(t, r, "alice", clientOptions{noReplayCheck: true})
	bob := joinClient(t, r, "bob", clientOptions{})
	alice.waitReceiving(t, 20, "bob")
	nackAndExpectResend(t, e, alice, "bob")

	bob.leave()
	wait.For(t, "bob's track to end", func() bool {
		_, ended, _ := alice.snapshot("bob")
		return ended
	})
	joinClient(t, r, "carol", clientOptions{})
	alice.waitReceiving(t, 20, "carol")
	alice.mu.Lock()
	bobSSRC, carolSSRC := alice.remote["bob"].track.SSRC(), alice.remote["carol"].track.SSRC()
	alice.mu.Unlock()
	if bobSSRC != carolSSRC {
		t.Errorf("carol's track did not reuse bob's leg (SSRC %d, bob's %d)", carolSSRC, bobSSRC)
	}
	// One SSRC, one sequence: carol's numbers continue bob's on the leg.
	fromBob, _, _ := alice.snapshot("bob")
	fromCarol, _, _ := alice.snapshot("carol")
	if gap := fromCarol[0].seq - fromBob[len(fromBob)-1].seq; gap == 0 || gap > 50 {
		t.Errorf("leg sequence jumps from %d (bob) to %d (carol)", fromBob[len(fromBob)-1].seq, fromCarol[0].seq)
	}
	nackAndExpectResend(t, e, alice, "carol")
	if s := e.Stats(); s.NACKsAnswered < 2 {
		t.Errorf("NACKsAnswered = %d, want 2", s.NACKsAnswered)
	}
}

// nackAndExpectResend has c NACK a packet it got from pub and waits for the
// same packet (sequence number and payload) to arrive again.
func nackAndExpectResend(t *testing.T, e *Engine, c *client, pub string) {
	t.Helper()
	packets, _, _ := c.snapshot(pub)
	nackPacketAndExpectResend(t, e, c, pub, packets[len(packets)-5])
}

// nackPacketAndExpectResend has c NACK packet want from pub and waits for it
// to arrive again.
func nackPacketAndExpectResend(t *testing.T, e *Engine, c *client, pub string, want received) {
	t.Helper()
	c.mu.Lock()
	ssrc := uint32(c.remote[pub].track.SSRC())
	c.mu.Unlock()
	before := e.Stats().NACKsAnswered
	if err := c.pc.WriteRTCP(nackPackets(ssrc, want.seq)); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the NACK to be answered", func() bool { return e.Stats().NACKsAnswered > before })
	wait.For(t, fmt.Sprintf("%s's packet %d to arrive again", pub, want.seq), func() bool {
		packets, _, _ := c.snapshot(pub)
		n := 0
		for _, p := range packets {
			if p.seq == want.seq {
				if !bytes.Equal(p.payload, want.payload) {
					t.Fatalf("resent packet %d has payload %q, want %q", p.seq, p.payload, want.payload)
				}
				n++
			}
		}
		return n >= 2
	})
}

// TestSpeakingEvents: the audio level drives speaking events and reaches
// subscribers, whether SRTP encrypts the header extensions (cryptex, RFC
// 9335, which pion offers) or the client leaves them in the clear. The
// relay says a=cryptex exactly when the client did.
func TestSpeakingEvents(t *testing.T) {
	for _, clear := range []bool{false, true} {
		t.Run(fmt.Sprintf("clearHeaders=%v", clear), func(t *testing.T) { testSpeakingEvents(t, clear) })
	}
}

func testSpeakingEvents(t *testing.T, clearHeaders bool) {
	e := newTestEngine(t)
	type event struct {
		id       string
		speaking bool
	}
	events := make(chan event, 16)
	r := e.NewRoom("speak", func(id string, speaking bool) { events <- event{id, speaking} })
	alice := joinClient(t, r, "alice", clientOptions{clearHeaders: clearHeaders})
	bob := joinClient(t, r, "bob", clientOptions{clearHeaders: clearHeaders})
	alice.waitReceiving(t, 10, "bob")
	for _, c := range []*client{alice, bob} {
		desc := c.pc.CurrentRemoteDescription().SDP
		if got := strings.Contains(desc, "a=cryptex\r\n"); got == clearHeaders {
			t.Errorf("%s: the relay's description has a=cryptex %v; the client offered it %v:\n%s", c.id, got, !clearHeaders, desc)
		}
	}

	next := func() event {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
		defer cancel()
		select {
		case ev := <-events:
			return ev
		case <-ctx.Done():
			t.Fatal("timed out waiting for a speaking event")
			return event{}
		}
	}
	bob.level.Store(30) // -30 dBov: speech
	if ev := next(); ev != (event{"bob", true}) {
		t.Fatalf("event %+v, want bob speaking", ev)
	}
	bob.level.Store(127) // silence
	if ev := next(); ev != (event{"bob", false}) {
		t.Fatalf("event %+v, want bob silent", ev)
	}
	// The level is forwarded to subscribers under their own extension ID.
	packets, _, _ := alice.snapshot("bob")
	sawLoud := false
	for _, p := range packets {
		if len(p.level) == 1 && p.level[0]&0x7f == 30 {
			sawLoud = true
		}
	}
	if !sawLoud {
		t.Error("alice never got bob's audio level")
	}
	select {
	case ev := <-events:
		t.Errorf("unexpected event %+v", ev)
	default:
	}
}

func nackPackets(ssrc uint32, seq uint16) []rtcp.Packet {
	return []rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: seq}}}}
}

// TestReceiverReportsToPublisher: the relay terminates RTCP and reports on
// what it received from each publisher itself.
func TestReceiverReportsToPublisher(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("rr", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	sender := alice.pc.GetSenders()[0]
	ssrc := uint32(sender.GetParameters().Encodings[0].SSRC)
	got := make(chan rtcp.ReceptionReport, 1)
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				rr, ok := p.(*rtcp.ReceiverReport)
				if !ok {
					continue
				}
				for _, rep := range rr.Reports {
					// LSR set: the relay read alice's sender reports too.
					if rep.SSRC == ssrc && rep.LastSequenceNumber > firstSeq && rep.LastSenderReport != 0 {
						select {
						case got <- rep:
						default:
						}
						return
					}
				}
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	select {
	case rep := <-got:
		if rep.TotalLost != 0 || rep.FractionLost != 0 {
			t.Errorf("loss reported on loopback: %+v", rep)
		}
	case <-ctx.Done():
		t.Fatal("no receiver report from the relay")
	}
}

// TestForeignPayloadTypeDropped: RTP on the participant's own stream with a
// payload type that was never negotiated is dropped and counted as
// malformed, and forwarding goes on.
func TestForeignPayloadTypeDropped(t *testing.T) {
	e := newTestEngine(t)
	r := e.NewRoom("pt", nil)
	alice := joinClient(t, r, "alice", clientOptions{})
	bob := joinClient(t, r, "bob", clientOptions{})
	alice.waitReceiving(t, 10, "bob")
	before := e.Stats().Dropped[DropMalformed]
	// The foreign packets are numbered a second ahead of bob's own, so
	// that SRTP takes them and, after them, bob's packets (behind them by
	// less than the replay window), however the two interleave.
	ahead := bob.nextSeq() + 50
	for i := range 5 {
		h := rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: ahead + uint16(i), Timestamp: 1}
		if err := bob.raw.writeRaw(h, []byte("pcmu, not opus")); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "malformed drops", func() bool { return e.Stats().Dropped[DropMalformed] >= before+5 })
	pk, _, _ := alice.snapshot("bob")
	alice.waitReceiving(t, len(pk)+10, "bob")
	checkStream(t, alice, "bob")
}
