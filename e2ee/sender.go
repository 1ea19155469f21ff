package e2ee

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"sync"
	"time"
)

// Switch-over bounds after a rekey (docs/PROTOCOL.md §6.1).
const (
	DefaultSwitchDelay = time.Second
	MaxSwitchDelay     = 2 * time.Second
)

// FrameSenderConfig configures a FrameSender. The zero value is usable.
type FrameSenderConfig struct {
	// Suite is the SFrame cipher suite; zero means DefaultCipherSuite.
	Suite CipherSuite
	// Random is the source of the sender index and fresh base keys; nil
	// means crypto/rand.
	Random io.Reader
	// SwitchDelay bounds how long a rekeyed sender keeps sealing with the
	// old key while waiting for acknowledgements; zero means
	// DefaultSwitchDelay, at most MaxSwitchDelay.
	SwitchDelay time.Duration
}

// chainKey is one base key a sender seals with.
type chainKey struct {
	generation uint32
	step       uint8
	baseKey    []byte
	sk         *sframeKey
	ctr        uint64
}

func (c *chainKey) destroy() {
	clear(c.baseKey)
	if c.sk != nil {
		clear(c.sk.salt[:])
	}
	c.sk = nil
}

// FrameSender is the sending side of one participant's frame keys: its
// chain of base keys and SFrame sealing. It is safe for concurrent use.
type FrameSender struct {
	mu          sync.Mutex
	suite       CipherSuite
	random      io.Reader
	switchDelay time.Duration
	index       uint32
	cur         *chainKey
	// pending is a fresh chain waiting for acknowledgements from waitFor.
	pending      *chainKey
	pendingSince time.Time
	waitFor      map[string]bool
	closed       bool
}

// NewFrameSender creates a sender with a random sender index and a fresh
// chain (generation 0, step 0).
func NewFrameSender(cfg FrameSenderConfig) (*FrameSender, error) {
	s := &FrameSender{suite: cfg.Suite, random: randOrDefault(cfg.Random), switchDelay: cfg.SwitchDelay}
	if s.suite == 0 {
		s.suite = DefaultCipherSuite
	}
	if !s.suite.Valid() {
		return nil, fmt.Errorf("new frame sender: %w", ErrUnknownSuite)
	}
	if s.switchDelay == 0 {
		s.switchDelay = DefaultSwitchDelay
	}
	if s.switchDelay < 0 || s.switchDelay > MaxSwitchDelay {
		return nil, fmt.Errorf("new frame sender: switch delay %v outside (0, %v]", cfg.SwitchDelay, MaxSwitchDelay)
	}
	var b [4]byte
	if _, err := io.ReadFull(s.random, b[:]); err != nil {
		return nil, fmt.Errorf("new frame sender: %w", err)
	}
	s.index = binary.BigEndian.Uint32(b[:])
	cur, err := s.freshChain(0)
	if err != nil {
		return nil, fmt.Errorf("new frame sender: %w", err)
	}
	s.cur = cur
	return s, nil
}

func (s *FrameSender) freshChain(generation uint32) (*chainKey, error) {
	base := make([]byte, s.suite.BaseKeySize())
	if _, err := io.ReadFull(s.random, base); err != nil {
		return nil, err
	}
	return s.newChainKey(generation, 0, base)
}

func (s *FrameSender) newChainKey(generation uint32, step uint8, base []byte) (*chainKey, error) {
	sk, err := deriveSFrameKey(s.suite, KID(s.index, generation, step), base)
	if err != nil {
		return nil, err
	}
	return &chainKey{generation: generation, step: step, baseKey: base, sk: sk}, nil
}

func (s *FrameSender) frameKey(c *chainKey) FrameKey {
	return FrameKey{suite: s.suite, senderIndex: s.index, generation: c.generation, step: c.step, baseKey: append([]byte(nil), c.baseKey...)}
}

// SenderIndex returns the index this sender announces in its KIDs.
func (s *FrameSender) SenderIndex() uint32 { return s.index }

// Keys returns what a peer needs to decrypt this sender now: the current
// key and, during a switch-over, the pending one. Send each to a newcomer.
func (s *FrameSender) Keys() []FrameKey {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	keys := []FrameKey{s.frameKey(s.cur)}
	if s.pending != nil {
		keys = append(keys, s.frameKey(s.pending))
	}
	return keys
}

