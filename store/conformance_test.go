package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/redistest"
)

// pair returns two handles on one fresh state: for Redis two clients, as
// two nodes would hold; for memory and bbolt the same store twice.
type pair func(t *testing.T) (Store, Store)

// TestConformance runs one suite against every implementation.
func TestConformance(t *testing.T) {
	backends := []struct {
		name string
		open pair
	}{
		{"memory", func(t *testing.T) (Store, Store) {
			m := NewMemory(nil)
			return m, m
		}},
		{"bolt", func(t *testing.T) (Store, Store) {
			b := openBolt(t, filepath.Join(t.TempDir(), DataFile))
			return b, b
		}},
		{"redis", redisPair(t)},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Run("calls", func(t *testing.T) { testCalls(t, b.open) })
			t.Run("prekeys", func(t *testing.T) { testPrekeys(t, b.open) })
			t.Run("prekey-expiry", func(t *testing.T) { testPrekeyExpiry(t, b.open) })
			t.Run("one-time-claims", func(t *testing.T) { testOneTimeClaims(t, b.open) })
			t.Run("marks", func(t *testing.T) { testMarks(t, b.open) })
			t.Run("leases", func(t *testing.T) { testLeases(t, b.open) })
			t.Run("lease-race", func(t *testing.T) { testLeaseRace(t, b.open) })
			t.Run("nodes", func(t *testing.T) { testNodes(t, b.open) })
		})
	}
}

// redisPair starts one redis-server for every subtest; each gets two
// fresh clients on an emptied database.
func redisPair(t *testing.T) pair {
	var rs *redistest.Server
	return func(st *testing.T) (Store, Store) {
		if rs == nil {
			rs = redistest.Start(t)
		}
		a, b := openRedis(st, rs.URL()), openRedis(st, rs.URL())
		if err := a.client.FlushDB(context.Background()).Err(); err != nil {
			st.Fatal(err)
		}
		return a, b
	}
}

