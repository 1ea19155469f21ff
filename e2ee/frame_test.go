package e2ee

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func newSender(t testing.TB, suite CipherSuite) *FrameSender {
	t.Helper()
	s, err := NewFrameSender(FrameSenderConfig{Suite: suite})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deliver installs every key in a receiver as if it came through the
// participant's session (the frame-key message is encoded and parsed on
// the way) and returns the acks.
func deliver(t testing.TB, r *FrameReceiver, from string, keys ...FrameKey) []FrameKeyAck {
	t.Helper()
	var acks []FrameKeyAck
	for _, k := range keys {
		msg, err := k.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if ContentTypeOf(msg) != ContentFrameKey {
			t.Fatalf("content type %d", ContentTypeOf(msg))
		}
		parsed, err := ParseFrameKey(msg)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := r.SetKey(from, parsed, t0)
		if err != nil {
			t.Fatalf("set key from %s: %v", from, err)
		}
		raw, _ := ack.MarshalBinary()
		if back, err := ParseFrameKeyAck(raw); err != nil || back != ack {
			t.Fatalf("ack round trip: %v %v", back, err)
		}
		acks = append(acks, ack)
	}
	return acks
}

func seal(t testing.TB, s *FrameSender, frame string, now time.Time) []byte {
	t.Helper()
	out, err := s.Seal(nil, []byte(frame), now)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func expectOpen(t *testing.T, r *FrameReceiver, frame []byte, want, from string, now time.Time) {
	t.Helper()
	pt, err := r.Open(nil, frame, from, now)
	if err != nil {
		t.Fatalf("open %q from %q: %v", want, from, err)
	}
	if string(pt) != want {
		t.Fatalf("open: got %q, want %q", pt, want)
	}
}

func expectDrop(t *testing.T, r *FrameReceiver, frame []byte, from string, want error, now time.Time) {
	t.Helper()
	pt, err := r.Open(nil, frame, from, now)
	if !errors.Is(err, want) {
		t.Fatalf("open: got %q, %v; want %v", pt, err, want)
	}
}

// dropped is the number of frames s counts as dropped, for any reason.
func dropped(s FrameStats) uint64 {
	return s.Malformed + s.UnknownKID + s.AuthFailed + s.Replayed + s.ExpiredKey + s.WrongSender + s.AwaitingKey + s.BeforeKey
}

func TestFrameRoundTripAllSuites(t *testing.T) {
	for _, suite := range []CipherSuite{1, 2, 3, 4, 5} {
		t.Run(suite.String(), func(t *testing.T) {
			s := newSender(t, suite)
			r := NewFrameReceiver(FrameReceiverConfig{})
			deliver(t, r, "alice", s.Keys()...)
			for i := range 300 { // counters past the inline and 1-byte forms
				f := fmt.Sprintf("opus frame %d", i)
				sealed := seal(t, s, f, t0)
				if bytes.Contains(sealed, []byte(f)) {
					t.Fatal("plaintext visible in frame")
				}
				if len(sealed) != len(f)+suite.Overhead()+len(appendHeader(nil, KID(s.SenderIndex(), 0, 0), uint64(i))) {
					t.Fatalf("frame size %d", len(sealed))
				}
				expectOpen(t, r, sealed, f, "alice", t0)
			}
			// Empty frames (DTX) pass through as nothing, without errors.
			if out, err := s.Seal(nil, nil, t0); err != nil || len(out) != 0 {
				t.Fatalf("seal empty: %x, %v", out, err)
			}
			if out, err := r.Open(nil, nil, "alice", t0); err != nil || len(out) != 0 {
				t.Fatalf("open empty: %x, %v", out, err)
			}
			if st := r.Stats(); st.Opened != 300 || st != (FrameStats{Opened: 300}) {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestMembershipForwardSecrecy plays a call: B is present throughout, N
// joins, L leaves. N cannot decrypt what was sent before it joined; L
// cannot decrypt what is sent after the rekey.
func TestMembershipForwardSecrecy(t *testing.T) {
	a := newSender(t, 0)
	b, l, n := NewFrameReceiver(FrameReceiverConfig{}), NewFrameReceiver(FrameReceiverConfig{}), NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, b, "A", a.Keys()...)
	deliver(t, l, "A", a.Keys()...)

	before := seal(t, a, "before join", t0)
	expectOpen(t, b, before, "before join", "A", t0)
	expectOpen(t, l, before, "before join", "A", t0)

	// N joins: A advances its chain and sends N only the advanced key.
	keys, err := a.Advance()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].Generation() != 0 || keys[0].Step() != 1 {
		t.Fatalf("advanced keys %+v", keys)
	}
	deliver(t, n, "A", keys...)
	joined := seal(t, a, "after join", t0)
	expectOpen(t, n, joined, "after join", "A", t0)
	// B and L derive the step themselves.
	expectOpen(t, b, joined, "after join", "A", t0)
	expectOpen(t, l, joined, "after join", "A", t0)
	// The newcomer cannot go back: the frame predates its keys.
	expectDrop(t, n, before, "A", ErrBeforeKey, t0)
	if pt, err := n.Open(nil, seal(t, a, "x", t0), "A", t0); err != nil || string(pt) != "x" {
		t.Fatalf("newcomer lost the current step: %v", err)
	}

	// L leaves: A starts a fresh chain for B and N, and seals with the old
	// key until both acknowledged.
	fresh, err := a.Rekey(t0, []string{"B", "N"})
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Generation() != 1 || fresh.Step() != 0 {
		t.Fatalf("fresh key gen %d step %d", fresh.Generation(), fresh.Step())
	}
	ackB := deliver(t, b, "A", fresh)
	ackN := deliver(t, n, "A", fresh)
	pendingFrame := seal(t, a, "while pending", t0)
	if g, _ := a.Current(t0); g != 0 {
		t.Fatal("switched before acknowledgements")
	}
	expectOpen(t, l, pendingFrame, "while pending", "A", t0) // L still present in effect
	a.Acknowledge("B", ackB[0])
	if g, _ := a.Current(t0); g != 0 {
		t.Fatal("switched before all acknowledgements")
	}
	a.Acknowledge("N", ackN[0])
	if g, _ := a.Current(t0); g != 1 {
		t.Fatal("did not switch after all acknowledgements")
	}
	after := seal(t, a, "after leave", t0)
	expectOpen(t, b, after, "after leave", "A", t0)
	expectOpen(t, n, after, "after leave", "A", t0)
	// To the leaver the fresh chain is a key that never comes.
	expectDrop(t, l, after, "A", ErrAwaitingKey, t0)
	// Even a leaver that ratchets its old chain gets nothing.
	for range 3 {
		if _, err := a.Advance(); err != nil {
			t.Fatal(err)
		}
		expectDrop(t, l, seal(t, a, "later", t0), "A", ErrAwaitingKey, t0)
	}
	if st := l.Stats(); st.AwaitingKey != 4 || st.Opened != 3 {
		t.Fatalf("leaver stats %+v", st)
	}
}

func TestRekeySwitchesAfterDelay(t *testing.T) {
	a := newSender(t, 0)
	b := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, b, "A", a.Keys()...)
	fresh, err := a.Rekey(t0, []string{"B", "silent"})
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, b, "A", fresh)
	if g, _ := a.Current(t0.Add(DefaultSwitchDelay - time.Millisecond)); g != 0 {
		t.Fatal("switched before the delay")
	}
	old := seal(t, a, "old", t0)
	switched := seal(t, a, "new", t0.Add(DefaultSwitchDelay))
	if g, _ := a.Current(t0.Add(DefaultSwitchDelay)); g != 1 {
		t.Fatal("no switch after the delay")
	}
	now := t0.Add(DefaultSwitchDelay)
	expectOpen(t, b, switched, "new", "A", now)
	// The old generation stays open for the grace period only.
	expectOpen(t, b, old, "old", "A", now.Add(DefaultGracePeriod-time.Millisecond))
	expectDrop(t, b, old, "A", ErrKeyExpired, now.Add(DefaultGracePeriod))
	if st := b.Stats(); st.ExpiredKey != 1 {
		t.Fatalf("stats %+v", st)
	}

	if _, err := NewFrameSender(FrameSenderConfig{SwitchDelay: 3 * time.Second}); err == nil {
		t.Fatal("switch delay above 2 s accepted")
	}
	// A join while a switch is pending advances both chains: the newcomer
	// gets both advanced keys, a receiver present before derives them.
	c := newSender(t, 0)
	if _, err := c.Rekey(t0, []string{"B"}); err != nil {
		t.Fatal(err)
	}
	br := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, br, "C", c.Keys()...) // generation 0 and pending 1, step 0
	keys, err := c.Advance()
	if err != nil || len(keys) != 2 || keys[0].Generation() != 0 || keys[0].Step() != 1 || keys[1].Generation() != 1 || keys[1].Step() != 1 {
		t.Fatalf("advance during switch: %+v %v", keys, err)
	}
	nr := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, nr, "C", keys...)
	oldFrame := seal(t, c, "old chain", t0)
	expectOpen(t, nr, oldFrame, "old chain", "C", t0)
	expectOpen(t, br, oldFrame, "old chain", "C", t0)
	late := t0.Add(time.Hour)
	newFrame := seal(t, c, "new chain", late)
	expectOpen(t, nr, newFrame, "new chain", "C", late)
	expectOpen(t, br, newFrame, "new chain", "C", late)
}

func TestFrameDrops(t *testing.T) {
	a := newSender(t, 0)
	r := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, r, "A", a.Keys()...)
	frame := seal(t, a, "some opus audio", t0)

	for i := range frame {
		bad := bytes.Clone(frame)
		bad[i] ^= 0x01
		if _, err := r.Open(nil, bad, "A", t0); err == nil {
			t.Fatalf("tampered byte %d accepted", i)
		}
	}
	for n := 1; n < len(frame); n++ {
		if _, err := r.Open(nil, frame[:n], "A", t0); err == nil {
			t.Fatalf("truncated to %d accepted", n)
		}
	}
	expectOpen(t, r, frame, "some opus audio", "A", t0)
	expectDrop(t, r, frame, "A", ErrReplayed, t0)

	other := newSender(t, 0)
	expectDrop(t, r, seal(t, other, "stranger", t0), "A", ErrUnknownKID, t0)
	// Same KID and a fresh counter, but not sealed with the key.
	forged := seal(t, a, "some opus audio", t0)
	copy(forged[len(forged)-20:], "forged bytes........")
	expectDrop(t, r, forged, "A", ErrAuthFailed, t0)
	expectDrop(t, r, []byte{0xff}, "A", ErrMalformed, t0)

	st := r.Stats()
	if st.Opened != 1 || st.Replayed != 1 || st.UnknownKID == 0 || st.AuthFailed == 0 || st.Malformed == 0 {
		t.Fatalf("stats %+v", st)
	}
	if total := dropped(st); total != uint64(len(frame))+uint64(len(frame)-1)+4 {
		t.Fatalf("%d drops counted, stats %+v", total, st)
	}
}

