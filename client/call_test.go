package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/pionlog"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
)

// payload returns the deterministic frame number i of sender: its identity,
// its index and pseudo-random bytes of varying length, so that receivers
// can check every byte.
func payload(sender string, i int) []byte {
	h := fnv.New64a()
	h.Write([]byte(sender))
	r := rand.New(rand.NewPCG(h.Sum64(), uint64(i)))
	b := fmt.Appendf(nil, "%s#%d|", sender, i)
	for n := 40 + r.IntN(160); n > 0; n-- {
		b = append(b, byte(r.Uint32()))
	}
	return b
}

// frameIndex parses the index out of a payload made by payload.
func frameIndex(data []byte) (string, int, bool) {
	head, _, ok := bytes.Cut(data, []byte("|"))
	if !ok {
		return "", 0, false
	}
	who, num, ok := strings.Cut(string(head), "#")
	if !ok {
		return "", 0, false
	}
	i, err := strconv.Atoi(num)
	return who, i, err == nil
}

// peer is a test participant: a Call whose frames, events and envelopes
// are recorded by a reader goroutine, and an optional talker goroutine that
// writes numbered frames.
type peer struct {
	t    *testing.T
	name string
	call *Call

	mu        sync.Mutex
	frames    map[string][]Frame // by sender identity
	events    []Event
	envelopes []Envelope
	readDone  chan struct{}

	sent     atomic.Int64 // frames written by the talker
	stopTalk chan struct{}
	talkDone chan struct{}
}

func joinPeer(ctx context.Context, t *testing.T, srv *testserver.Server, room, name string) *peer {
	t.Helper()
	return joinPeerWith(ctx, t, srv, room, name, &Options{IPFilter: loopback})
}

func joinPeerWith(ctx context.Context, t *testing.T, srv *testserver.Server, room, name string, opts *Options) *peer {
	t.Helper()
	call, err := Join(ctx, srv.URL, srv.Token(room, name), opts)
	if err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	return track(t, call)
}

func (p *peer) read() {
	defer close(p.readDone)
	frames, events, envelopes := p.call.Frames(), p.call.Events(), p.call.Envelopes()
	for frames != nil || events != nil || envelopes != nil {
		select {
		case f, ok := <-frames:
			if !ok {
				frames = nil
				continue
			}
			p.mu.Lock()
			p.frames[f.From.Identity] = append(p.frames[f.From.Identity], f)
			p.mu.Unlock()
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			p.mu.Lock()
			p.events = append(p.events, e)
			p.mu.Unlock()
		case e, ok := <-envelopes:
			if !ok {
				envelopes = nil
				continue
			}
			p.mu.Lock()
			p.envelopes = append(p.envelopes, e)
			p.mu.Unlock()
		}
	}
}

// talk writes numbered frames every 10 ms until stop, unless it is already
// talking. Numbering goes on where the last talk stopped.
func (p *peer) talk() {
	if p.stopTalk != nil {
		return
	}
	stop, done := make(chan struct{}), make(chan struct{})
	p.stopTalk, p.talkDone = stop, done
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := int(p.sent.Load()); ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := p.call.WriteFrame(payload(p.name, i), 20*time.Millisecond); err != nil {
				if !errors.Is(err, ErrClosed) {
					p.t.Errorf("%s: write frame %d: %v", p.name, i, err)
				}
				return
			}
			p.sent.Store(int64(i + 1))
		}
	}()
}

// stop stops the talker and returns how many frames it wrote.
func (p *peer) stop() int {
	if p.stopTalk != nil {
		close(p.stopTalk)
		<-p.talkDone
		p.stopTalk, p.talkDone = nil, nil
	}
	return int(p.sent.Load())
}

// received returns a copy of the frames received from sender.
func (p *peer) received(sender string) []Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Frame(nil), p.frames[sender]...)
}

// lastIndex is the index of the last frame received from sender, or -1.
func (p *peer) lastIndex(sender string) int {
	fs := p.received(sender)
	if len(fs) == 0 {
		return -1
	}
	_, i, _ := frameIndex(fs[len(fs)-1].Data)
	return i
}

func (p *peer) findEvent(match func(Event) bool) (Event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if match(e) {
			return e, true
		}
	}
	return nil, false
}

