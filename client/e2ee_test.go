package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/testserver"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/token"
)

// tap is a participant that joins through the bare transport and records
// every payload the relay forwards to it, without decrypting anything: what
// the relay (or anyone holding the hop-by-hop keys) sees of a call.
type tap struct {
	conn *conn

	mu        sync.Mutex
	frames    map[string][][]byte // by publisher participant ID, in arrival order
	envelopes map[string][][]byte // by sender participant ID
}

func (t *tap) frame(from api.Participant, _ uint16, _ uint32, payload []byte, _ time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.frames[from.ID] = append(t.frames[from.ID], append([]byte(nil), payload...))
}

func (*tap) joined(api.Participant, bool)   {}
func (*tap) left(api.Participant, string)   {}
func (*tap) speaking(api.Participant, bool) {}
func (t *tap) envelope(from api.Participant, data []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.envelopes[from.ID] = append(t.envelopes[from.ID], append([]byte(nil), data...))
}
func (*tap) serverError(*api.Error)             {}
func (*tap) admitted(present []api.Participant) {}
func (*tap) prekeysLow()                        {}
func (*tap) reconnected()                       {}
func (*tap) doorChanged(string, string)         {}
func (*tap) knocksWaiting([]api.Knock)          {}
func (*tap) knockUpdate(api.Knock)              {}
func (t *tap) count(publisher string) int       { return len(t.captured(publisher)) }

// captured returns the payloads recorded from publisher so far.
func (t *tap) captured(publisher string) [][]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([][]byte(nil), t.frames[publisher]...)
}

func joinTap(ctx context.Context, t *testing.T, srv *testserver.Server, room string) *tap {
	t.Helper()
	return joinTapAs(ctx, t, srv, room, "tap")
}

// joinTapAs is joinTap under an identity of the test's choosing.
func joinTapAs(ctx context.Context, t *testing.T, srv *testserver.Server, room, identity string) *tap {
	t.Helper()
	tok := srv.Token(room, identity)
	claims, err := token.ParseUnverified(tok)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newAPIClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{frames: make(map[string][][]byte), envelopes: make(map[string][][]byte)}
	tp.conn, err = dial(ctx, a, tok, claims, &Options{IPFilter: loopback}, tp, naming{})
	if err != nil {
		t.Fatalf("tap: join: %v", err)
	}
	t.Cleanup(func() { tp.conn.leave() })
	return tp
}

// joinWith is joinPeer with options of the test's choosing.
func joinWith(ctx context.Context, t *testing.T, srv *testserver.Server, room, name string, opts *Options) *peer {
	t.Helper()
	opts.IPFilter = loopback
	return joinPeerWith(ctx, t, srv, room, name, opts)
}

// keyRecorder keeps a copy of every frame key a call installs, to play a
// participant that holds on to its keys after it left.
type keyRecorder struct {
	mu   sync.Mutex
	keys []recordedKey
}

type recordedKey struct {
	from string
	key  e2ee.FrameKey
}

func (k *keyRecorder) record(from api.Participant, key e2ee.FrameKey) {
	b, err := key.MarshalBinary()
	if err != nil {
		panic(err)
	}
	c, err := e2ee.ParseFrameKey(b)
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, recordedKey{from.ID, c})
}

// receiver returns a frame receiver holding every key recorded.
func (k *keyRecorder) receiver(t *testing.T, now time.Time) *e2ee.FrameReceiver {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	r := e2ee.NewFrameReceiver(e2ee.FrameReceiverConfig{})
	for _, rk := range k.keys {
		if _, err := r.SetKey(rk.from, rk.key, now); err != nil && !errors.Is(err, e2ee.ErrStaleKey) {
			t.Fatalf("replay recorded key: %v", err)
		}
	}
	return r
}

// newest returns the newest generation recorded of a publisher's chain.
func (k *keyRecorder) newest(from string) (uint32, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var gen uint32
	found := false
	for _, rk := range k.keys {
		if rk.from == from && (!found || rk.key.Generation() > gen) {
			gen, found = rk.key.Generation(), true
		}
	}
	return gen, found
}

// parseSFrame splits an SFrame frame into its header's key id and counter
// and the ciphertext (RFC 9605 §4.3).
func parseSFrame(b []byte) (kid, ctr uint64, ct []byte, ok bool) {
	if len(b) == 0 {
		return 0, 0, nil, false
	}
	config, n := b[0], 1
	field := func(extended bool, v byte) (uint64, bool) {
		if !extended {
			return uint64(v), true
		}
		l := int(v) + 1
		if len(b) < n+l {
			return 0, false
		}
		var x uint64
		for _, c := range b[n : n+l] {
			x = x<<8 | uint64(c)
		}
		n += l
		return x, true
	}
	if kid, ok = field(config&0x80 != 0, config>>4&0x07); !ok {
		return 0, 0, nil, false
	}
	if ctr, ok = field(config&0x08 != 0, config&0x07); !ok {
		return 0, 0, nil, false
	}
	return kid, ctr, b[n:], true
}

