package e2ee

import (
	"crypto/subtle"
	"fmt"
	"sync"
	"time"
)

// Receiving bounds (docs/PROTOCOL.md §6.5).
const (
	// DefaultGracePeriod is how long a sender's older keys stay usable
	// after a frame authenticated under a newer one.
	DefaultGracePeriod = time.Second
	// MaxRatchetAhead is how many ratchet steps a receiver derives forward
	// to open one frame.
	MaxRatchetAhead = 32
	// ReplayWindow is the number of counters the replay window covers.
	ReplayWindow = 128
	// keyRingSize is the most keys (including expired tombstones) kept
	// per sender.
	keyRingSize = 4
	// generationsAhead is how many generations past a publisher's newest
	// key a frame may name and still be awaiting its key (§9).
	generationsAhead = 8
)

// FrameReceiverConfig configures a FrameReceiver. The zero value is usable.
type FrameReceiverConfig struct {
	// GracePeriod: zero means DefaultGracePeriod.
	GracePeriod time.Duration
}

// FrameStats counts the frames a FrameReceiver opened and dropped, by
// reason: one count per error Open returns.
type FrameStats struct {
	Opened      uint64 // authenticated and decrypted
	Malformed   uint64 // ErrMalformed
	UnknownKID  uint64 // ErrUnknownKID
	AuthFailed  uint64 // ErrAuthFailed
	Replayed    uint64 // ErrReplayed
	ExpiredKey  uint64 // ErrKeyExpired
	WrongSender uint64 // ErrWrongSender
	AwaitingKey uint64 // ErrAwaitingKey
	BeforeKey   uint64 // ErrBeforeKey
}

// FrameReceiver opens the frames of every other participant. It holds a
// small key ring per sender, bound to the participant whose session
// delivered the keys. It is safe for concurrent use.
type FrameReceiver struct {
	mu            sync.Mutex
	grace         time.Duration
	senders       map[uint32]*remoteSender
	byParticipant map[string]uint32
	stats         FrameStats
}

type remoteSender struct {
	participant string
	keys        []*ringKey
	// newest is the latest generation the participant sent a key of, and
	// firstStep the earliest step of it sent: frames under earlier steps
	// predate this receiver's keys.
	newest    uint32
	firstStep uint8
}

// ringKey is one installed key of a sender.
type ringKey struct {
	suite      CipherSuite
	generation uint32
	step       uint8
	baseKey    []byte
	sk         *sframeKey
	replay     replayWindow
	used       bool      // a frame authenticated under it
	retireAt   time.Time // zero while current
	expired    bool      // zeroed; kept to report ErrKeyExpired
}

func (k *ringKey) older(o *ringKey) bool {
	return k.generation < o.generation || (k.generation == o.generation && k.step < o.step)
}

func (k *ringKey) matches(kid uint64) bool {
	return uint8(k.generation) == uint8(kid>>ratchetBits) && k.step == uint8(kid)
}

func (k *ringKey) destroy() {
	clear(k.baseKey)
	if k.sk != nil {
		clear(k.sk.salt[:])
	}
	k.baseKey, k.sk, k.expired = nil, nil, true
}

// NewFrameReceiver creates an empty receiver.
func NewFrameReceiver(cfg FrameReceiverConfig) *FrameReceiver {
	r := &FrameReceiver{grace: cfg.GracePeriod, senders: map[uint32]*remoteSender{}, byParticipant: map[string]uint32{}}
	if r.grace <= 0 {
		r.grace = DefaultGracePeriod
	}
	return r
}

