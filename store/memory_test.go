package store

import (
	"context"
	"testing"
	"time"
)

// TestMemoryMarksBounded: the memory store holds at most its bound of
// marks and forgets each when its time is up.
func TestMemoryMarksBounded(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := newMemory(func() time.Time { return now }, 3)
	mark := func(key string, at time.Time) bool {
		t.Helper()
		now = at
		ok, err := m.Mark(ctx, key, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	size := func() (keys, entries int) {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.marks.until), len(m.marks.order)
	}
	t0 := now
	for _, k := range []string{"a", "b"} {
		if !mark(k, t0) {
			t.Fatalf("mark %s refused", k)
		}
	}
	if mark("a", t0.Add(59*time.Second)) {
		t.Fatal("a marked twice within its minute")
	}
	// An unmarked key can be marked again. Its stale entry still counts
	// against the bound until its time is up, and must not end the new
	// mark when it is.
	if err := m.Unmark(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if !mark("a", t0.Add(30*time.Second)) {
		t.Fatal("mark after unmark refused")
	}
	if mark("c", t0.Add(30*time.Second)) {
		t.Fatal("a fourth entry fit in a store of three")
	}
	if mark("a", t0.Add(time.Minute)) {
		t.Fatal("the stale entry of an unmarked key ended its successor")
	}
	if !mark("c", t0.Add(time.Minute)) {
		t.Fatal("mark refused after time freed the store")
	}
	if keys, entries := size(); keys != 2 || entries != 2 {
		t.Fatalf("%d keys, %d entries held; want 2 and 2", keys, entries)
	}
	mark("e", t0.Add(2*time.Minute))
	if keys, entries := size(); keys != 1 || entries != 1 {
		t.Fatalf("after every mark's time: %d keys, %d entries; want 1 and 1", keys, entries)
	}
}

// TestMemorySweeps: expired calls, prekeys and leases leave the memory
// store, and prekeys are zeroed as they go.
func TestMemorySweeps(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1000, 0)
	m := NewMemory(func() time.Time { return now })
	if err := m.CreateCall(ctx, "r", Call{Creator: "a"}, time.Second); err != nil {
		t.Fatal(err)
	}
	u := upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 1, 7)})
	u.TTL = time.Second
	put(t, m, "alice", u)
	key := m.prekeys["alice"].v.Pools[poolEC][0].Key
	if _, err := m.ClaimLease(ctx, "room", "n1", time.Second); err != nil {
		t.Fatal(err)
	}
	now = now.Add(sweepInterval)
	if _, err := m.LeaseHolder(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if len(m.calls) != 0 || len(m.prekeys) != 0 || len(m.leases) != 0 {
		t.Fatalf("after a sweep: %d calls, %d prekey entries, %d leases", len(m.calls), len(m.prekeys), len(m.leases))
	}
	if key[0] != 0 {
		t.Fatal("an expired one-time prekey was not zeroed")
	}
}

// TestMemoryZeroesTakenPrekeys: the store's copy of a handed-out key is
// cleared; the caller's is its own.
func TestMemoryZeroesTakenPrekeys(t *testing.T) {
	m := NewMemory(nil)
	put(t, m, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 2, 7)}))
	held := m.prekeys["alice"].v.Pools[poolEC][0].Key
	f := take(t, m, "alice", poolEC)
	if f.OneTime[poolEC].Key[0] != 7 {
		t.Fatalf("handed out %v", f.OneTime[poolEC].Key)
	}
	for _, b := range held {
		if b != 0 {
			t.Fatalf("the store's copy of a taken key is %v", held)
		}
	}
	// A new epoch retires the keys it discards the same way.
	held = m.prekeys["alice"].v.Pools[poolEC][0].Key
	put(t, m, "alice", upload("e2", nil))
	if held[0] != 0 {
		t.Fatal("a discarded one-time prekey was not zeroed")
	}
}