// onWorker runs f on e's worker, between two of its operations, and
// returns its result (the zero value if ctx ends first).
func onWorker[T any](ctx context.Context, e *e2eeState, f func() T) T {
	out := make(chan T, 1)
	e.queue(func(context.Context) { out <- f() })
	select {
	case v := <-out:
		return v
	case <-ctx.Done():
		var zero T
		return zero
	}
}

func waitEvent(ctx context.Context, t *testing.T, p *peer, what string, match func(Event) bool) Event {
	t.Helper()
	wait.Until(ctx, t, p.name+" sees "+what, func() bool {
		_, ok := p.findEvent(match)
		return ok
	})
	e, _ := p.findEvent(match)
	return e
}

func isEncrypted(id string) func(Event) bool {
	return func(e Event) bool {
		pe, ok := e.(PeerEncrypted)
		return ok && pe.Participant.ID == id
	}
}

func isIdentityChanged(id string) func(Event) bool {
	return func(e Event) bool {
		ic, ok := e.(IdentityChanged)
		return ok && ic.Participant.ID == id
	}
}

// checkCiphertext checks what the tap recorded of talker's frames: every
// payload is an SFrame frame under talker's sender index, with a tag, and
// none is or contains a plaintext talker sent.
func checkCiphertext(t *testing.T, tp *tap, talker *peer) {
	t.Helper()
	frames := tp.captured(talker.call.ID())
	if len(frames) < 50 {
		t.Fatalf("tap recorded %d frames of %s, want at least 50", len(frames), talker.name)
	}
	index := uint64(talker.call.te2e().sender.SenderIndex())
	sent := int(talker.sent.Load())
	marker := []byte(talker.name + "#")
	for i, f := range frames {
		kid, _, ct, ok := parseSFrame(f)
		if !ok {
			t.Fatalf("%s's frame %d on the wire is not SFrame: %x", talker.name, i, f)
		}
		if kid>>16 != index {
			t.Fatalf("%s's frame %d has KID %#x, not under its sender index %#x", talker.name, i, kid, index)
		}
		if len(ct) <= e2ee.DefaultCipherSuite.Overhead() {
			t.Fatalf("%s's frame %d: %d bytes after the header, no room for a tag", talker.name, i, len(ct))
		}
		if bytes.Contains(f, marker) {
			t.Fatalf("%s's frame %d on the wire contains plaintext %q: %q", talker.name, i, marker, f)
		}
		for j := range sent {
			pt := payload(talker.name, j)
			if bytes.Equal(f, pt) || bytes.Equal(ct, pt) || bytes.Contains(f, pt[len(pt)-16:]) {
				t.Fatalf("%s's frame %d on the wire carries plaintext frame %d", talker.name, i, j)
			}
		}
	}
}

var safetyNumberRE = regexp.MustCompile(`^\d{5}( \d{5}){11}$`)

