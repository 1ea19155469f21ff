package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Bolt is the store of a single node: one bbolt file. Each operation is one
// transaction, committed to disk before it returns, so what it did survives
// a crash; a second process cannot open the same file.
type Bolt struct {
	db  *bolt.DB
	now func() time.Time
	// nextSweep is only touched inside write transactions, which bbolt
	// runs one at a time.
	nextSweep time.Time
}

var _ Store = (*Bolt)(nil)

// Buckets of the file. Every value is the entry's expiry (unix
// nanoseconds, 8 bytes big-endian) followed by its payload: JSON of Call
// or prekeyEntry, nothing for a mark, the holder for a lease, the record
// for a node.
var (
	callsBucket   = []byte("calls")
	prekeysBucket = []byte("prekeys")
	marksBucket   = []byte("marks")
	leasesBucket  = []byte("leases")
	nodesBucket   = []byte("nodes")
	allBuckets    = [][]byte{callsBucket, prekeysBucket, marksBucket, leasesBucket, nodesBucket}
)

// lockTimeout is how long OpenBolt waits for a file another process holds.
const lockTimeout = time.Second

// OpenBolt opens (or creates) the store file at path, whose expiries follow
// now (nil is time.Now).
func OpenBolt(path string, now func() time.Time) (*Bolt, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: locked by another process (is another sotto using this data dir?): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: prepare %s: %w", path, err)
	}
	return &Bolt{db: db, now: clock(now)}, nil
}

// update runs fn in a write transaction, after dropping what expired if a
// sweep is due, and wraps its error with op.
func (b *Bolt) update(op string, fn func(tx *bolt.Tx, now time.Time) error) error {
	now := b.now()
	err := b.db.Update(func(tx *bolt.Tx) error {
		if !now.Before(b.nextSweep) {
			b.nextSweep = now.Add(sweepInterval)
			if err := sweepBuckets(tx, now); err != nil {
				return fmt.Errorf("sweep: %w", err)
			}
		}
		return fn(tx, now)
	})
	if err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

// view runs fn in a read transaction and wraps its error with op.
func (b *Bolt) view(op string, fn func(tx *bolt.Tx, now time.Time) error) error {
	now := b.now()
	if err := b.db.View(func(tx *bolt.Tx) error { return fn(tx, now) }); err != nil {
		return fmt.Errorf("store: %s: %w", op, err)
	}
	return nil
}

func sweepBuckets(tx *bolt.Tx, now time.Time) error {
	for _, name := range allBuckets {
		bk := tx.Bucket(name)
		var expired [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			if _, ok := liveValue(v, now); !ok {
				expired = append(expired, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// getLive returns the payload under key if it has not expired. The slice
// is valid only within the transaction.
func getLive(bk *bolt.Bucket, key string, now time.Time) ([]byte, bool) {
	v := bk.Get([]byte(key))
	if v == nil {
		return nil, false
	}
	return liveValue(v, now)
}

func liveValue(v []byte, now time.Time) ([]byte, bool) {
	if len(v) < 8 || now.UnixNano() >= int64(binary.BigEndian.Uint64(v)) {
		return nil, false
	}
	return v[8:], true
}

func putTimed(bk *bolt.Bucket, key string, payload []byte, expires time.Time) error {
	v := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint64(v, uint64(expires.UnixNano()))
	return bk.Put([]byte(key), append(v, payload...))
}

// expiryOf returns the expiry stored in an entry's value.
func expiryOf(v []byte) time.Time { return time.Unix(0, int64(binary.BigEndian.Uint64(v))) }

// getCall reads room's call; ErrNotFound if it has none.
func getCall(bk *bolt.Bucket, room string, now time.Time) (Call, error) {
	payload, ok := getLive(bk, room, now)
	if !ok {
		return Call{}, ErrNotFound
	}
	var c Call
	err := json.Unmarshal(payload, &c)
	return c, err
}

func putCall(bk *bolt.Bucket, room string, c Call, expires time.Time) error {
	payload, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return putTimed(bk, room, payload, expires)
}

// CreateCall implements Calls.
func (b *Bolt) CreateCall(_ context.Context, room string, c Call, ttl time.Duration) error {
	return b.update("create call "+room, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(callsBucket)
		old, err := getCall(bk, room, now)
		switch {
		case errors.Is(err, ErrNotFound):
			return putCall(bk, room, c, now.Add(ttl))
		case err != nil:
			return err
		case old.Creator != c.Creator:
			return ErrExists
		}
		return nil
	})
}

// Call implements Calls.
func (b *Bolt) Call(_ context.Context, room string) (Call, error) {
	var c Call
	err := b.view("call "+room, func(tx *bolt.Tx, now time.Time) error {
		var err error
		c, err = getCall(tx.Bucket(callsBucket), room, now)
		return err
	})
	return c, err
}

// EndCall implements Calls.
func (b *Bolt) EndCall(_ context.Context, room string) error {
	return b.update("end call "+room, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(callsBucket)
		c, err := getCall(bk, room, now)
		if err != nil {
			return err
		}
		c.Ended = true
		return putCall(bk, room, c, expiryOf(bk.Get([]byte(room))))
	})
}

// PutPrekeys implements Prekeys.
func (b *Bolt) PutPrekeys(_ context.Context, identity string, u PrekeyUpload) (map[string]int, error) {
	var remaining map[string]int
	err := b.update("put prekeys of "+identity, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(prekeysBucket)
		var old *prekeyEntry
		if payload, ok := getLive(bk, identity, now); ok {
			old = new(prekeyEntry)
			if err := json.Unmarshal(payload, old); err != nil {
				return err
			}
		}
		next, n, err := old.put(u)
		if err != nil {
			return err
		}
		remaining = n
		payload, err := json.Marshal(next)
		if err != nil {
			return err
		}
		return putTimed(bk, identity, payload, now.Add(u.TTL))
	})
	return remaining, err
}

// TakePrekeys implements Prekeys.
func (b *Bolt) TakePrekeys(_ context.Context, identity string, take []string, ttl time.Duration) (PrekeyFetch, error) {
	var f PrekeyFetch
	err := b.update("take prekeys of "+identity, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(prekeysBucket)
		payload, ok := getLive(bk, identity, now)
		if !ok {
			return ErrNotFound
		}
		var e prekeyEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			return err
		}
		f = e.take(take)
		next, err := json.Marshal(&e)
		if err != nil {
			return err
		}
		return putTimed(bk, identity, next, now.Add(ttl))
	})
	return f, err
}

// Mark implements Marks.
func (b *Bolt) Mark(_ context.Context, key string, ttl time.Duration) (bool, error) {
	var marked bool
	err := b.update("mark "+key, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(marksBucket)
		if _, ok := getLive(bk, key, now); ok {
			return nil
		}
		marked = true
		return putTimed(bk, key, nil, now.Add(ttl))
	})
	return marked, err
}

