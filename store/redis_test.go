package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/redistest"
)

// TestRedisOutage: with Redis gone every operation fails with
// ErrUnavailable, promptly; once it is back the same store works again.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	r := openRedis(t, rs.URL())
	ctx := context.Background()
	if err := r.CreateCall(ctx, "before", Call{Creator: "a"}, time.Hour); err != nil {
		t.Fatal(err)
	}

	rs.Stop()
	ops := map[string]func() error{
		"ping":        func() error { return r.Ping(ctx) },
		"call":        func() error { _, err := r.Call(ctx, "before"); return err },
		"create call": func() error { return r.CreateCall(ctx, "during", Call{Creator: "a"}, time.Hour) },
		"end call":    func() error { return r.EndCall(ctx, "before") },
		"put prekeys": func() error {
			_, err := r.PutPrekeys(ctx, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 1, 0)}))
			return err
		},
		"take prekeys":  func() error { _, err := r.TakePrekeys(ctx, "alice", []string{poolEC}, time.Hour); return err },
		"mark":          func() error { _, err := r.Mark(ctx, "k", time.Hour); return err },
		"unmark":        func() error { return r.Unmark(ctx, "k") },
		"claim lease":   func() error { _, err := r.ClaimLease(ctx, "room", "n1", time.Hour); return err },
		"renew lease":   func() error { _, err := r.RenewLease(ctx, "room", "n1", time.Hour); return err },
		"release lease": func() error { _, err := r.ReleaseLease(ctx, "room", "n1"); return err },
		"lease holder":  func() error { _, err := r.LeaseHolder(ctx, "room"); return err },
	}
	for name, op := range ops {
		start := time.Now()
		err := op()
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%s with Redis down took %v", name, took)
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name the operation %q", err, name)
		}
	}

	// Back, empty (it kept nothing): the store that saw the outage serves
	// again without being reopened, once go-redis's probe (every second)
	// has seen it.
	rs.Restart()
	eventually(t, "the store answers again", func() bool { return r.Ping(ctx) == nil })
	if err := r.CreateCall(ctx, "after", Call{Creator: "a"}, time.Hour); err != nil {
		t.Fatalf("create call after Redis returned: %v", err)
	}
	if err := r.EndCall(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	if c, err := r.Call(ctx, "after"); err != nil || !c.Ended {
		t.Fatalf("call after Redis returned: %+v, %v", c, err)
	}
	if h, err := r.ClaimLease(ctx, "room", "n1", time.Hour); err != nil || h != "n1" {
		t.Fatalf("claim after Redis returned: %q, %v", h, err)
	}
}

// TestOpenRedisUnreachable: a Redis that does not answer at start is an
// ErrUnavailable from Open, not a store that fails later.
func TestOpenRedisUnreachable(t *testing.T) {
	start := time.Now()
	_, err := Open(context.Background(), Options{RedisURL: "redis://127.0.0.1:" + strconv.Itoa(redistest.FreePort(t)) + "/0"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Open of an unreachable Redis: %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Open of an unreachable Redis took %v", took)
	}
	if _, err := Open(context.Background(), Options{RedisURL: "http://example"}); err == nil {
		t.Fatal("Open accepted a URL that is not redis://")
	}
}

// TestRedisKeysExpire: every key the store writes carries a TTL, so that
// Redis never holds what nobody will read again; and the keys are the ones
// docs/CLUSTER.md lists.
func TestRedisKeysExpire(t *testing.T) {
	rs := redistest.Start(t)
	r := openRedis(t, rs.URL())
	ctx := context.Background()
	if err := r.CreateCall(ctx, "room1", Call{Creator: "alice"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := r.EndCall(ctx, "room1"); err != nil {
		t.Fatal(err)
	}
	put(t, r, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(1, 3, 0), poolKEM: keys(1, 2, 0)}))
	take(t, r, "alice", poolEC, poolKEM)
	put(t, r, "alice", upload("e1", map[string][]OneTimePrekey{poolEC: keys(10, 1, 0)}))
	if _, err := r.Mark(ctx, "prekey-grant:bob:alice", time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ClaimLease(ctx, "room:room1", "node-1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := r.PutNode(ctx, "node-1", []byte(`{}`), time.Hour); err != nil {
		t.Fatal(err)
	}
	keys, err := r.client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"sotto:call:room1":                    true,
		"sotto:prekeys:{alice}":               true,
		"sotto:prekeys:{alice}:pool:x25519":   true,
		"sotto:prekeys:{alice}:pool:mlkem768": true,
		"sotto:mark:prekey-grant:bob:alice":   true,
		"sotto:lease:room:room1":              true,
		"sotto:node:node-1":                   true,
		"sotto:nodes":                         true,
	}
	for _, k := range keys {
		if !want[k] {
			t.Errorf("unexpected key %q", k)
		}
		delete(want, k)
		ttl, err := r.client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > time.Hour {
			t.Errorf("key %s has TTL %v, want (0, 1h]", k, ttl)
		}
	}
	for k := range want {
		t.Errorf("key %s missing", k)
	}
}