// Through a real server: what the relay forwards is SFrame ciphertext while
// receivers get the exact plaintext; everyone keys everyone; a newcomer
// cannot open what was sent before it joined, and a participant that left
// cannot open what is sent after the others rekeyed. Safety numbers agree
// on both sides of every pair and the verified mark round-trips.
func TestE2EEThreeCallersJoinAndLeave(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "e2ee"

	tp := joinTap(ctx, t, srv, room)
	trust := NewMemoryTrustStore()
	alice := joinWith(ctx, t, srv, room, "alice", &Options{TrustStore: trust})
	bob := joinPeer(ctx, t, srv, room, "bob")
	carolKeys := &keyRecorder{}
	carol := joinWith(ctx, t, srv, room, "carol", &Options{keyLog: carolKeys.record})
	three := []*peer{alice, bob, carol}
	talkAndCheck(ctx, t, three, 100)

	// The relay carried only ciphertext.
	for _, p := range three {
		checkCiphertext(t, tp, p)
	}
	for _, l := range three {
		for _, tk := range three {
			if l != tk {
				waitEvent(ctx, t, l, "PeerEncrypted for "+tk.name, isEncrypted(tk.call.ID()))
			}
		}
	}

	// Safety numbers and fingerprints agree on both sides.
	for _, a := range three {
		own, err := a.call.Fingerprint(a.call.ID())
		if err != nil || own != a.call.IdentityKey().Fingerprint() {
			t.Fatalf("%s: own fingerprint %q, %v", a.name, own, err)
		}
		for _, b := range three {
			if a == b {
				continue
			}
			ab, err := a.call.SafetyNumber(b.call.ID())
			if err != nil {
				t.Fatalf("%s: safety number with %s: %v", a.name, b.name, err)
			}
			ba, err := b.call.SafetyNumber(a.call.ID())
			if err != nil {
				t.Fatalf("%s: safety number with %s: %v", b.name, a.name, err)
			}
			if ab != ba || !safetyNumberRE.MatchString(ab) {
				t.Fatalf("safety numbers %s/%s: %q and %q", a.name, b.name, ab, ba)
			}
			if fp, err := a.call.Fingerprint(b.call.ID()); err != nil || fp != b.call.IdentityKey().Fingerprint() {
				t.Fatalf("%s sees %s's fingerprint %q (%v), want %q", a.name, b.name, fp, err, b.call.IdentityKey().Fingerprint())
			}
		}
	}
	if _, err := alice.call.SafetyNumber("p_nobody"); !errors.Is(err, ErrUnknownParticipant) {
		t.Errorf("safety number with a stranger: %v, want ErrUnknownParticipant", err)
	}
	if ok, err := alice.call.Verified(bob.call.ID()); err != nil || ok {
		t.Fatalf("alice: Verified(bob) = %v, %v at first", ok, err)
	}
	for _, v := range []bool{true, false, true} {
		if err := alice.call.SetVerified(bob.call.ID(), v); err != nil {
			t.Fatal(err)
		}
		if ok, err := alice.call.Verified(bob.call.ID()); err != nil || ok != v {
			t.Fatalf("alice: Verified(bob) = %v, %v after setting %v", ok, err, v)
		}
	}
	if ti, _ := trust.Lookup("bob"); !ti.Verified || !ti.Key.Equal(bob.call.IdentityKey()) {
		t.Errorf("alice's trust store has %+v for bob", ti)
	}

	// Dave joins: everyone advances its chain; what dave receives cannot
	// open what the others sent before.
	before := make(map[*peer]int)
	for _, p := range three {
		before[p] = tp.count(p.call.ID())
	}
	daveKeys := &keyRecorder{}
	dave := joinWith(ctx, t, srv, room, "dave", &Options{keyLog: daveKeys.record})
	four := []*peer{alice, bob, carol, dave}
	talkAndCheck(ctx, t, four, 50)
	now := time.Now()
	daveView := daveKeys.receiver(t, now)
	for _, p := range three {
		all := tp.captured(p.call.ID())
		for i, f := range all[:before[p]] {
			if out, err := daveView.Open(nil, f, p.call.ID(), now); err == nil {
				t.Fatalf("dave opens %s's frame %d sent before he joined: %q", p.name, i, out)
			}
		}
		// The same keys do open what came after (the check above is not
		// vacuous).
		if _, err := daveView.Open(nil, all[len(all)-1], p.call.ID(), now); err != nil {
			t.Fatalf("dave's keys do not open %s's latest frame: %v", p.name, err)
		}
	}

	// Carol leaves: the others start fresh chains she never receives.
	carolID := carol.call.ID()
	carol.stop()
	if err := carol.call.Leave(); err != nil {
		t.Fatal(err)
	}
	rest := []*peer{alice, bob, dave}
	for _, p := range rest {
		waitEvent(ctx, t, p, "carol left", isLeft(carolID))
		p.talk()
	}
	talkAndCheck(ctx, t, rest, 50)
	for _, p := range rest {
		checkRekeyedOut(t, tp, "carol", carolKeys, p, now)
	}

	// Everybody rekeyed on each join and leave after its own: alice on
	// bob's, carol's and dave's joins and carol's leave.
	wantRekeys := map[*peer]uint64{alice: 4, bob: 3, dave: 1}
	for _, p := range rest {
		s := p.call.Stats()
		if s.Rekeys != wantRekeys[p] {
			t.Errorf("%s: Rekeys = %d, want %d", p.name, s.Rekeys, wantRekeys[p])
		}
		if s.DecryptFailures() != 0 || s.FramesDecrypted == 0 || s.FramesEncrypted != s.FramesSent {
			t.Errorf("%s: stats %+v", p.name, s)
		}
		if len(s.Dropped) != len(dropReasons) {
			t.Errorf("%s: Dropped has %d reasons, want all %d", p.name, len(s.Dropped), len(dropReasons))
		}
	}
}

// checkRekeyedOut checks that leaver, with every key it was given, cannot
// open what p sent once it had left: the tap recorded at least 20 frames of
// p under a chain newer than any leaver has, and none opens; the last frame
// under the chain the leaver knows does open (the check is not vacuous).
func checkRekeyedOut(t *testing.T, tp *tap, leaver string, keys *keyRecorder, p *peer, now time.Time) {
	t.Helper()
	gen, ok := keys.newest(p.call.ID())
	if !ok {
		t.Fatalf("%s recorded no key of %s", leaver, p.name)
	}
	view := keys.receiver(t, now)
	after := 0
	var last []byte // the last frame under the chain the leaver knows
	for _, f := range tp.captured(p.call.ID()) {
		kid, _, _, ok := parseSFrame(f)
		if !ok || uint8(kid>>8) == uint8(gen) {
			last = f
			continue
		}
		after++
		if out, err := view.Open(nil, f, p.call.ID(), now); err == nil {
			t.Fatalf("%s opens %s's frame sent after it left: %q", leaver, p.name, out)
		}
	}
	if after < 20 {
		t.Fatalf("tap recorded %d frames of %s under a chain newer than %s's, want at least 20", after, p.name, leaver)
	}
	if _, err := view.Open(nil, last, p.call.ID(), now); err != nil {
		t.Fatalf("%s's keys do not open %s's last frame of the old chain: %v", leaver, p.name, err)
	}
}

