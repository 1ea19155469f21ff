package store

import (
	"bytes"
	"fmt"
)

// prekeyEntry is one identity's directory entry as the memory and on-disk
// stores keep it. Redis keeps the same in a hash and a list per pool.
type prekeyEntry struct {
	Epoch  []byte                     `json:"epoch"`
	Bundle []byte                     `json:"bundle"`
	Pools  map[string][]OneTimePrekey `json:"pools"` // each oldest first
}

// put returns the entry that storing u over e (nil if none) makes, and
// the counts of the pools u names. e is left as it was if u is refused, and
// is retired (its discarded keys zeroed) if u replaces it.
func (e *prekeyEntry) put(u PrekeyUpload) (*prekeyEntry, map[string]int, error) {
	held := map[string][]OneTimePrekey{}
	replaced := e != nil && !bytes.Equal(e.Epoch, u.Epoch)
	if e != nil && !replaced {
		held = e.Pools
	}
	for pool, keys := range u.OneTime {
		if len(held[pool])+len(keys) > u.Max {
			return nil, nil, fmt.Errorf("%w: at most %d may be stored; %d are (pool %s)", ErrTooManyPrekeys, u.Max, len(held[pool]), pool)
		}
		ids := make(map[uint32]bool, len(held[pool])+len(keys))
		for _, k := range held[pool] {
			ids[k.ID] = true
		}
		for _, k := range keys {
			if ids[k.ID] {
				return nil, nil, fmt.Errorf("%w: id %d (pool %s)", ErrDuplicatePrekey, k.ID, pool)
			}
			ids[k.ID] = true
		}
	}
	next := &prekeyEntry{Epoch: clone(u.Epoch), Bundle: clone(u.Bundle), Pools: make(map[string][]OneTimePrekey, len(held)+len(u.OneTime))}
	for pool, keys := range held {
		next.Pools[pool] = keys
	}
	remaining := make(map[string]int, len(u.OneTime))
	for pool, keys := range u.OneTime {
		for _, k := range keys {
			next.Pools[pool] = append(next.Pools[pool], OneTimePrekey{ID: k.ID, Key: clone(k.Key)})
		}
		remaining[pool] = len(next.Pools[pool])
	}
	if replaced {
		e.zero()
	}
	return next, remaining, nil
}

// take hands out the oldest one-time prekey of each pool named, removing
// and zeroing it, with the bundle and the counts left.
func (e *prekeyEntry) take(pools []string) PrekeyFetch {
	f := PrekeyFetch{Bundle: clone(e.Bundle), OneTime: map[string]OneTimePrekey{}, Remaining: map[string]int{}}
	for _, pool := range pools {
		keys := e.Pools[pool]
		f.Remaining[pool] = 0
		if len(keys) == 0 {
			continue
		}
		f.OneTime[pool] = OneTimePrekey{ID: keys[0].ID, Key: clone(keys[0].Key)}
		clear(keys[0].Key)
		keys[0] = OneTimePrekey{}
		e.Pools[pool] = keys[1:]
	}
	for pool, keys := range e.Pools {
		f.Remaining[pool] = len(keys)
	}
	return f
}

// zero clears the key bytes e holds.
func (e *prekeyEntry) zero() {
	for _, keys := range e.Pools {
		for _, k := range keys {
			clear(k.Key)
		}
	}
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