// The receiver tells why a frame from a participant does not open, from
// the keys that participant sent: none yet, a newer generation on its way,
// a step from before its first key, or someone else's frame.
func TestFrameDropReasonsOfPublisher(t *testing.T) {
	a, b := newSender(t, 0), newSender(t, 0)
	r := NewFrameReceiver(FrameReceiverConfig{})
	first := seal(t, a, "before any key", t0)
	expectDrop(t, r, first, "A", ErrAwaitingKey, t0)
	// A joins after us: we get its advanced key only.
	keys, err := a.Advance()
	if err != nil {
		t.Fatal(err)
	}
	deliver(t, r, "A", keys...)
	expectDrop(t, r, first, "A", ErrBeforeKey, t0)
	expectOpen(t, r, seal(t, a, "after", t0), "after", "A", t0)
	// A starts a fresh chain whose key has not reached us.
	if _, err := a.Rekey(t0, nil); err != nil {
		t.Fatal(err)
	}
	fresh := seal(t, a, "fresh", t0)
	expectDrop(t, r, fresh, "A", ErrAwaitingKey, t0)
	deliver(t, r, "A", a.Keys()...)
	expectOpen(t, r, fresh, "fresh", "A", t0)

	// B re-sends A's frame on its own track: it authenticates under A's
	// key, is dropped, and still opens on A's track afterwards.
	deliver(t, r, "B", b.Keys()...)
	moved := seal(t, a, "moved", t0)
	expectDrop(t, r, moved, "B", ErrWrongSender, t0)
	expectOpen(t, r, moved, "moved", "A", t0)
	// A frame under an index nobody announced, on a keyed track.
	expectDrop(t, r, seal(t, newSender(t, 0), "stranger", t0), "B", ErrUnknownKID, t0)

	want := FrameStats{Opened: 3, AwaitingKey: 2, BeforeKey: 1, WrongSender: 1, UnknownKID: 1}
	if st := r.Stats(); st != want {
		t.Fatalf("stats %+v, want %+v", st, want)
	}
}