// A participant leaves while a caller's event stream is dying: the "left"
// written to that stream never arrives. Once the stream is back, the
// caller finds the participant missing from the welcome, reports it gone
// and rekeys it out: no ghost stays in the roster, and the leaver cannot
// open what the caller sends afterwards.
func TestE2EELeaverLostWithTheStreamIsRekeyedOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), (2 * wait.Timeout))
	defer cancel()
	srv := testserver.Start(t, &testserver.Options{DropTimeout: 10 * time.Second})
	const room = "ghost"
	tp := joinTap(ctx, t, srv, room)
	cut := &streamCutter{}
	alice := joinWith(ctx, t, srv, room, "alice", &Options{HTTPClient: cut.client()})
	bob := joinPeer(ctx, t, srv, room, "bob")
	carolKeys := &keyRecorder{}
	carol := joinWith(ctx, t, srv, room, "carol", &Options{keyLog: carolKeys.record})
	talkAndCheck(ctx, t, []*peer{alice, bob, carol}, 20)

	carolID := carol.call.ID()
	cut.silence()
	carol.stop()
	if err := carol.call.Leave(); err != nil {
		t.Fatal(err)
	}
	wait.Until(ctx, t, "the server writes carol's departure to alice's dying stream", func() bool {
		return cut.swallowed(`"type":"left"`, carolID)
	})
	rekeys := alice.call.Stats().Rekeys
	cut.drop()

	e := waitEvent(ctx, t, alice, "carol gone after the reconnect", isLeft(carolID)).(ParticipantLeft)
	if e.Reason != ReasonUnknown {
		t.Errorf("carol's departure noticed on reconnecting has reason %q, want %q", e.Reason, ReasonUnknown)
	}
	for _, p := range alice.call.Participants() {
		if p.ID == carolID {
			t.Fatal("carol is still in alice's roster")
		}
	}
	wait.Until(ctx, t, "alice rekeys carol out", func() bool { return alice.call.Stats().Rekeys > rekeys })
	rest := []*peer{alice, bob}
	for _, p := range rest {
		p.talk()
	}
	talkAndCheck(ctx, t, rest, 50)
	checkRekeyedOut(t, tp, "carol", carolKeys, alice, time.Now())
}

// indexedRandom is a random source that starts with a given sender index, so
// that a FrameSender built on it forges frames under another participant's
// key id.
func indexedRandom(index uint32) io.Reader {
	return io.MultiReader(bytes.NewReader(binary.BigEndian.AppendUint32(nil, index)), rand.Reader)
}