// hears waits until listener has received a frame from every talker.
func hears(ctx context.Context, t *testing.T, listener *peer, talkers ...*peer) {
	t.Helper()
	for _, tk := range talkers {
		wait.Until(ctx, t, listener.name+" hears "+tk.name, func() bool { return len(listener.received(tk.name)) > 0 })
	}
}

// checkStream checks what listener received from talker: the right sender,
// every payload byte-identical to what was sent, in sending order with
// sequence numbers that match, and nothing missing from index from to to
// (exclusive).
func checkStream(t *testing.T, listener, talker *peer, from, to int) {
	t.Helper()
	fs := listener.received(talker.name)
	prev := -1
	var prevSeq uint16
	have := make(map[int]bool)
	want := nameOf(listener, talker)
	for _, f := range fs {
		if f.From.ID != want || f.From.Identity != talker.name {
			t.Fatalf("%s: frame from %+v in %s's stream, want {%s %s}", listener.name, f.From, talker.name, want, talker.name)
		}
		who, i, ok := frameIndex(f.Data)
		if !ok || who != talker.name {
			t.Fatalf("%s: unparseable frame %q from %s", listener.name, f.Data, talker.name)
		}
		if !bytes.Equal(f.Data, payload(talker.name, i)) {
			t.Fatalf("%s: frame %d from %s differs from what was sent", listener.name, i, talker.name)
		}
		if i <= prev {
			t.Fatalf("%s: frame %d from %s after frame %d: out of order", listener.name, i, talker.name, prev)
		}
		if prev >= 0 && f.Seq-prevSeq != uint16(i-prev) {
			t.Fatalf("%s: frames %d and %d from %s have sequence numbers %d and %d", listener.name, prev, i, talker.name, prevSeq, f.Seq)
		}
		prev, prevSeq = i, f.Seq
		have[i] = true
	}
	for i := from; i < to; i++ {
		if !have[i] {
			t.Fatalf("%s: frame %d of %s's frames %d..%d missing (got %d frames)", listener.name, i, talker.name, from, to-1, len(fs))
		}
	}
}

// nameOf returns the ID under which listener knows talker: the one talker
// got from the server, unless talker rejoined while listener stayed (the
// server then named talker anew).
func nameOf(listener, talker *peer) string {
	for _, p := range listener.call.Participants() {
		if p.Identity == talker.name {
			return p.ID
		}
	}
	return talker.call.ID()
}

// forget drops the frames and events recorded so far, for checks of what
// comes after.
func (p *peer) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frames = make(map[string][]Frame)
	p.events = nil
}

// talkAndCheck lets every peer talk until each hears all the others, then
// for tail more frames, and checks every stream between every pair.
func talkAndCheck(ctx context.Context, t *testing.T, peers []*peer, tail int) {
	t.Helper()
	for _, p := range peers {
		p.talk()
	}
	for _, l := range peers {
		for _, tk := range peers {
			if l != tk {
				hears(ctx, t, l, tk)
			}
		}
	}
	// Everything written from now on must arrive, complete and in order.
	start := make(map[*peer]int)
	for _, p := range peers {
		start[p] = int(p.sent.Load())
	}
	for _, p := range peers {
		wait.Until(ctx, t, fmt.Sprintf("%s sends %d more frames", p.name, tail), func() bool { return int(p.sent.Load()) >= start[p]+tail })
	}
	end := make(map[*peer]int)
	for _, p := range peers {
		end[p] = p.stop()
	}
	for _, l := range peers {
		for _, tk := range peers {
			if l == tk {
				continue
			}
			wait.Until(ctx, t, fmt.Sprintf("%s receives %s's last frame", l.name, tk.name), func() bool { return l.lastIndex(tk.name) == end[tk]-1 })
			checkStream(t, l, tk, start[tk], end[tk])
		}
	}
}

func isJoined(id string) func(Event) bool {
	return func(e Event) bool {
		j, ok := e.(ParticipantJoined)
		return ok && j.Participant.ID == id
	}
}

func isLeft(id string) func(Event) bool {
	return func(e Event) bool {
		l, ok := e.(ParticipantLeft)
		return ok && l.Participant.ID == id
	}
}