func TestFrameOutOfOrderAndReplayWindow(t *testing.T) {
	a := newSender(t, 0)
	r := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, r, "A", a.Keys()...)
	var frames [][]byte
	for i := range 200 {
		frames = append(frames, seal(t, a, fmt.Sprint(i), t0))
	}
	for _, i := range []int{5, 3, 4, 0, 1, 2, 150} {
		expectOpen(t, r, frames[i], fmt.Sprint(i), "A", t0)
	}
	expectOpen(t, r, frames[23], "23", "A", t0)        // 127 below the highest: inside the window
	expectDrop(t, r, frames[22], "A", ErrReplayed, t0) // 128 below: outside
	expectDrop(t, r, frames[150], "A", ErrReplayed, t0)
	expectOpen(t, r, frames[199], "199", "A", t0)
	expectOpen(t, r, frames[160], "160", "A", t0)
}

func TestReplayWindowModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var w replayWindow
	seen := map[uint64]bool{}
	var max uint64
	for range 20000 {
		ctr := max + uint64(rng.IntN(40))
		if rng.IntN(2) == 0 && max > 200 {
			ctr = max - uint64(rng.IntN(200))
		}
		want := !seen[ctr] && (len(seen) == 0 || ctr > max || max-ctr < ReplayWindow)
		if got := w.check(ctr); got != want {
			t.Fatalf("check(%d) with max %d: got %v, want %v", ctr, max, got, want)
		}
		if want {
			w.mark(ctr)
			seen[ctr] = true
			if ctr > max {
				max = ctr
			}
		}
	}
}