// A participant that publishes tampered, truncated, replayed, reordered and
// wrong-key frames, and resends ratchet messages out of order: receivers
// drop and count every bad frame by reason, deliver the good ones, and the
// call goes on.
func TestE2EEBadFramesAreDroppedAndCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "hostile"
	tp := joinTap(ctx, t, srv, room)
	alice := joinPeer(ctx, t, srv, room, "alice")
	bob := joinPeer(ctx, t, srv, room, "bob")
	mallory := joinPeer(ctx, t, srv, room, "mallory")
	everyone := []*peer{alice, bob, mallory}
	talkAndCheck(ctx, t, everyone, 20)
	honest := []*peer{alice, bob}
	base := make(map[*peer]Stats)
	for _, p := range honest {
		base[p] = p.call.Stats()
	}

	m := mallory.call
	raw := func(frame []byte) {
		t.Helper()
		if err := m.tconn().writeFrame(frame, 960, AudioLevel{}, false); err != nil {
			t.Fatalf("mallory: raw write: %v", err)
		}
	}
	seal := func(i int) []byte {
		t.Helper()
		f, err := m.te2e().sender.Seal(nil, payload("mallory", i), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	const n = 10
	next := int(mallory.sent.Load())
	for range n {
		f := seal(next) // tampered: one ciphertext bit flipped
		next++
		f[len(f)-1] ^= 0x01
		raw(f)
	}
	for range n {
		f := seal(next) // truncated: shorter than the tag
		next++
		_, _, ct, _ := parseSFrame(f)
		raw(f[:len(f)-len(ct)+e2ee.DefaultCipherSuite.Overhead()-2])
	}
	for range n {
		raw([]byte{0xd8, 0x01}) // truncated header: a 6-byte KID announced
	}
	// Sealed with a key nobody received.
	stranger, err := e2ee.NewFrameSender(e2ee.FrameSenderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	for i := range n {
		f, _ := stranger.Seal(nil, payload("mallory", i), time.Now())
		raw(f)
	}
	// Under mallory's own key id but another key, with counters above hers.
	forger, err := e2ee.NewFrameSender(e2ee.FrameSenderConfig{Random: indexedRandom(m.te2e().sender.SenderIndex())})
	if err != nil {
		t.Fatal(err)
	}
	defer forger.Close()
	if g, s := m.te2e().sender.Current(time.Now()); g != 0 || s != 0 {
		t.Fatalf("mallory's chain at generation %d step %d, want 0 0 (she joined last)", g, s)
	}
	for range m.Stats().FramesEncrypted + 1000 {
		forger.Seal(nil, []byte{0}, time.Now())
	}
	for i := range n {
		f, _ := forger.Seal(nil, payload("mallory", i), time.Now())
		raw(f)
	}
	// Good frames, out of order, each also replayed.
	good := []int{next + 2, next, next + 1}
	sealed := make(map[int][]byte)
	for i := next; i < next+3; i++ {
		sealed[i] = seal(i)
	}
	for _, i := range good {
		raw(sealed[i])
	}
	for _, i := range good {
		raw(sealed[i])
	}
	// Alice's frames resent on mallory's track.
	fromAlice := tp.captured(alice.call.ID())
	for _, f := range fromAlice[len(fromAlice)-n:] {
		raw(f)
	}

	want := func(p *peer, reason string, atLeast uint64) {
		t.Helper()
		wait.Until(ctx, t, fmt.Sprintf("%s counts %d %s", p.name, atLeast, reason), func() bool {
			return p.call.Stats().Dropped[reason]-base[p].Dropped[reason] >= atLeast
		})
	}
	for _, p := range honest {
		want(p, DropAuthFailed, 2*n)
		want(p, DropMalformed, 2*n)
		want(p, DropUnknownKID, n)
		want(p, DropReplayed, 3)
		wait.Until(ctx, t, p.name+" receives mallory's reordered frames", func() bool {
			got := make(map[int]bool)
			for _, f := range p.received("mallory") {
				if _, i, ok := frameIndex(f.Data); ok && i >= next {
					if !bytes.Equal(f.Data, payload("mallory", i)) {
						t.Fatalf("%s: frame %d from mallory altered", p.name, i)
					}
					got[i] = true
				}
			}
			return len(got) == 3
		})
	}
	// Bob had alice's frames already: replays; alice has no key of her own.
	wait.Until(ctx, t, "bob drops alice's frames resent by mallory", func() bool {
		s := bob.call.Stats()
		return s.Dropped[DropReplayed]+s.Dropped[DropWrongSender]-base[bob].Dropped[DropReplayed]-base[bob].Dropped[DropWrongSender] >= 3+n
	})
	for _, p := range honest {
		s := p.call.Stats()
		if d := s.FramesDecrypted - base[p].FramesDecrypted; d < 3 {
			t.Errorf("%s decrypted %d frames of the injection, want the 3 good ones", p.name, d)
		}
		t.Logf("%s dropped %v", p.name, s.Dropped)
	}

	// Ratchet messages out of order: mallory's keys again, the second
	// message first. Bob installs both.
	keysBefore := bob.call.Stats().KeysReceived
	sent := make(chan error, 1)
	m.te2e().queue(func(ctx context.Context) {
		m.te2e().mu.Lock()
		r := m.te2e().remotes[bob.call.ID()]
		m.te2e().mu.Unlock()
		var msgs [][]byte
		for range 2 {
			k := m.te2e().sender.Keys()[0]
			pt, _ := k.MarshalBinary()
			k.Destroy()
			msg, err := r.sess.Encrypt(pt)
			if err != nil {
				sent <- err
				return
			}
			msgs = append(msgs, msg)
		}
		for _, i := range []int{1, 0} {
			if err := m.tconn().sendEnvelope(ctx, bob.call.ID(), msgs[i]); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	})
	if err := <-sent; err != nil {
		t.Fatalf("mallory: send reordered ratchet messages: %v", err)
	}
	wait.Until(ctx, t, "bob installs both reordered keys", func() bool { return bob.call.Stats().KeysReceived >= keysBefore+2 })

	// The call goes on. The injected frames are forgotten: they are out of
	// order on purpose.
	for _, p := range honest {
		p.mu.Lock()
		delete(p.frames, "mallory")
		p.mu.Unlock()
	}
	mallory.sent.Store(int64(next + 3))
	talkAndCheck(ctx, t, everyone, 20)
}

// A participant that comes back under the same identity name with another
// identity key is reported to everyone who remembers the old key; its
// frames are dropped and it gets no keys until accepted, and only by those
// who accepted.
func TestE2EEChangedIdentityIsReported(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "changed"
	alice := joinPeer(ctx, t, srv, room, "alice")
	bob := joinPeer(ctx, t, srv, room, "bob")
	eve := joinPeer(ctx, t, srv, room, "eve")
	talkAndCheck(ctx, t, []*peer{alice, bob, eve}, 10)
	oldKey := eve.call.IdentityKey()

	// A new device for eve: the same token identity, another key.
	id, err := e2ee.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	eve.stop()
	eve2 := joinWith(ctx, t, srv, room, "eve", &Options{Identity: id})
	eveID := eve2.call.ID()
	for _, p := range []*peer{alice, bob} {
		e := waitEvent(ctx, t, p, "eve's identity change", isIdentityChanged(eveID)).(IdentityChanged)
		if e.Old != oldKey.Fingerprint() || e.New != id.Public().Fingerprint() || e.Participant.Identity != "eve" {
			t.Fatalf("%s: %+v, want eve from %s to %s", p.name, e, oldKey.Fingerprint(), id.Public().Fingerprint())
		}
		if fp, err := p.call.Fingerprint(eveID); err != nil || fp != e.New {
			t.Fatalf("%s: Fingerprint(eve) = %q, %v", p.name, fp, err)
		}
		if err := p.call.SetVerified(eveID, true); !errors.Is(err, ErrIdentityNotAccepted) {
			t.Fatalf("%s: SetVerified on an unaccepted identity: %v", p.name, err)
		}
	}

	// Unaccepted: eve's frames are dropped, and she cannot open theirs.
	for _, p := range []*peer{alice, bob, eve2} {
		p.talk()
	}
	for _, p := range []*peer{alice, bob} {
		wait.Until(ctx, t, p.name+" drops eve's frames", func() bool {
			return p.call.Stats().Dropped[DropIdentityUnverified] >= 20
		})
		if n := countFrom(p, eveID); n != 0 {
			t.Fatalf("%s received %d frames of eve's unaccepted identity", p.name, n)
		}
	}
	wait.Until(ctx, t, "eve drops frames she has no key for", func() bool {
		return eve2.call.Stats().Dropped[DropAwaitingKey] >= 40
	})
	if n := len(eve2.received("alice")) + len(eve2.received("bob")); n != 0 {
		t.Fatalf("eve's new device received %d frames without being accepted", n)
	}

	// Alice accepts: she and eve hear each other; bob still does not.
	if err := alice.call.AcceptIdentity(eveID, id.Public().Fingerprint()); err != nil {
		t.Fatal(err)
	}
	hears(ctx, t, alice, eve2)
	hears(ctx, t, eve2, alice)
	if ok, err := alice.call.Verified(eveID); err != nil || ok {
		t.Errorf("alice: Verified(eve) = %v, %v after accepting, want false", ok, err)
	}
	an, err := alice.call.SafetyNumber(eveID)
	if err != nil {
		t.Fatal(err)
	}
	if en, err := eve2.call.SafetyNumber(alice.call.ID()); err != nil || en != an {
		t.Fatalf("safety numbers alice/eve: %q and %q (%v)", an, en, err)
	}
	for _, p := range []*peer{alice, bob, eve2} {
		p.stop()
	}
	if n := countFrom(bob, eveID); n != 0 {
		t.Fatalf("bob received %d frames of eve without accepting her", n)
	}
	if n := len(eve2.received("bob")); n != 0 {
		t.Fatalf("eve received %d frames of bob, who did not accept her", n)
	}
	if err := alice.call.AcceptIdentity("p_nobody", id.Public().Fingerprint()); !errors.Is(err, ErrUnknownParticipant) {
		t.Errorf("AcceptIdentity of a stranger: %v", err)
	}
}

// A participant blocked for a changed key (B) that starts a session under
// yet another key (C) while the user decides cannot have C accepted by the
// user's acceptance of B: the new session waits, frozen, and is reported
// as a change of its own once B is accepted.
func TestE2EEAcceptingOneKeyNeverAcceptsAnother(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), (2 * wait.Timeout))
	defer cancel()
	srv := testserver.Start(t, nil)
	const room = "swap"
	trust := NewMemoryTrustStore()
	alice := joinWith(ctx, t, srv, room, "alice", &Options{TrustStore: trust})
	eve := joinPeer(ctx, t, srv, room, "eve")
	talkAndCheck(ctx, t, []*peer{alice, eve}, 10)

	keyB, keyC := newIdentity(t), newIdentity(t)
	fpB, fpC := keyB.Public().Fingerprint(), keyC.Public().Fingerprint()
	eve.stop()
	eve2 := joinWith(ctx, t, srv, room, "eve", &Options{Identity: keyB})
	eveID := eve2.call.ID()
	changedTo := func(fp string) func(Event) bool {
		return func(e Event) bool {
			ic, ok := e.(IdentityChanged)
			return ok && ic.Participant.ID == eveID && ic.New == fp
		}
	}
	waitEvent(ctx, t, alice, "eve's change to key B", changedTo(fpB))

	// Eve's participant starts another session, under key C.
	var b api.PrekeyBundle
	e := eve2.call.te2e()
	if err := e.api.do(ctx, http.MethodGet, api.Version+"/prekeys/alice", "Bearer "+e.token, nil, &b); err != nil {
		t.Fatal(err)
	}
	sessC, err := e2ee.InitiateSession(nil, keyC, bundleOf(b))
	if err != nil {
		t.Fatal(err)
	}
	k := e.sender.Keys()[0]
	pt, _ := k.MarshalBinary()
	k.Destroy()
	initC, err := sessC.Encrypt(pt)
	if err != nil {
		t.Fatal(err)
	}
	if err := eve2.call.tconn().sendEnvelope(ctx, alice.call.ID(), initC); err != nil {
		t.Fatal(err)
	}
	wait.Until(ctx, t, "alice holds eve's session under key C", func() bool {
		return onWorker(ctx, alice.call.te2e(), func() int {
			if r := alice.call.te2e().remote(eveID); r != nil {
				return len(r.held)
			}
			return 0
		}) > 0
	})
	if fp, err := alice.call.Fingerprint(eveID); err != nil || fp != fpB {
		t.Fatalf("alice: Fingerprint(eve) = %q, %v while B awaits a decision; want B %q", fp, err, fpB)
	}
	if _, ok := alice.findEvent(changedTo(fpC)); ok {
		t.Fatal("key C replaced key B while B awaited a decision")
	}
	if err := alice.call.AcceptIdentity(eveID, fpC); !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("accepting C while eve presents B: %v, want ErrFingerprintMismatch", err)
	}

	// The user accepts B: B is trusted, and C comes up as a change of its own.
	if err := alice.call.AcceptIdentity(eveID, fpB); err != nil {
		t.Fatal(err)
	}
	ic := waitEvent(ctx, t, alice, "eve's change to key C", changedTo(fpC)).(IdentityChanged)
	if ic.Old != fpB {
		t.Fatalf("change to C reported from %s, want from B %s", ic.Old, fpB)
	}
	if ti, err := trust.Lookup("eve"); err != nil || !ti.Key.Equal(keyB.Public()) {
		t.Fatalf("alice trusts %s for eve (%v), want B", ti.Key.Fingerprint(), err)
	}
	if err := alice.call.AcceptIdentity(eveID, fpB); !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("accepting B again while eve presents C: %v, want ErrFingerprintMismatch", err)
	}
	before := alice.call.Stats().Dropped[DropIdentityUnverified]
	eve2.talk()
	wait.Until(ctx, t, "alice drops eve's frames until C is decided", func() bool {
		return alice.call.Stats().Dropped[DropIdentityUnverified] >= before+20
	})

	// Accepting C is a decision of its own.
	if err := alice.call.AcceptIdentity(eveID, fpC); err != nil {
		t.Fatal(err)
	}
	if ti, err := trust.Lookup("eve"); err != nil || !ti.Key.Equal(keyC.Public()) {
		t.Fatalf("alice trusts %s for eve (%v) after accepting C", ti.Key.Fingerprint(), err)
	}
}

