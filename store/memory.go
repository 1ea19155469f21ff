package store

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"
)

// MaxMarks bounds the marks the memory store holds at once. Past it, Mark
// refuses (reports false) until older marks expire: signaling then hands
// out fewer one-time prekeys, never more.
const MaxMarks = 1 << 16

// sweepInterval paces the memory and on-disk stores' removal of expired
// entries, which reads ignore anyway; it only bounds what they hold.
const sweepInterval = time.Minute

// Memory is the store of a single process: nothing survives it. It holds
// no goroutine, so Close has nothing to stop.
type Memory struct {
	now func() time.Time

	mu        sync.Mutex
	calls     map[string]timed[Call]
	prekeys   map[string]timed[*prekeyEntry]
	leases    map[string]timed[string]
	nodes     map[string]timed[[]byte]
	marks     marks
	nextSweep time.Time
}

var _ Store = (*Memory)(nil)

// timed is a value kept until expires.
type timed[T any] struct {
	v       T
	expires time.Time
}

func (t timed[T]) live(now time.Time) bool { return now.Before(t.expires) }

// NewMemory returns an empty memory store whose expiries follow now (nil is
// time.Now).
func NewMemory(now func() time.Time) *Memory { return newMemory(now, MaxMarks) }

func newMemory(now func() time.Time, maxMarks int) *Memory {
	return &Memory{
		now:     clock(now),
		calls:   make(map[string]timed[Call]),
		prekeys: make(map[string]timed[*prekeyEntry]),
		leases:  make(map[string]timed[string]),
		nodes:   make(map[string]timed[[]byte]),
		marks:   marks{max: maxMarks, until: make(map[string]time.Time)},
	}
}

// lock takes the store's lock and returns the time, after dropping what
// expired if a sweep is due.
func (m *Memory) lock() time.Time {
	m.mu.Lock()
	now := m.now()
	if now.Before(m.nextSweep) {
		return now
	}
	m.nextSweep = now.Add(sweepInterval)
	sweep(m.calls, now)
	sweep(m.leases, now)
	sweep(m.nodes, now)
	for id, e := range m.prekeys {
		if !e.live(now) {
			e.v.zero()
			delete(m.prekeys, id)
		}
	}
	return now
}

func sweep[T any](entries map[string]timed[T], now time.Time) {
	for k, e := range entries {
		if !e.live(now) {
			delete(entries, k)
		}
	}
}

// CreateCall implements Calls.
func (m *Memory) CreateCall(_ context.Context, room string, c Call, ttl time.Duration) error {
	now := m.lock()
	defer m.mu.Unlock()
	if e := m.calls[room]; e.live(now) {
		if e.v.Creator == c.Creator {
			return nil
		}
		return fmt.Errorf("store: create call %s: %w", room, ErrExists)
	}
	m.calls[room] = timed[Call]{c, now.Add(ttl)}
	return nil
}

// Call implements Calls.
func (m *Memory) Call(_ context.Context, room string) (Call, error) {
	now := m.lock()
	defer m.mu.Unlock()
	e := m.calls[room]
	if !e.live(now) {
		return Call{}, fmt.Errorf("store: call %s: %w", room, ErrNotFound)
	}
	return e.v, nil
}

// EndCall implements Calls.
func (m *Memory) EndCall(_ context.Context, room string) error {
	now := m.lock()
	defer m.mu.Unlock()
	e := m.calls[room]
	if !e.live(now) {
		return fmt.Errorf("store: end call %s: %w", room, ErrNotFound)
	}
	e.v.Ended = true
	m.calls[room] = e
	return nil
}

// PutPrekeys implements Prekeys.
func (m *Memory) PutPrekeys(_ context.Context, identity string, u PrekeyUpload) (map[string]int, error) {
	now := m.lock()
	defer m.mu.Unlock()
	var old *prekeyEntry
	if e, ok := m.prekeys[identity]; ok && e.live(now) {
		old = e.v
	} else if ok {
		e.v.zero()
	}
	next, remaining, err := old.put(u)
	if err != nil {
		return nil, fmt.Errorf("store: put prekeys of %s: %w", identity, err)
	}
	m.prekeys[identity] = timed[*prekeyEntry]{next, now.Add(u.TTL)}
	return remaining, nil
}