// SetKey installs a frame key that participant sent through its session,
// and returns the ack to send back. A key whose sender index another
// participant holds is refused (ErrSenderIndexInUse); a key older than one
// already in use is refused (ErrStaleKey). A participant that announces a
// new sender index replaces its previous keys.
func (r *FrameReceiver) SetKey(participant string, key FrameKey, now time.Time) (FrameKeyAck, error) {
	if !key.suite.Valid() || len(key.baseKey) != key.suite.BaseKeySize() {
		return FrameKeyAck{}, fmt.Errorf("set frame key: %w", ErrInvalidMessage)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	idx := key.senderIndex
	if s := r.senders[idx]; s != nil && s.participant != participant {
		return FrameKeyAck{}, fmt.Errorf("set frame key of %q: index %d: %w", participant, idx, ErrSenderIndexInUse)
	}
	if old, ok := r.byParticipant[participant]; ok && old != idx {
		r.removeLocked(participant)
	}
	s := r.senders[idx]
	if s == nil {
		s = &remoteSender{participant: participant, newest: key.generation, firstStep: key.step}
		r.senders[idx] = s
		r.byParticipant[participant] = idx
	}
	s.expire(now)
	nk := &ringKey{suite: key.suite, generation: key.generation, step: key.step}
	for _, k := range s.keys {
		if k.generation == nk.generation && k.step == nk.step {
			if !k.expired && k.suite == nk.suite && subtle.ConstantTimeCompare(k.baseKey, key.baseKey) == 1 {
				s.note(key)
				return key.Ack(), nil // already installed
			}
			return FrameKeyAck{}, fmt.Errorf("set frame key of %q: %w", participant, ErrStaleKey)
		}
		if k.used && nk.older(k) {
			return FrameKeyAck{}, fmt.Errorf("set frame key of %q: %w", participant, ErrStaleKey)
		}
	}
	nk.baseKey = append([]byte(nil), key.baseKey...)
	sk, err := deriveSFrameKey(key.suite, key.KID(), nk.baseKey)
	if err != nil {
		return FrameKeyAck{}, fmt.Errorf("set frame key: %w", err)
	}
	nk.sk = sk
	s.add(nk)
	s.note(key)
	return key.Ack(), nil
}

// note records k as sent by the participant, for telling frames awaiting
// a key and frames from before its keys apart from forged ones.
func (s *remoteSender) note(k FrameKey) {
	switch {
	case k.generation > s.newest:
		s.newest, s.firstStep = k.generation, k.step
	case k.generation == s.newest && k.step < s.firstStep:
		s.firstStep = k.step
	}
}

// expire zeroes the keys whose grace period is over.
func (s *remoteSender) expire(now time.Time) {
	for _, k := range s.keys {
		if !k.expired && !k.retireAt.IsZero() && !now.Before(k.retireAt) {
			k.destroy()
		}
	}
}

// add puts k in the ring, dropping the oldest key when it is full.
func (s *remoteSender) add(k *ringKey) {
	if len(s.keys) >= keyRingSize {
		oldest := 0
		for i, o := range s.keys {
			if o.older(s.keys[oldest]) {
				oldest = i
			}
		}
		s.keys[oldest].destroy()
		s.keys = append(s.keys[:oldest], s.keys[oldest+1:]...)
	}
	s.keys = append(s.keys, k)
}

// RemoveParticipant forgets and zeroes every key of participant (it left).
func (r *FrameReceiver) RemoveParticipant(participant string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(participant)
}

func (r *FrameReceiver) removeLocked(participant string) {
	idx, ok := r.byParticipant[participant]
	if !ok {
		return
	}
	for _, k := range r.senders[idx].keys {
		k.destroy()
	}
	delete(r.senders, idx)
	delete(r.byParticipant, participant)
}

// Stats returns the counters so far.
func (r *FrameReceiver) Stats() FrameStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stats
}

// Open authenticates and decrypts an SFrame frame that arrived on the
// track of participant from, and appends the Opus frame to dst. A frame
// that fails is dropped, counted in Stats, and Open returns one of:
//
//   - ErrMalformed: the header does not parse or the frame is too short;
//   - ErrAwaitingKey: from has sent no key yet, or the frame names a
//     generation of from's chain shortly after its newest key (a key on
//     its way): the normal start of a stream, not a failure;
//   - ErrBeforeKey: the frame is sealed under a step of from's newest
//     generation earlier than any key from sent this receiver (audio from
//     before it joined);
//   - ErrUnknownKID: no key for the frame's key id;
//   - ErrAuthFailed: the tag does not verify;
//   - ErrReplayed: the counter was seen before or is older than the window;
//   - ErrKeyExpired: the key was retired after its grace period;
//   - ErrWrongSender: the frame authenticates under another participant's
//     key (someone re-sending another's frames); nothing is recorded of it,
//     so that the frame still opens on its publisher's track.
//
// A zero-length frame is returned as zero bytes. With enough capacity in
// dst and a known key it allocates nothing.
func (r *FrameReceiver) Open(dst, frame []byte, from string, now time.Time) ([]byte, error) {
	if len(frame) == 0 {
		return dst, nil
	}
	kid, ctr, hdrLen, ok := parseHeader(frame)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.stats.Malformed++
		return dst, ErrMalformed
	}
	s := r.senders[uint32(kid>>(ratchetBits+generationBits))]
	if s == nil || kid>>48 != 0 {
		return dst, r.noKey(from, kid)
	}
	s.expire(now)
	var key, base *ringKey
	for _, k := range s.keys {
		if k.matches(kid) {
			key = k
		} else if !k.expired && uint8(k.generation) == uint8(kid>>ratchetBits) && k.step < uint8(kid) &&
			(base == nil || base.step < k.step) {
			base = k
		}
	}
	switch {
	case key != nil && key.expired:
		r.stats.ExpiredKey++
		return dst, ErrKeyExpired
	case key == nil && (base == nil || int(uint8(kid))-int(base.step) > MaxRatchetAhead):
		return dst, r.noKey(from, kid)
	case key == nil:
		return r.openRatcheted(dst, frame, from, s, base, kid, ctr, hdrLen, now)
	}
	if len(frame)-hdrLen < key.suite.Overhead() {
		r.stats.Malformed++
		return dst, ErrMalformed
	}
	if !key.replay.check(ctr) {
		r.stats.Replayed++
		return dst, ErrReplayed
	}
	out, err := key.sk.open(dst, ctr, hdrLen, nil, frame)
	if err != nil {
		r.stats.AuthFailed++
		return dst, ErrAuthFailed
	}
	if s.participant != from {
		r.stats.WrongSender++
		return dst, ErrWrongSender
	}
	key.replay.mark(ctr)
	r.markUsed(s, key, now)
	r.stats.Opened++
	return out, nil
}