// With a FileTrustStore, what a caller learnt of a peer's identity key
// outlives the call and the store's process: the same key next time is
// known (and stays verified), a changed one is reported.
func TestE2EEFileTrustStoreAcrossCalls(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*(2*wait.Timeout))
	defer cancel()
	srv := testserver.Start(t, nil)
	path := filepath.Join(t.TempDir(), "trust.json")
	bobKey := newIdentity(t)
	// call joins alice, with a trust store opened afresh as a new run of
	// her application would, and bob with key; it returns them once alice
	// sees bob's key in place, or reported as changed.
	call := func(room string, key *e2ee.Identity) (alice, bob *peer) {
		t.Helper()
		trust, err := NewFileTrustStore(path)
		if err != nil {
			t.Fatal(err)
		}
		alice = joinWith(ctx, t, srv, room, "alice", &Options{TrustStore: trust})
		bob = joinWith(ctx, t, srv, room, "bob", &Options{Identity: key})
		waitEvent(ctx, t, alice, "bob's key in place or changed", func(e Event) bool {
			return isEncrypted(bob.call.ID())(e) || isIdentityChanged(bob.call.ID())(e)
		})
		return alice, bob
	}
	hangUp := func(ps ...*peer) {
		t.Helper()
		for _, p := range ps {
			p.stop()
			if err := p.call.Leave(); err != nil {
				t.Fatal(err)
			}
		}
	}

	alice, bob := call("monday", bobKey)
	if err := alice.call.SetVerified(bob.call.ID(), true); err != nil {
		t.Fatal(err)
	}
	hangUp(alice, bob)

	alice, bob = call("tuesday", bobKey)
	if _, ok := alice.findEvent(isIdentityChanged(bob.call.ID())); ok {
		t.Fatal("bob's unchanged key reported as changed in the next call")
	}
	if ok, err := alice.call.Verified(bob.call.ID()); err != nil || !ok {
		t.Fatalf("bob verified in the next call: %v, %v; want true", ok, err)
	}
	hangUp(alice, bob)

	newKey := newIdentity(t)
	alice, bob = call("wednesday", newKey)
	ic, ok := alice.findEvent(isIdentityChanged(bob.call.ID()))
	if !ok {
		t.Fatal("bob's changed key was not reported in the call after")
	}
	if e := ic.(IdentityChanged); e.Old != bobKey.Public().Fingerprint() || e.New != newKey.Public().Fingerprint() {
		t.Fatalf("change reported as %+v, want from %s to %s", e, bobKey.Public().Fingerprint(), newKey.Public().Fingerprint())
	}
	if ok, err := alice.call.Verified(bob.call.ID()); err != nil || ok {
		t.Fatalf("bob's new key verified: %v, %v", ok, err)
	}
	bob.talk()
	wait.Until(ctx, t, "alice drops the frames of bob's unaccepted key", func() bool {
		return alice.call.Stats().Dropped[DropIdentityUnverified] >= 20
	})
}

