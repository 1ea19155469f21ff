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
	alice := api.Participant{ID: "p_alice", Identity: "alice"}
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
		e.noteKey(e.remotes[from.ID], k)
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

// The key id the SDK reads from a header is the one the library wrote.
func TestSFrameKID(t *testing.T) {
	_, s, _ := frameState(t)
	for range 3 {
		k := s.Keys()[0]
		kid, ok := sframeKID(seal(t, s, []byte("opus")))
		if !ok || kid != k.KID() {
			t.Fatalf("sframeKID = %#x, %v; want %#x", kid, ok, k.KID())
		}
		k.Destroy()
		if _, err := s.Rekey(time.Now(), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]byte{nil, {0xd8, 1, 2}} {
		if _, ok := sframeKID(b); ok {
			t.Errorf("sframeKID(%x) parsed", b)
		}
	}
}

// Every way a frame fails lands in its own counter; a publisher whose key
// is on its way is awaiting, not failing.
func TestOpenClassifiesDrops(t *testing.T) {
	e, s, alice := frameState(t)
	now := time.Now()
	early := seal(t, s, []byte("before the key"))
	check := func(what string, from api.Participant, frame []byte, reason int) {
		t.Helper()
		before := e.dropped[reason].Load()
		if out, ok := e.open(from, frame, now); ok {
			t.Fatalf("%s: opened as %q", what, out)
		}
		if e.dropped[reason].Load() != before+1 {
			t.Fatalf("%s: not counted as %s (%v)", what, dropReasons[reason], e.droppedByReason())
		}
	}
	check("frame before the key", alice, early, dropAwaitingKey)
	check("frame from a stranger", api.Participant{ID: "p_stranger"}, early, dropAwaitingKey)

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
	check("frame from before the newcomer's key", alice, early, dropBeforeKey)
	good := seal(t, s, []byte("opus frame"))
	out, ok := e.open(alice, good, now)
	if !ok || !bytes.Equal(out, []byte("opus frame")) || e.decrypted.Load() != 1 {
		t.Fatalf("open = %q, %v", out, ok)
	}
	check("replay", alice, good, dropReplayed)
	tampered := seal(t, s, []byte("opus frame"))
	tampered[len(tampered)-1] ^= 1
	check("tampered", alice, tampered, dropAuthFailed)
	check("truncated", alice, good[:len(good)-len("opus frame")-2], dropMalformed)
	check("bad header", alice, []byte{0xd8, 1}, dropMalformed)
	check("another participant's track", api.Participant{ID: "p_mallory"}, seal(t, s, []byte("x")), dropWrongSender)

	// A fresh chain whose key has not arrived: awaiting, as long as it is
	// the publisher's own chain and only a few generations ahead.
	if _, err := s.Rekey(now, nil); err != nil {
		t.Fatal(err)
	}
	check("next generation", alice, seal(t, s, []byte("x")), dropAwaitingKey)
	stranger, err := e2ee.NewFrameSender(e2ee.FrameSenderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	check("foreign key id", alice, seal(t, stranger, []byte("x")), dropUnknownKID)

	e.remotes[alice.ID].blocked.Store(true)
	check("unaccepted identity", alice, good, dropIdentityUnverified)

	if out, ok := e.open(alice, nil, now); !ok || len(out) != 0 {
		t.Fatalf("empty frame: %q, %v", out, ok)
	}
}

// Protocol envelopes are told apart from application data by their first
// two bytes.
func TestIsProtocolPayload(t *testing.T) {
	for data, want := range map[string]bool{
		"\x01\x01rest": true, "\x01\x02": true, "\x01\x03": false, "\x02\x01": false, "\x01": false, "": false,
	} {
		if got := isProtocolPayload([]byte(data)); got != want {
			t.Errorf("isProtocolPayload(%q) = %v", data, got)
		}
	}
}

// MemoryTrustStore remembers per name and replaces on Remember.
func TestMemoryTrustStore(t *testing.T) {
	var s MemoryTrustStore
	if got, err := s.Lookup("alice"); err != nil || !got.Key.IsZero() {
		t.Fatalf("empty store: %+v, %v", got, err)
	}
	a, _ := e2ee.NewIdentity(nil)
	b, _ := e2ee.NewIdentity(nil)
	s.Remember("alice", TrustedIdentity{Key: a.Public(), Verified: true})
	s.Remember("bob", TrustedIdentity{Key: b.Public()})
	if got, _ := s.Lookup("alice"); !got.Key.Equal(a.Public()) || !got.Verified {
		t.Fatalf("alice: %+v", got)
	}
	s.Remember("alice", TrustedIdentity{Key: b.Public()})
	if got, _ := s.Lookup("alice"); !got.Key.Equal(b.Public()) || got.Verified {
		t.Fatalf("alice replaced: %+v", got)
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
