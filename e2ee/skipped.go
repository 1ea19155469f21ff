package e2ee

import "time"

// skipID names a skipped message key: the ratchet public key of its chain
// and its message number.
type skipID [36]byte

type skippedKey struct {
	id     skipID
	mk     [32]byte
	stored time.Time
	gone   bool // used, expired or evicted, and zeroed
}

// skippedKeys is a session's store of skipped message keys (docs/PROTOCOL.md
// §5.3). Keys leave it in the order they were stored, as they do from the
// JavaScript implementation's Map: when the store is over MaxSkippedKeys
// the oldest go first, and they expire from the front. Every operation
// costs the same whatever the store holds, so that a forged message cannot
// make a full store expensive.
type skippedKeys struct {
	byID map[skipID]*skippedKey
	// order holds the keys in the order they were stored. A key used from
	// the middle stays there, gone, until it reaches the front or order
	// is compacted.
	order []*skippedKey
}

func newSkippedKeys() skippedKeys { return skippedKeys{byID: make(map[skipID]*skippedKey)} }

// len is the number of keys held.
func (s *skippedKeys) len() int { return len(s.byID) }

// lookup returns the key stored for id, or nil.
func (s *skippedKeys) lookup(id skipID) *skippedKey { return s.byID[id] }

// remove zeroes k and forgets it.
func (s *skippedKeys) remove(k *skippedKey) {
	clear(k.mk[:])
	k.gone = true
	delete(s.byID, k.id)
	s.trimFront()
	// Compact once gone keys outnumber those held: linear work once per as
	// many removals, so constant per removal.
	if len(s.order) > 2*len(s.byID)+64 {
		kept := s.order[:0]
		for _, o := range s.order {
			if !o.gone {
				kept = append(kept, o)
			}
		}
		clear(s.order[len(kept):])
		s.order = kept
	}
}

// add stores the keys of a message that authenticated, in order, then
// evicts the oldest keys beyond MaxSkippedKeys.
func (s *skippedKeys) add(keys []*skippedKey) {
	for _, k := range keys {
		if old := s.byID[k.id]; old != nil {
			s.remove(old) // a peer reusing a ratchet key: the newer key wins
		}
		s.byID[k.id] = k
		s.order = append(s.order, k)
	}
	for len(s.byID) > MaxSkippedKeys {
		s.remove(s.order[0])
	}
}

// expire removes the keys stored more than SkippedKeyLifetime before now.
// Keys were stored in time order, so they expire from the front.
func (s *skippedKeys) expire(now time.Time) {
	for len(s.order) > 0 && now.Sub(s.order[0].stored) > SkippedKeyLifetime {
		s.remove(s.order[0])
	}
}

// trimFront drops the gone keys at the front of order.
func (s *skippedKeys) trimFront() {
	n := 0
	for n < len(s.order) && s.order[n].gone {
		s.order[n] = nil
		n++
	}
	s.order = s.order[n:]
}

// zeroKeys zeroes keys that were derived but not stored.
func zeroKeys(keys []*skippedKey) {
	for _, k := range keys {
		clear(k.mk[:])
	}
}