func openRedis(t *testing.T, url string) *Redis {
	t.Helper()
	r, err := OpenRedis(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func openBolt(t *testing.T, path string) *Bolt {
	t.Helper()
	b, err := OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// eventually polls cond until it holds or 5 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// short is the life of entries a test waits to see expire.
const short = 200 * time.Millisecond

func testCalls(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	if err := a.CreateCall(ctx, "r1", Call{Creator: "alice-x"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if c, err := b.Call(ctx, "r1"); err != nil || c != (Call{Creator: "alice-x"}) {
		t.Fatalf("Call = %+v, %v", c, err)
	}
	if err := b.CreateCall(ctx, "r1", Call{Creator: "mallory"}, time.Hour); !errors.Is(err, ErrExists) {
		t.Fatalf("second creator: %v, want ErrExists", err)
	}
	if err := b.CreateCall(ctx, "r1", Call{Creator: "alice-x"}, time.Hour); err != nil {
		t.Fatalf("the same call again: %v", err)
	}
	if _, err := a.Call(ctx, "r2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Call of no call: %v, want ErrNotFound", err)
	}
	if err := a.EndCall(ctx, "r2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("EndCall of no call: %v, want ErrNotFound", err)
	}
	if err := a.EndCall(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if c, err := b.Call(ctx, "r1"); err != nil || c != (Call{Creator: "alice-x", Ended: true}) {
		t.Fatalf("ended call = %+v, %v", c, err)
	}
	// Recreating it (a retry of the creation) does not revive it.
	if err := a.CreateCall(ctx, "r1", Call{Creator: "alice-x"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if c, _ := b.Call(ctx, "r1"); !c.Ended {
		t.Fatal("creating an ended call again revived it")
	}

	// An ended call is kept for its life and no longer.
	if err := a.CreateCall(ctx, "brief", Call{Creator: "bob"}, short); err != nil {
		t.Fatal(err)
	}
	if err := a.EndCall(ctx, "brief"); err != nil && !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	eventually(t, "the call's record expires", func() bool {
		_, err := b.Call(ctx, "brief")
		return errors.Is(err, ErrNotFound)
	})
}

const (
	poolEC  = "x25519"
	poolKEM = "mlkem768"
)

func keys(first uint32, n int, fill byte) []OneTimePrekey {
	var out []OneTimePrekey
	for i := range n {
		out = append(out, OneTimePrekey{ID: first + uint32(i), Key: bytes.Repeat([]byte{fill + byte(i)}, 32)})
	}
	return out
}

func upload(epoch string, oneTime map[string][]OneTimePrekey) PrekeyUpload {
	return PrekeyUpload{Epoch: []byte(epoch), Bundle: []byte("bundle of " + epoch), OneTime: oneTime, Max: 10, TTL: time.Hour}
}

func put(t *testing.T, s Store, identity string, u PrekeyUpload) map[string]int {
	t.Helper()
	n, err := s.PutPrekeys(context.Background(), identity, u)
	if err != nil {
		t.Fatalf("PutPrekeys: %v", err)
	}
	return n
}

func take(t *testing.T, s Store, identity string, pools ...string) PrekeyFetch {
	t.Helper()
	f, err := s.TakePrekeys(context.Background(), identity, pools, time.Hour)
	if err != nil {
		t.Fatalf("TakePrekeys: %v", err)
	}
	return f
}

// expectCounts checks pool counts; want lists name, count pairs.
func expectCounts(t *testing.T, what string, got map[string]int, want ...any) {
	t.Helper()
	w := map[string]int{}
	for i := 0; i < len(want); i += 2 {
		w[want[i].(string)] = want[i+1].(int)
	}
	if fmt.Sprint(got) != fmt.Sprint(w) {
		t.Fatalf("%s: counts %v, want %v", what, got, w)
	}
}

func testPrekeys(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	if _, err := a.TakePrekeys(ctx, "alice", []string{poolEC}, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("take of nobody: %v, want ErrNotFound", err)
	}
	n := put(t, a, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 3, 10), poolKEM: keys(100, 2, 50)}))
	expectCounts(t, "upload", n, poolEC, 3, poolKEM, 2)

	// Oldest first, one per pool asked for, each removed.
	f := take(t, b, "alice", poolEC, poolKEM)
	if string(f.Bundle) != "bundle of e1" || f.OneTime[poolEC].ID != 1 || f.OneTime[poolKEM].ID != 100 || f.OneTime[poolEC].Key[0] != 10 {
		t.Fatalf("first fetch %+v", f)
	}
	expectCounts(t, "after the first fetch", f.Remaining, poolEC, 2, poolKEM, 1)
	f = take(t, a, "alice", poolEC)
	if len(f.OneTime) != 1 || f.OneTime[poolEC].ID != 2 {
		t.Fatalf("second fetch %+v", f.OneTime)
	}
	expectCounts(t, "after the second fetch", f.Remaining, poolEC, 1, poolKEM, 1)
	f = take(t, a, "alice")
	if len(f.OneTime) != 0 || string(f.Bundle) != "bundle of e1" {
		t.Fatalf("fetch without one-time prekeys %+v", f)
	}
	expectCounts(t, "a fetch that takes nothing", f.Remaining, poolEC, 1, poolKEM, 1)

	// A refill adds; a pool named without keys is counted.
	n = put(t, b, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(4, 2, 20), poolKEM: nil}))
	expectCounts(t, "refill", n, poolEC, 3, poolKEM, 1)
	// Refused uploads store nothing, not even their valid pools.
	for _, refused := range []struct {
		u    PrekeyUpload
		want error
	}{
		{upload("e1", map[string][]OneTimePrekey{poolKEM: keys(200, 1, 0), poolEC: keys(3, 1, 0)}), ErrDuplicatePrekey},
		{upload("e1", map[string][]OneTimePrekey{poolKEM: keys(200, 1, 0), poolEC: keys(7, 8, 0)}), ErrTooManyPrekeys},
	} {
		if _, err := a.PutPrekeys(ctx, "alice", refused.u); !errors.Is(err, refused.want) {
			t.Fatalf("refused upload: %v, want %v", err, refused.want)
		}
	}
	// A taken id may come back: it is no longer held.
	n = put(t, a, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 1, 30), poolKEM: nil}))
	expectCounts(t, "after refusals", n, poolEC, 4, poolKEM, 1)
	var ids []uint32
	for range 4 {
		ids = append(ids, take(t, b, "alice", poolEC).OneTime[poolEC].ID)
	}
	if !slices.Equal(ids, []uint32{3, 4, 5, 1}) {
		t.Fatalf("handed out %v, want [3 4 5 1]", ids)
	}
	f = take(t, a, "alice", poolEC, poolKEM)
	if _, ok := f.OneTime[poolEC]; ok || f.OneTime[poolKEM].ID != 101 {
		t.Fatalf("fetch of an exhausted pool %+v", f.OneTime)
	}
	expectCounts(t, "exhausted", f.Remaining, poolEC, 0, poolKEM, 0)

	// Another epoch replaces the entry whole, pools it does not name
	// included.
	put(t, a, "alice", upload("e1", map[string][]OneTimePrekey{poolKEM: keys(300, 2, 0)}))
	n = put(t, b, "alice", upload("e2", map[string][]OneTimePrekey{poolEC: keys(1, 2, 40)}))
	expectCounts(t, "new epoch", n, poolEC, 2)
	f = take(t, a, "alice", poolEC, poolKEM)
	if string(f.Bundle) != "bundle of e2" || f.OneTime[poolEC].ID != 1 || f.OneTime[poolEC].Key[0] != 40 {
		t.Fatalf("fetch after a new epoch %+v", f)
	}
	if _, ok := f.OneTime[poolKEM]; ok {
		t.Fatal("a pool of the old epoch survived a new one")
	}
	expectCounts(t, "new epoch", f.Remaining, poolEC, 1, poolKEM, 0)
	// Identities are apart.
	if _, err := a.TakePrekeys(ctx, "bob", []string{poolEC}, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("take of bob: %v, want ErrNotFound", err)
	}
}