// TakePrekeys implements Prekeys.
func (m *Memory) TakePrekeys(_ context.Context, identity string, take []string, ttl time.Duration) (PrekeyFetch, error) {
	now := m.lock()
	defer m.mu.Unlock()
	e := m.prekeys[identity]
	if !e.live(now) {
		return PrekeyFetch{}, fmt.Errorf("store: take prekeys of %s: %w", identity, ErrNotFound)
	}
	e.expires = now.Add(ttl)
	m.prekeys[identity] = e
	return e.v.take(take), nil
}

// Mark implements Marks.
func (m *Memory) Mark(_ context.Context, key string, ttl time.Duration) (bool, error) {
	now := m.lock()
	defer m.mu.Unlock()
	return m.marks.mark(key, now, ttl), nil
}

// Unmark implements Marks.
func (m *Memory) Unmark(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.marks.until, key)
	return nil
}

// ClaimLease implements Leases.
func (m *Memory) ClaimLease(_ context.Context, name, owner string, ttl time.Duration) (string, error) {
	now := m.lock()
	defer m.mu.Unlock()
	if e := m.leases[name]; e.live(now) && e.v != owner {
		return e.v, nil
	}
	m.leases[name] = timed[string]{owner, now.Add(ttl)}
	return owner, nil
}

// RenewLease implements Leases.
func (m *Memory) RenewLease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	now := m.lock()
	defer m.mu.Unlock()
	if e := m.leases[name]; !e.live(now) || e.v != owner {
		return false, nil
	}
	m.leases[name] = timed[string]{owner, now.Add(ttl)}
	return true, nil
}

// ReleaseLease implements Leases.
func (m *Memory) ReleaseLease(_ context.Context, name, owner string) (bool, error) {
	now := m.lock()
	defer m.mu.Unlock()
	if e := m.leases[name]; !e.live(now) || e.v != owner {
		return false, nil
	}
	delete(m.leases, name)
	return true, nil
}

// LeaseHolder implements Leases.
func (m *Memory) LeaseHolder(_ context.Context, name string) (string, error) {
	now := m.lock()
	defer m.mu.Unlock()
	if e := m.leases[name]; e.live(now) {
		return e.v, nil
	}
	return "", nil
}

// PutNode implements Nodes.
func (m *Memory) PutNode(_ context.Context, id string, record []byte, ttl time.Duration) error {
	now := m.lock()
	defer m.mu.Unlock()
	m.nodes[id] = timed[[]byte]{bytes.Clone(record), now.Add(ttl)}
	return nil
}

// DeleteNode implements Nodes.
func (m *Memory) DeleteNode(_ context.Context, id string) error {
	m.lock()
	defer m.mu.Unlock()
	delete(m.nodes, id)
	return nil
}

// Nodes implements Nodes.
func (m *Memory) Nodes(context.Context) (map[string][]byte, error) {
	now := m.lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.nodes))
	for id, e := range m.nodes {
		if e.live(now) {
			out[id] = bytes.Clone(e.v)
		}
	}
	return out, nil
}

// Ping implements Store: memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Close implements Store.
func (m *Memory) Close() error { return nil }

// marks is a bounded set of keys, each kept until its time is up.
type marks struct {
	max   int
	until map[string]time.Time
	// order holds the marks oldest first. Signaling gives all its marks one
	// ttl, so they expire in this order; an entry whose key was unmarked or
	// marked again no longer matches until and is skipped.
	order []markEntry
}

type markEntry struct {
	key   string
	until time.Time
}

func (s *marks) mark(key string, now time.Time, ttl time.Duration) bool {
	s.expire(now)
	if until, ok := s.until[key]; (ok && now.Before(until)) || len(s.order) >= s.max {
		return false
	}
	until := now.Add(ttl)
	s.until[key] = until
	s.order = append(s.order, markEntry{key, until})
	return true
}

func (s *marks) expire(now time.Time) {
	n := 0
	for _, e := range s.order {
		if now.Before(e.until) {
			break
		}
		if s.until[e.key].Equal(e.until) {
			delete(s.until, e.key)
		}
		n++
	}
	// Reslicing keeps this O(1) per mark; append moves the live entries to
	// a new array once the old one's tail is used up.
	clear(s.order[:n])
	s.order = s.order[n:]
}
