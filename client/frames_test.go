package client

import (
	"bytes"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
)

// frameState is the frame half of an e2eeState, without a network: a
// receiver that knows alice's sender.
func frameState(t testing.TB) (*e2eeState, *e2ee.FrameSender, api.Participant) {
	t.Helper()
	alice := api.Participant{ID: "p_alice", Identity: "alice", E2EE: api.E2EESotto1}
	sender, err := e2ee.NewFrameSender(e2ee.FrameSenderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sender.Close)
	e := &e2eeState{receiver: e2ee.NewFrameReceiver(e2ee.FrameReceiverConfig{}), remotes: map[string]*remote{}}
	e.remotes[alice.ID] = &remote{p: alice}
	return e, sender, alice
}

// install gives e the sender's current key as alice's.
func install(t testing.TB, e *e2eeState, s *e2ee.FrameSender, from api.Participant) {
	t.Helper()
	for _, k := range s.Keys() {
		if _, err := e.receiver.SetKey(from.ID, k, time.Now()); err != nil {
			t.Fatal(err)
		}
		k.Destroy()
	}
}

func seal(t testing.TB, s *e2ee.FrameSender, frame []byte) []byte {
	t.Helper()
	out, err := s.Seal(nil, frame, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every way a frame fails lands in its own counter; a publisher whose key
// is on its way is awaiting, not failing.
func TestOpenClassifiesDrops(t *testing.T) {
	e, s, alice := frameState(t)
	now := time.Now()
	early := seal(t, s, []byte("before the key"))
	check := func(what string, from api.Participant, frame []byte, reason string) {
		t.Helper()
		before := e.droppedByReason()
		if out, ok := e.open(from, frame, now); ok {
			t.Fatalf("%s: opened as %q", what, out)
		}
		after := e.droppedByReason()
		for _, d := range dropReasons {
			want := before[d.name]
			if d.name == reason {
				want++
			}
			if after[d.name] != want {
				t.Fatalf("%s: not counted as %s alone (%v)", what, reason, after)
			}
		}
	}
	check("frame before the key", alice, early, DropAwaitingKey)
	check("frame from a stranger", api.Participant{ID: "p_stranger"}, early, DropAwaitingKey)

	// A newcomer is given the step after the one early was sealed under:
	// early is audio from before it joined, kept from it by design.
	advanced, err := s.Advance()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range advanced {
		k.Destroy()
	}
	install(t, e, s, alice)
	check("frame from before the newcomer's key", alice, early, DropBeforeKey)
	good := seal(t, s, []byte("opus frame"))
	out, ok := e.open(alice, good, now)
	if !ok || !bytes.Equal(out, []byte("opus frame")) || e.decrypted.Load() != 1 {
		t.Fatalf("open = %q, %v", out, ok)
	}
	check("replay", alice, good, DropReplayed)
	tampered := seal(t, s, []byte("opus frame"))
	tampered[len(tampered)-1] ^= 1
	check("tampered", alice, tampered, DropAuthFailed)
	check("truncated", alice, good[:len(good)-len("opus frame")-2], DropMalformed)
	check("bad header", alice, []byte{0xd8, 1}, DropMalformed)
	check("another participant's track", api.Participant{ID: "p_mallory"}, seal(t, s, []byte("x")), DropWrongSender)
	check("a participant that does not encrypt", api.Participant{ID: "p_plain", Identity: "plain"}, []byte("plain opus"), DropNotEncrypted)

	// A fresh chain whose key has not arrived: awaiting, as long as it is
	// the publisher's own chain and only a few generations ahead.
	if _, err := s.Rekey(now, nil); err != nil {
		t.Fatal(err)
	}
	check("next generation", alice, seal(t, s, []byte("x")), DropAwaitingKey)
	stranger, err := e2ee.NewFrameSender(e2ee.FrameSenderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	check("foreign key id", alice, seal(t, stranger, []byte("x")), DropUnknownKID)

	e.remotes[alice.ID].blocked.Store(true)
	check("unaccepted identity", alice, good, DropIdentityUnverified)

	if out, ok := e.open(alice, nil, now); !ok || len(out) != 0 {
		t.Fatalf("empty frame: %q, %v", out, ok)
	}
}

// BenchmarkOpen measures the receive path of one frame: SFrame open and
// the copy handed to the application (its one allocation).
func BenchmarkOpen(b *testing.B) {
	e, s, alice := frameState(b)
	install(b, e, s, alice)
	frames := make([][]byte, 1024)
	for i := range frames {
		frames[i] = seal(b, s, make([]byte, 120))
	}
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(120)
	i := 0
	for b.Loop() {
		if i == len(frames) {
			b.StopTimer()
			for j := range frames {
				frames[j] = seal(b, s, make([]byte, 120))
			}
			i = 0
			b.StartTimer()
		}
		if _, ok := e.open(alice, frames[i], now); !ok {
			b.Fatal("frame dropped")
		}
		i++
	}
}

// BenchmarkSeal measures sealing a frame into the call's reused buffer.
func BenchmarkSeal(b *testing.B) {
	_, s, _ := frameState(b)
	e := &e2eeState{sender: s}
	buf := make([]byte, 0, MaxFrameSize+sealOverhead)
	frame := make([]byte, 120)
	now := time.Now()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		out, err := e.seal(buf[:0], frame, now)
		if err != nil {
			b.Fatal(err)
		}
		buf = out[:0]
	}
}