// Three callers each receive the other two's frames byte-identical and in
// order, with the sender's identity; a fourth joins mid-call and is heard
// by and hears everyone; one leaves, and the others are told and its track
// stops.
func TestCallThreeThenFourThenLeave(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)

	alice := joinPeer(ctx, t, srv, "standup", "alice")
	bob := joinPeer(ctx, t, srv, "standup", "bob")
	carol := joinPeer(ctx, t, srv, "standup", "carol")
	talkAndCheck(ctx, t, []*peer{alice, bob, carol}, 100)

	for _, p := range []*peer{alice, bob, carol} {
		if got := p.call.Participants(); len(got) != 2 {
			t.Errorf("%s: Participants() = %v, want the two others", p.name, got)
		}
		if s := p.call.Stats(); s.FramesSent == 0 || s.FramesReceived == 0 || s.FramesDropped != 0 {
			t.Errorf("%s: stats %+v", p.name, s)
		}
	}
	// Alice joined first: she learns of the others by events.
	for _, other := range []*peer{bob, carol} {
		e, ok := alice.findEvent(isJoined(other.call.ID()))
		if !ok {
			t.Fatalf("alice: no joined event for %s", other.name)
		}
		if got := e.(ParticipantJoined).Participant.Identity; got != other.name {
			t.Errorf("alice: joined event for %s names %q", other.name, got)
		}
	}

	// Dave joins while everyone talks: the relay renegotiates with all.
	for _, p := range []*peer{alice, bob, carol} {
		p.talk()
	}
	dave := joinPeer(ctx, t, srv, "standup", "dave")
	talkAndCheck(ctx, t, []*peer{alice, bob, carol, dave}, 50)
	for _, p := range []*peer{alice, bob, carol} {
		if _, ok := p.findEvent(isJoined(dave.call.ID())); !ok {
			t.Errorf("%s: no joined event for dave", p.name)
		}
		if _, ok := dave.findEvent(isJoined(p.call.ID())); !ok {
			t.Errorf("dave: no joined event for %s", p.name)
		}
	}
	if got := dave.call.Participants(); len(got) != 3 {
		t.Errorf("dave: Participants() = %v, want three", got)
	}

	// Carol leaves: the others are told why and her track ends.
	carolID := carol.call.ID()
	if err := carol.call.Leave(); err != nil {
		t.Fatalf("carol: leave: %v", err)
	}
	if err := carol.call.Err(); !errors.Is(err, ErrLeft) {
		t.Errorf("carol: Err() = %v after Leave, want ErrLeft", err)
	}
	if err := carol.call.WriteFrame([]byte{1}, 20*time.Millisecond); !errors.Is(err, ErrClosed) {
		t.Errorf("carol: WriteFrame after Leave = %v, want ErrClosed", err)
	}
	if err := carol.call.Leave(); err != nil {
		t.Errorf("carol: second Leave = %v, want nil", err)
	}
	for _, p := range []*peer{alice, bob, dave} {
		wait.Until(ctx, t, p.name+" hears carol left", func() bool {
			_, ok := p.findEvent(isLeft(carolID))
			return ok
		})
		e, _ := p.findEvent(isLeft(carolID))
		if l := e.(ParticipantLeft); l.Reason != api.ReasonLeft || l.Participant.Identity != "carol" {
			t.Errorf("%s: %+v, want carol left with reason %q", p.name, l, api.ReasonLeft)
		}
		wait.Until(ctx, t, p.name+" stops carol's track", func() bool { return p.call.tconn().remoteTracks(carolID) == 0 })
		for _, q := range p.call.Participants() {
			if q.ID == carolID {
				t.Errorf("%s: carol still in Participants()", p.name)
			}
		}
	}
	// Erin takes the free place: the relay may reuse carol's transceivers
	// for her, and everyone still hears everyone, with the right identity.
	erin := joinPeer(ctx, t, srv, "standup", "erin")
	talkAndCheck(ctx, t, []*peer{alice, bob, dave, erin}, 20)
}