// noKey counts and returns why no key opens a frame from participant
// from under kid: from's key is on its way, the frame predates from's
// keys, or the key id is simply unknown.
func (r *FrameReceiver) noKey(from string, kid uint64) error {
	idx, keyed := r.byParticipant[from]
	if kid>>48 == 0 && !keyed {
		r.stats.AwaitingKey++
		return ErrAwaitingKey
	}
	if s := r.senders[idx]; keyed && kid>>48 == 0 && uint32(kid>>(ratchetBits+generationBits)) == idx {
		// Generations compare modulo 256, as the key id carries them.
		ahead := uint8(kid>>ratchetBits) - uint8(s.newest)
		if ahead >= 1 && ahead <= generationsAhead {
			r.stats.AwaitingKey++
			return ErrAwaitingKey
		}
		if ahead == 0 && uint8(kid) < s.firstStep {
			r.stats.BeforeKey++
			return ErrBeforeKey
		}
	}
	r.stats.UnknownKID++
	return ErrUnknownKID
}

// openRatcheted derives the frame's key forward from base and keeps it
// only if the frame authenticates and comes from its publisher.
func (r *FrameReceiver) openRatcheted(dst, frame []byte, from string, s *remoteSender, base *ringKey, kid, ctr uint64, hdrLen int, now time.Time) ([]byte, error) {
	if len(frame)-hdrLen < base.suite.Overhead() {
		r.stats.Malformed++
		return dst, ErrMalformed
	}
	baseKey := append([]byte(nil), base.baseKey...)
	for step := base.step; step < uint8(kid); step++ {
		next, err := ratchetBaseKey(base.suite, baseKey)
		clear(baseKey)
		if err != nil {
			r.stats.UnknownKID++
			return dst, ErrUnknownKID
		}
		baseKey = next
	}
	sk, err := deriveSFrameKey(base.suite, kid, baseKey)
	if err != nil {
		clear(baseKey)
		r.stats.UnknownKID++
		return dst, ErrUnknownKID
	}
	out, err := sk.open(dst, ctr, hdrLen, nil, frame)
	if err != nil {
		clear(baseKey)
		r.stats.AuthFailed++
		return dst, ErrAuthFailed
	}
	if s.participant != from {
		clear(baseKey)
		r.stats.WrongSender++
		return dst, ErrWrongSender
	}
	k := &ringKey{suite: base.suite, generation: base.generation, step: uint8(kid), baseKey: baseKey, sk: sk}
	k.replay.mark(ctr)
	s.add(k)
	r.markUsed(s, k, now)
	r.stats.Opened++
	return out, nil
}

// markUsed notes that k authenticated a frame; the first time, the
// sender's older keys start their grace period.
func (r *FrameReceiver) markUsed(s *remoteSender, k *ringKey, now time.Time) {
	if k.used {
		return
	}
	k.used = true
	for _, o := range s.keys {
		if o != k && !o.expired && o.retireAt.IsZero() && o.older(k) {
			o.retireAt = now.Add(r.grace)
		}
	}
}

// replayWindow tracks the counters seen under one key: bit i of bits
// stands for counter max-i.
type replayWindow struct {
	seen bool
	max  uint64
	bits [ReplayWindow / 64]uint64
}

func (w *replayWindow) check(ctr uint64) bool {
	if !w.seen || ctr > w.max {
		return true
	}
	d := w.max - ctr
	return d < ReplayWindow && w.bits[d/64]&(1<<(d%64)) == 0
}

func (w *replayWindow) mark(ctr uint64) {
	if !w.seen || ctr > w.max {
		shift := ctr - w.max
		if !w.seen || shift >= ReplayWindow {
			w.bits = [ReplayWindow / 64]uint64{}
		} else {
			w.shift(uint(shift))
		}
		w.seen, w.max = true, ctr
		w.bits[0] |= 1
		return
	}
	d := w.max - ctr
	w.bits[d/64] |= 1 << (d % 64)
}

// shift moves the window by n < ReplayWindow counters.
func (w *replayWindow) shift(n uint) {
	words, rem := n/64, n%64
	for i := len(w.bits) - 1; i >= 0; i-- {
		var v uint64
		if j := i - int(words); j >= 0 {
			v = w.bits[j] << rem
			if rem > 0 && j > 0 {
				v |= w.bits[j-1] >> (64 - rem)
			}
		}
		w.bits[i] = v
	}
}