func TestFrameKeyBindingAndStaleness(t *testing.T) {
	a := newSender(t, 0)
	r := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, r, "A", a.Keys()...)
	k := a.Keys()[0]
	// Another participant claiming A's sender index is refused.
	if _, err := r.SetKey("M", k, t0); !errors.Is(err, ErrSenderIndexInUse) {
		t.Fatalf("index takeover: %v", err)
	}
	// Redelivery is idempotent.
	if _, err := r.SetKey("A", k, t0); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if _, err := a.Advance(); err != nil {
		t.Fatal(err)
	}
	expectOpen(t, r, seal(t, a, "step 1", t0), "step 1", "A", t0)
	// The old step arriving late, after its grace period, is stale.
	if _, err := r.SetKey("A", k, t0.Add(DefaultGracePeriod)); !errors.Is(err, ErrStaleKey) {
		t.Fatalf("stale key: %v", err)
	}
	// A participant leaving zeroes its keys and frees its index.
	r.RemoveParticipant("A")
	expectDrop(t, r, seal(t, a, "gone", t0), "A", ErrAwaitingKey, t0) // A has no key any more
	if _, err := r.SetKey("M", a.Keys()[0], t0); err != nil {
		t.Fatalf("freed index: %v", err)
	}
	// Ratcheting too far ahead is not attempted.
	b := newSender(t, 0)
	deliver(t, r, "B", b.Keys()...)
	for range MaxRatchetAhead + 1 {
		if _, err := b.Advance(); err != nil {
			t.Fatal(err)
		}
	}
	expectDrop(t, r, seal(t, b, "far", t0), "B", ErrUnknownKID, t0)
}