func testPrekeyExpiry(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	u := upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 2, 0)})
	u.TTL = short
	put(t, a, "brief", u)
	// Not polled: a fetch would extend it.
	time.Sleep(2 * short)
	if _, err := b.TakePrekeys(ctx, "brief", []string{poolEC}, time.Hour); !errors.Is(err, ErrNotFound) {
		t.Fatalf("take of an expired entry: %v, want ErrNotFound", err)
	}
	// A fetch extends the entry's life, pools included.
	u.TTL = time.Second
	put(t, a, "kept", u)
	take(t, b, "kept", poolEC)
	time.Sleep(time.Second + short)
	if f := take(t, a, "kept", poolEC); f.OneTime[poolEC].ID != 2 {
		t.Fatalf("after its upload's ttl, a fetched entry has %+v", f)
	}
}

// testOneTimeClaims: many goroutines, through both handles, take every
// one-time prekey; each is handed out exactly once.
func testOneTimeClaims(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	const total, workers = 200, 32
	for first := uint32(1); first <= total; first += 100 {
		u := upload("e1", map[string][]OneTimePrekey{poolEC: keys(first, 100, 0)})
		u.Max = total
		put(t, a, "target", u)
	}
	var mu sync.Mutex
	got := map[uint32]int{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		s := []Store{a, b}[w%2]
		wg.Go(func() {
			for {
				f, err := s.TakePrekeys(ctx, "target", []string{poolEC}, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				k, ok := f.OneTime[poolEC]
				if !ok {
					return
				}
				mu.Lock()
				got[k.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(got) != total {
		t.Fatalf("%d distinct one-time prekeys handed out, want %d", len(got), total)
	}
	for id, n := range got {
		if n != 1 || id < 1 || id > total {
			t.Fatalf("one-time prekey %d handed out %d times", id, n)
		}
	}
}

func testMarks(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	mark := func(s Store, key string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.Mark(ctx, key, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !mark(a, "k", time.Hour) || mark(b, "k", time.Hour) || mark(a, "k", time.Hour) {
		t.Fatal("a key was marked twice")
	}
	if !mark(b, "other", time.Hour) {
		t.Fatal("another key was refused")
	}
	if err := b.Unmark(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if !mark(a, "k", time.Hour) {
		t.Fatal("an unmarked key was refused")
	}
	if err := a.Unmark(ctx, "never"); err != nil {
		t.Fatalf("unmarking an absent key: %v", err)
	}
	if !mark(a, "brief", short) {
		t.Fatal("mark refused")
	}
	eventually(t, "a mark expires", func() bool { return mark(b, "brief", time.Hour) })
}

func testLeases(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	must := func(v any, err error) any {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if h := must(a.LeaseHolder(ctx, "room")); h != "" {
		t.Fatalf("free lease held by %q", h)
	}
	if h := must(a.ClaimLease(ctx, "room", "n1", time.Hour)); h != "n1" {
		t.Fatalf("claim of a free lease: holder %q", h)
	}
	if h := must(b.ClaimLease(ctx, "room", "n2", time.Hour)); h != "n1" {
		t.Fatalf("claim of a held lease: holder %q, want n1", h)
	}
	if h := must(a.ClaimLease(ctx, "room", "n1", time.Hour)); h != "n1" {
		t.Fatalf("the holder's second claim: holder %q", h)
	}
	if h := must(b.LeaseHolder(ctx, "room")); h != "n1" {
		t.Fatalf("holder %q, want n1", h)
	}
	if must(b.RenewLease(ctx, "room", "n2", time.Hour)) == true || must(b.ReleaseLease(ctx, "room", "n2")) == true {
		t.Fatal("n2 renewed or released n1's lease")
	}
	if must(a.RenewLease(ctx, "room", "n1", time.Hour)) != true {
		t.Fatal("the holder could not renew")
	}
	if must(a.ReleaseLease(ctx, "room", "n1")) != true {
		t.Fatal("the holder could not release")
	}
	if h := must(b.LeaseHolder(ctx, "room")); h != "" {
		t.Fatalf("released lease held by %q", h)
	}
	if must(a.RenewLease(ctx, "room", "n1", time.Hour)) == true || must(a.ReleaseLease(ctx, "room", "n1")) == true {
		t.Fatal("a free lease was renewed or released")
	}
	if h := must(b.ClaimLease(ctx, "room", "n2", time.Hour)); h != "n2" {
		t.Fatalf("claim after release: holder %q", h)
	}

	// A lease its holder does not renew runs out; then another may claim
	// it, and the old holder can no longer renew it.
	if h := must(a.ClaimLease(ctx, "brief", "n1", short)); h != "n1" {
		t.Fatalf("claim: holder %q", h)
	}
	eventually(t, "a lease expires", func() bool { return must(b.LeaseHolder(ctx, "brief")) == "" })
	if h := must(b.ClaimLease(ctx, "brief", "n2", time.Hour)); h != "n2" {
		t.Fatalf("claim of an expired lease: holder %q", h)
	}
	if must(a.RenewLease(ctx, "brief", "n1", time.Hour)) == true {
		t.Fatal("the expired holder renewed another's lease")
	}
	// Renewing moves the expiry.
	must(a.ClaimLease(ctx, "renewed", "n1", time.Second))
	must(a.RenewLease(ctx, "renewed", "n1", time.Hour))
	time.Sleep(time.Second + short)
	if h := must(b.LeaseHolder(ctx, "renewed")); h != "n1" {
		t.Fatalf("renewed lease: holder %q", h)
	}
}

// testLeaseRace: 20 concurrent claims of one lease, through both handles,
// make exactly one holder, and every claimant learns which.
func testLeaseRace(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	const claimants = 20
	holders := make([]string, claimants)
	errs := make([]error, claimants)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range claimants {
		s := []Store{a, b}[i%2]
		wg.Go(func() {
			<-start
			holders[i], errs[i] = s.ClaimLease(ctx, "contested", fmt.Sprintf("node-%d", i), time.Hour)
		})
	}
	close(start)
	wg.Wait()
	winners := 0
	for i, h := range holders {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if h != holders[0] {
			t.Fatalf("claimants see different holders: %q and %q", holders[0], h)
		}
		if h == fmt.Sprintf("node-%d", i) {
			winners++
		}
	}
	if winners != 1 {
		t.Fatalf("%d claimants hold the lease, want 1", winners)
	}
	if h, err := a.LeaseHolder(ctx, "contested"); err != nil || h != holders[0] {
		t.Fatalf("holder %q, %v; want %q", h, err, holders[0])
	}
}

// testNodes: a node's record is seen by every handle until it expires or
// is deleted, and publishing again replaces it and extends its life.
func testNodes(t *testing.T, open pair) {
	ctx := context.Background()
	a, b := open(t)
	nodes := func(s Store) map[string]string {
		t.Helper()
		m, err := s.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := make(map[string]string, len(m))
		for id, r := range m {
			out[id] = string(r)
		}
		return out
	}
	if got := nodes(b); len(got) != 0 {
		t.Fatalf("nodes of an empty store: %v", got)
	}
	if err := a.PutNode(ctx, "n1", []byte(`{"url":"http://n1"}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := b.PutNode(ctx, "n2", []byte(`{"url":"http://n2"}`), short); err != nil {
		t.Fatal(err)
	}
	if got := nodes(a); len(got) != 2 || got["n1"] != `{"url":"http://n1"}` || got["n2"] != `{"url":"http://n2"}` {
		t.Fatalf("nodes %v", got)
	}
	eventually(t, "a node's record expires", func() bool { _, alive := nodes(b)["n2"]; return !alive })
	if got := nodes(a); len(got) != 1 || got["n1"] == "" {
		t.Fatalf("after n2 expired: %v", got)
	}
	// Publishing again replaces the record and its expiry.
	if err := a.PutNode(ctx, "n1", []byte("second"), short); err != nil {
		t.Fatal(err)
	}
	if err := a.PutNode(ctx, "n1", []byte("third"), time.Hour); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * short)
	if got := nodes(b); got["n1"] != "third" {
		t.Fatalf("republished record: %v", got)
	}
	if err := b.DeleteNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if got := nodes(a); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
}