// Advance ratchets the chain one step (RFC 9605 §5.1) because a participant
// joined, and returns Keys() for the newcomer. Receivers already present
// derive the new step themselves. At the chain's last step it returns
// ErrChainExhausted: call Rekey with everyone present instead.
func (s *FrameSender) Advance() ([]FrameKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.cur.step == MaxRatchetStep || (s.pending != nil && s.pending.step == MaxRatchetStep) {
		return nil, ErrChainExhausted
	}
	cur, err := s.advance(s.cur)
	if err != nil {
		return nil, fmt.Errorf("advance frame key: %w", err)
	}
	var pending *chainKey
	if s.pending != nil {
		if pending, err = s.advance(s.pending); err != nil {
			return nil, fmt.Errorf("advance frame key: %w", err)
		}
		s.pending.destroy()
		s.pending = pending
	}
	s.cur.destroy()
	s.cur = cur
	keys := []FrameKey{s.frameKey(s.cur)}
	if s.pending != nil {
		keys = append(keys, s.frameKey(s.pending))
	}
	return keys, nil
}

func (s *FrameSender) advance(c *chainKey) (*chainKey, error) {
	base, err := ratchetBaseKey(s.suite, c.baseKey)
	if err != nil {
		return nil, err
	}
	return s.newChainKey(c.generation, c.step+1, base)
}

// Rekey starts a fresh random chain because a participant left, and
// returns its key for each participant in peers (those still present). The
// sender keeps sealing with the old key until every one of peers has
// acknowledged the new key (Acknowledge) or SwitchDelay has passed since
// now, whichever comes first. A Rekey during a switch-over replaces the
// pending chain.
func (s *FrameSender) Rekey(now time.Time, peers []string) (FrameKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return FrameKey{}, ErrClosed
	}
	gen := s.cur.generation + 1
	if s.pending != nil {
		gen = s.pending.generation + 1
	}
	next, err := s.freshChain(gen)
	if err != nil {
		return FrameKey{}, fmt.Errorf("rekey frame key: %w", err)
	}
	if s.pending != nil {
		s.pending.destroy()
	}
	s.pending, s.pendingSince = next, now
	s.waitFor = make(map[string]bool, len(peers))
	for _, p := range peers {
		s.waitFor[p] = true
	}
	k := s.frameKey(next)
	if len(s.waitFor) == 0 {
		s.activate()
	}
	return k, nil
}

// Acknowledge records that peer installed a key of this sender. When all
// peers named in Rekey acknowledged the pending key, the sender switches
// to it.
func (s *FrameSender) Acknowledge(peer string, ack FrameKeyAck) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pending
	if p == nil || ack.SenderIndex != s.index || ack.Generation != p.generation || ack.Step != p.step {
		return
	}
	delete(s.waitFor, peer)
	if len(s.waitFor) == 0 {
		s.activate()
	}
}

// Current returns the generation and step frames are sealed with now.
func (s *FrameSender) Current(now time.Time) (generation uint32, step uint8) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSwitch(now)
	return s.cur.generation, s.cur.step
}

func (s *FrameSender) activate() {
	s.cur.destroy()
	s.cur, s.pending, s.waitFor = s.pending, nil, nil
}

func (s *FrameSender) maybeSwitch(now time.Time) {
	if s.pending != nil && now.Sub(s.pendingSince) >= s.switchDelay {
		s.activate()
	}
}

// Seal encrypts one Opus frame as an SFrame frame appended to dst and
// returns the extended slice. A zero-length frame (nothing to protect) is
// returned as zero bytes. With enough capacity in dst it allocates nothing.
func (s *FrameSender) Seal(dst, frame []byte, now time.Time) ([]byte, error) {
	if len(frame) == 0 {
		return dst, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maybeSwitch(now)
	if s.closed {
		return dst, ErrClosed
	}
	c := s.cur
	if c.ctr == math.MaxUint64 {
		return dst, ErrCounterExhausted
	}
	out := c.sk.seal(dst, c.ctr, nil, frame)
	c.ctr++
	return out, nil
}

// Close zeroes the sender's keys. The sender must not be used afterwards.
func (s *FrameSender) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cur.destroy()
	if s.pending != nil {
		s.pending.destroy()
	}
}