func TestChainExhaustion(t *testing.T) {
	a := newSender(t, 0)
	for range MaxRatchetStep {
		if _, err := a.Advance(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Advance(); !errors.Is(err, ErrChainExhausted) {
		t.Fatalf("advance past step 255: %v", err)
	}
	if k, err := a.Rekey(t0, nil); err != nil || k.Generation() != 1 {
		t.Fatalf("rekey: %v", err)
	}
	if g, s := a.Current(t0); g != 1 || s != 0 {
		t.Fatalf("after rekey with no peers: gen %d step %d", g, s)
	}
	a.Close()
	if _, err := a.Seal(nil, []byte("x"), t0); !errors.Is(err, ErrClosed) {
		t.Fatalf("seal after close: %v", err)
	}
	if _, err := a.Advance(); !errors.Is(err, ErrClosed) {
		t.Fatalf("advance after close: %v", err)
	}
}

func TestFrameKeyEncoding(t *testing.T) {
	a := newSender(t, AES256GCMSHA512)
	k := a.Keys()[0]
	raw, err := k.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 12+64 {
		t.Fatalf("suite 5 frame key is %d bytes", len(raw))
	}
	for _, bad := range [][]byte{nil, raw[:11], raw[:len(raw)-1], append(bytes.Clone(raw), 0), append([]byte{2}, raw[1:]...), append([]byte{1, 0, 9}, raw[3:]...)} {
		if _, err := ParseFrameKey(bad); err == nil {
			t.Errorf("frame key %x accepted", bad)
		}
	}
	if KID(0x01020304, 0x1ff, 7) != 0x01020304ff07 {
		t.Errorf("KID layout: %x", KID(0x01020304, 0x1ff, 7))
	}
	if got := KID(0xffffffff, 0xffffffff, 255); got != 1<<48-1 {
		t.Errorf("largest KID %x", got)
	}
}

// TestFrameConcurrentUse seals and opens on media goroutines while the
// signaling side advances, rekeys and installs keys (run with -race).
func TestFrameConcurrentUse(t *testing.T) {
	a := newSender(t, 0)
	r := NewFrameReceiver(FrameReceiverConfig{})
	deliver(t, r, "A", a.Keys()...)
	frames := make(chan []byte, 64)
	done := make(chan struct{})
	go func() {
		defer close(frames)
		for i := range 2000 {
			f, err := a.Seal(nil, []byte(fmt.Sprint(i)), t0.Add(time.Duration(i)*time.Millisecond))
			if err != nil {
				t.Error(err)
				return
			}
			frames <- f
		}
	}()
	var opened int
	go func() {
		defer close(done)
		for f := range frames {
			if _, err := r.Open(nil, f, "A", t0); err == nil {
				opened++
			}
		}
	}()
	for i := range 20 {
		if i%2 == 0 {
			if _, err := a.Advance(); err != nil {
				t.Fatal(err)
			}
		} else {
			k, err := a.Rekey(t0, []string{"B"})
			if err != nil {
				t.Fatal(err)
			}
			ack, err := r.SetKey("A", k, t0)
			if err != nil {
				t.Fatal(err)
			}
			a.Acknowledge("B", ack)
		}
		r.Stats()
	}
	<-done
	if opened == 0 {
		t.Fatal("no frame opened")
	}
}