// A participant that vanishes without leaving is reported as dropped once
// the server's drop timeout has passed.
func TestCallVanishedParticipantIsDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, &testserver.Options{DropTimeout: 2 * time.Second})

	alice := joinPeer(ctx, t, srv, "room-1", "alice")
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	// Bob's media goes through a socket the test owns, so that he can fall
	// silent at once, as a crashed process does, without the DTLS close
	// that closing a PeerConnection sends. A crashed process does not
	// rejoin either.
	bob := joinPeerWith(ctx, t, srv, "room-1", "bob", &Options{IPFilter: loopback, ResumeWindow: -1, Logger: slog.New(slog.DiscardHandler), settings: func(se *webrtc.SettingEngine) {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(pionlog.Factory(slog.New(slog.DiscardHandler)).NewLogger("mux"), sock))
	}})
	carol := joinPeer(ctx, t, srv, "room-1", "carol")
	talkAndCheck(ctx, t, []*peer{alice, bob, carol}, 10)

	bobID := bob.call.ID()
	start := time.Now()
	sock.Close()
	bob.call.tconn().closeAbruptly()
	for _, p := range []*peer{alice, carol} {
		wait.Until(ctx, t, p.name+" hears bob was dropped", func() bool {
			_, ok := p.findEvent(isLeft(bobID))
			return ok
		})
		e, _ := p.findEvent(isLeft(bobID))
		if l := e.(ParticipantLeft); l.Reason != api.ReasonDropped || l.Participant.Identity != "bob" {
			t.Errorf("%s: %+v, want bob with reason %q", p.name, l, api.ReasonDropped)
		}
		wait.Until(ctx, t, p.name+" stops bob's track", func() bool { return p.call.tconn().remoteTracks(bobID) == 0 })
	}
	t.Logf("dropped after %v (drop timeout 2s)", time.Since(start).Round(time.Millisecond))
}

// Envelopes travel between participants through the server, byte for byte
// and with the sender's identity; one for a stranger comes back as an error.
func TestCallEnvelopes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "room-2", "alice")
	bob := joinPeer(ctx, t, srv, "room-2", "bob")

	data := []byte{0, 1, 2, 0xff, 'k', 'e', 'y'}
	if err := alice.call.SendEnvelope(ctx, bob.call.ID(), data); err != nil {
		t.Fatalf("alice: send envelope: %v", err)
	}
	reply := bytes.Repeat([]byte("r"), 4096)
	wait.Until(ctx, t, "bob receives alice's envelope", func() bool {
		bob.mu.Lock()
		defer bob.mu.Unlock()
		return len(bob.envelopes) > 0
	})
	bob.mu.Lock()
	got := bob.envelopes[0]
	bob.mu.Unlock()
	if got.From.ID != alice.call.ID() || got.From.Identity != "alice" || !bytes.Equal(got.Data, data) {
		t.Fatalf("bob received %+v, want %v from alice", got, data)
	}
	if err := bob.call.SendEnvelope(ctx, got.From.ID, reply); err != nil {
		t.Fatalf("bob: send envelope: %v", err)
	}
	wait.Until(ctx, t, "alice receives bob's reply", func() bool {
		alice.mu.Lock()
		defer alice.mu.Unlock()
		return len(alice.envelopes) > 0 && bytes.Equal(alice.envelopes[0].Data, reply) && alice.envelopes[0].From.Identity == "bob"
	})

	if err := alice.call.SendEnvelope(ctx, "nobody", data); err != nil {
		t.Fatalf("alice: send envelope to nobody: %v", err)
	}
	wait.Until(ctx, t, "alice is told the recipient is unknown", func() bool {
		_, ok := alice.findEvent(func(e Event) bool {
			se, ok := e.(ServerError)
			return ok && se.Err.Code == api.CodeUnknownRecipient
		})
		return ok
	})
}

// Frames written with a loud voice level make the server report the
// speaker to everyone.
func TestCallSpeaking(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "room-3", "alice")
	bob := joinPeer(ctx, t, srv, "room-3", "bob")

	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ctx.Err() == nil; i++ {
			<-tick.C
			if err := alice.call.WriteFrameLevel(payload("alice", i), 20*time.Millisecond, AudioLevel{Level: 10, Voice: true}); err != nil {
				return
			}
		}
	}()
	wait.Until(ctx, t, "bob sees alice speaking", func() bool {
		_, ok := bob.findEvent(func(e Event) bool {
			s, ok := e.(Speaking)
			return ok && s.Speaking && s.Participant.ID == alice.call.ID() && s.Participant.Identity == "alice"
		})
		return ok
	})
}

