package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestBoltSurvivesReopen: what one process stored, the next one finds.
func TestBoltSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), DataFile)
	first, err := OpenBolt(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.CreateCall(ctx, "r1", Call{Creator: "alice"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := first.EndCall(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	put(t, first, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 3, 0)}))
	if k := take(t, first, "alice", poolEC).OneTime[poolEC]; k.ID != 1 {
		t.Fatalf("took %+v", k)
	}
	if ok, err := first.Mark(ctx, "grant", time.Hour); !ok || err != nil {
		t.Fatalf("mark: %v %v", ok, err)
	}
	if _, err := first.ClaimLease(ctx, "room", "n1", time.Hour); err != nil {
		t.Fatal(err)
	}
	// The file is the process's own while it is open.
	if _, err := OpenBolt(path, nil); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second open of a file in use: %v", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := first.Ping(ctx); err == nil {
		t.Fatal("a closed store answers Ping")
	}

	again := openBolt(t, path)
	if c, err := again.Call(ctx, "r1"); err != nil || !c.Ended || c.Creator != "alice" {
		t.Fatalf("call after reopen: %+v, %v", c, err)
	}
	f := take(t, again, "alice", poolEC)
	if f.OneTime[poolEC].ID != 2 || string(f.Bundle) != "bundle of e1" {
		t.Fatalf("prekeys after reopen: %+v", f)
	}
	expectCounts(t, "after reopen", f.Remaining, poolEC, 1)
	if ok, err := again.Mark(ctx, "grant", time.Hour); ok || err != nil {
		t.Fatalf("mark after reopen: %v %v, want it still marked", ok, err)
	}
	if h, err := again.LeaseHolder(ctx, "room"); h != "n1" || err != nil {
		t.Fatalf("lease after reopen: %q %v", h, err)
	}
}

// TestBoltSweeps: expired entries leave the file, not only the answers.
func TestBoltSweeps(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	b, err := OpenBolt(filepath.Join(t.TempDir(), DataFile), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if err := b.CreateCall(ctx, "old", Call{Creator: "a"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Mark(ctx, "old", time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ClaimLease(ctx, "live", "n1", time.Hour); err != nil {
		t.Fatal(err)
	}
	now = now.Add(sweepInterval)
	if _, err := b.ClaimLease(ctx, "other", "n1", time.Hour); err != nil {
		t.Fatal(err)
	}
	count := func(bucket []byte) int {
		n := 0
		if err := b.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucket).Stats().KeyN
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if c, m, l := count(callsBucket), count(marksBucket), count(leasesBucket); c != 0 || m != 0 || l != 2 {
		t.Fatalf("after a sweep: %d calls, %d marks, %d leases; want 0, 0, 2", c, m, l)
	}
	if _, err := b.Call(ctx, "old"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("swept call: %v", err)
	}
}