// Unmark implements Marks.
func (b *Bolt) Unmark(_ context.Context, key string) error {
	return b.update("unmark "+key, func(tx *bolt.Tx, _ time.Time) error {
		return tx.Bucket(marksBucket).Delete([]byte(key))
	})
}

// ClaimLease implements Leases.
func (b *Bolt) ClaimLease(_ context.Context, name, owner string, ttl time.Duration) (string, error) {
	holder := owner
	err := b.update("claim lease "+name, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(leasesBucket)
		if h, ok := getLive(bk, name, now); ok && string(h) != owner {
			holder = string(h)
			return nil
		}
		return putTimed(bk, name, []byte(owner), now.Add(ttl))
	})
	return holder, err
}

// RenewLease implements Leases.
func (b *Bolt) RenewLease(_ context.Context, name, owner string, ttl time.Duration) (bool, error) {
	var renewed bool
	err := b.update("renew lease "+name, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(leasesBucket)
		if h, ok := getLive(bk, name, now); !ok || string(h) != owner {
			return nil
		}
		renewed = true
		return putTimed(bk, name, []byte(owner), now.Add(ttl))
	})
	return renewed, err
}

// ReleaseLease implements Leases.
func (b *Bolt) ReleaseLease(_ context.Context, name, owner string) (bool, error) {
	var released bool
	err := b.update("release lease "+name, func(tx *bolt.Tx, now time.Time) error {
		bk := tx.Bucket(leasesBucket)
		if h, ok := getLive(bk, name, now); !ok || string(h) != owner {
			return nil
		}
		released = true
		return bk.Delete([]byte(name))
	})
	return released, err
}

// LeaseHolder implements Leases.
func (b *Bolt) LeaseHolder(_ context.Context, name string) (string, error) {
	var holder string
	err := b.view("lease holder "+name, func(tx *bolt.Tx, now time.Time) error {
		if h, ok := getLive(tx.Bucket(leasesBucket), name, now); ok {
			holder = string(h)
		}
		return nil
	})
	return holder, err
}

// PutNode implements Nodes.
func (b *Bolt) PutNode(_ context.Context, id string, record []byte, ttl time.Duration) error {
	return b.update("put node "+id, func(tx *bolt.Tx, now time.Time) error {
		return putTimed(tx.Bucket(nodesBucket), id, record, now.Add(ttl))
	})
}

// DeleteNode implements Nodes.
func (b *Bolt) DeleteNode(_ context.Context, id string) error {
	return b.update("delete node "+id, func(tx *bolt.Tx, _ time.Time) error {
		return tx.Bucket(nodesBucket).Delete([]byte(id))
	})
}

// Nodes implements Nodes.
func (b *Bolt) Nodes(context.Context) (map[string][]byte, error) {
	out := make(map[string][]byte)
	err := b.view("nodes", func(tx *bolt.Tx, now time.Time) error {
		return tx.Bucket(nodesBucket).ForEach(func(k, v []byte) error {
			if record, ok := liveValue(v, now); ok {
				out[string(k)] = bytes.Clone(record)
			}
			return nil
		})
	})
	return out, err
}

// Ping implements Store: it fails once the file is closed.
func (b *Bolt) Ping(context.Context) error {
	return b.view("ping", func(*bolt.Tx, time.Time) error { return nil })
}

// Close implements Store.
func (b *Bolt) Close() error {
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", b.db.Path(), err)
	}
	return nil
}