// Bad frames are refused before they reach the network.
func TestWriteFrameRejectsBadInput(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "room-4", "alice")
	for _, tc := range []struct {
		frame []byte
		d     time.Duration
	}{
		{nil, 20 * time.Millisecond},
		{make([]byte, MaxFrameSize+1), 20 * time.Millisecond},
		{[]byte{1}, 0},
		{[]byte{1}, -time.Millisecond},
		{[]byte{1}, 10 * time.Nanosecond},
		{[]byte{1}, MaxFrameDuration + time.Millisecond},
	} {
		if err := alice.call.WriteFrame(tc.frame, tc.d); err == nil {
			t.Errorf("WriteFrame(%d bytes, %v) succeeded", len(tc.frame), tc.d)
		}
	}
	if s := alice.call.Stats(); s.FramesSent != 0 {
		t.Errorf("FramesSent = %d after only bad frames", s.FramesSent)
	}
	if err := alice.call.WriteFrame(make([]byte, MaxFrameSize), MaxFrameDuration); err != nil {
		t.Errorf("largest frame: %v", err)
	}
}

// A second join with the same identity takes the call to its device: the
// first ends with a ClosedError that says it moved.
func TestCallReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	first := joinPeer(ctx, t, srv, "room-5", "alice")
	joinPeer(ctx, t, srv, "room-5", "alice")
	select {
	case <-first.call.Done():
	case <-ctx.Done():
		t.Fatal("first call did not end")
	}
	var ce *ClosedError
	if err := first.call.Err(); !errors.As(err, &ce) || ce.Reason != api.ReasonMovedToAnotherDevice || !errors.Is(err, ErrMovedToAnotherDevice) {
		t.Fatalf("Err() = %v, want ClosedError %q", err, api.ReasonMovedToAnotherDevice)
	}
	<-first.readDone
	if _, ok := first.findEvent(func(e Event) bool { _, ok := e.(Closed); return ok }); !ok {
		t.Error("no Closed event")
	}
}

// A rejected token is an *api.Error from Join.
func TestJoinWithForgedToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	tok := srv.Token("room-6", "mallory")
	forged := tok[:strings.LastIndex(tok, ".")+1] + "AAAA"
	_, err := Join(ctx, srv.URL, forged, &Options{IPFilter: loopback})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Code != api.CodeUnauthorized {
		t.Fatalf("Join with forged token: %v, want *api.Error %s", err, api.CodeUnauthorized)
	}
}

// When the event stream drops, the client reconnects it within the drop
// timeout: the call goes on and nobody is told it left.
func TestCallSurvivesEventStreamLoss(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, &testserver.Options{DropTimeout: 10 * time.Second})
	alice := joinPeer(ctx, t, srv, "room-7", "alice")
	bob := joinPeer(ctx, t, srv, "room-7", "bob")

	old := alice.call.tconn().currentWS()
	old.CloseNow()
	wait.Until(ctx, t, "alice's event stream reconnects", func() bool { return alice.call.tconn().currentWS() != old })

	// Envelopes flow both ways on the new stream, and media still flows.
	if err := bob.call.SendEnvelope(ctx, alice.call.ID(), []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := alice.call.SendEnvelope(ctx, bob.call.ID(), []byte("reply")); err != nil {
		t.Fatal(err)
	}
	wait.Until(ctx, t, "envelopes cross after the reconnect", func() bool {
		alice.mu.Lock()
		a := len(alice.envelopes)
		alice.mu.Unlock()
		bob.mu.Lock()
		b := len(bob.envelopes)
		bob.mu.Unlock()
		return a == 1 && b == 1
	})
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
	if _, ok := bob.findEvent(isLeft(alice.call.ID())); ok {
		t.Error("bob was told alice left")
	}
	if err := alice.call.Err(); err != nil {
		t.Errorf("alice's call ended: %v", err)
	}
}