func newIdentity(t *testing.T) *e2ee.Identity {
	t.Helper()
	id, err := e2ee.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// countFrom counts the frames p received from participant ID id.
func countFrom(p *peer, id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, fs := range p.frames {
		for _, f := range fs {
			if f.From.ID == id {
				n++
			}
		}
	}
	return n
}

// Protocol envelopes are the SDK's own: SendEnvelope refuses data that
// would pass for one.
func TestSendEnvelopeRefusesProtocolBytes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "reserved", "alice")
	for _, data := range [][]byte{{1, 1}, {1, 2, 3}} {
		if err := alice.call.SendEnvelope(ctx, alice.call.ID(), data); !errors.Is(err, ErrReservedEnvelope) {
			t.Errorf("SendEnvelope(%x) = %v, want ErrReservedEnvelope", data, err)
		}
	}
}

// When the server says a caller's one-time prekeys run low, the caller
// uploads more, and newcomers still reach it.
func TestE2EEPrekeysRefilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	alice := joinPeer(ctx, t, srv, "refill", "alice")
	a, err := newAPIClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The directory hands a caller one of alice's one-time prekeys per
	// window, and only while both are in the call: each fetch is by another
	// participant, who leaves again.
	fetched := 0
	fetch := func() api.PrekeyBundle {
		t.Helper()
		fetched++
		name := fmt.Sprintf("fetcher-%d", fetched)
		tp := joinTapAs(ctx, t, srv, "refill", name)
		defer tp.conn.leave()
		var b api.PrekeyBundle
		if err := a.do(ctx, http.MethodGet, api.Version+"/prekeys/alice", "Bearer "+srv.Token("refill", name), nil, &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	for range prekeyBatch - 4 {
		if fetch().OneTimePrekey == nil {
			t.Fatal("bundle without a one-time prekey before the batch ran out")
		}
	}
	stored := func() int {
		return onWorker(ctx, alice.call.te2e(), func() int { return alice.call.te2e().store.OneTimePrekeys() })
	}
	wait.Until(ctx, t, "alice uploads another batch", func() bool { return stored() >= 2*prekeyBatch })
	for range 8 {
		if fetch().OneTimePrekey == nil {
			t.Fatal("bundle without a one-time prekey after the refill")
		}
	}
	bob := joinPeer(ctx, t, srv, "refill", "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
}

// A caller whose event stream was lost sends its keys again once it is
// back, in case a frame-key message went down with the old stream.
func TestE2EEKeysResentAfterReconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, &testserver.Options{DropTimeout: 10 * time.Second})
	alice := joinPeer(ctx, t, srv, "resend", "alice")
	bob := joinPeer(ctx, t, srv, "resend", "bob")
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
	before := bob.call.Stats().KeysReceived

	old := alice.call.tconn().currentWS()
	old.CloseNow()
	wait.Until(ctx, t, "alice's event stream reconnects", func() bool { return alice.call.tconn().currentWS() != old })
	wait.Until(ctx, t, "bob receives alice's keys again", func() bool { return bob.call.Stats().KeysReceived > before })
	alice.talk()
	bob.talk()
	talkAndCheck(ctx, t, []*peer{alice, bob}, 10)
}

// A participant already in the room whose bundle is not published yet (a
// browser publishes it right after joining) still gets a session: the
// newcomer fetches the bundle again until it is there.
func TestE2EEBundleFetchRetried(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*wait.Timeout)
	defer cancel()
	srv := testserver.Start(t, nil)
	late := joinTap(ctx, t, srv, "retry")
	alice := joinPeer(ctx, t, srv, "retry", "alice")
	fetches := func() int {
		return onWorker(ctx, alice.call.te2e(), func() int {
			if r := alice.call.te2e().remote(late.conn.self.ID); r != nil {
				return r.fetches
			}
			return 0
		})
	}
	wait.Until(ctx, t, "alice's first fetch to find no bundle", func() bool { return fetches() >= 1 })

	id, err := e2ee.NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := e2ee.NewPrekeyStore(id, nil)
	if err != nil {
		t.Fatal(err)
	}
	spk := store.SignedPrekey()
	up := api.PrekeyUpload{
		IdentityKey:  id.Public().Bytes(),
		SignedPrekey: api.SignedPrekey{ID: spk.ID, Key: spk.Key, Signature: spk.Signature},
		KEMPrekey:    apiKEMPrekey(store.KEMPrekey()),
	}
	a, err := newAPIClient(srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var status api.PrekeyStatus
	if err := a.do(ctx, http.MethodPut, api.Version+"/prekeys", "Bearer "+srv.Token("retry", "tap"), up, &status); err != nil {
		t.Fatal(err)
	}
	wait.Until(ctx, t, "alice's pqxdh-init to the late participant", func() bool {
		late.mu.Lock()
		defer late.mu.Unlock()
		for _, env := range late.envelopes[alice.call.ID()] {
			if len(env) >= 2 && env[0] == 0x01 && env[1] == 0x01 {
				return true
			}
		}
		return false
	})
}
