package store

import (
	"context"
	"errors"
	"time"
)

// Store is everything that must outlive a process. Its methods are safe for
// concurrent use.
type Store interface {
	Calls
	Prekeys
	Marks
	Leases
	Nodes
	// Ping reports whether the store answers now.
	Ping(ctx context.Context) error
	// Close releases the store's file or connections.
	Close() error
}

// Errors the stores return, wrapped with the operation's context; test
// with errors.Is.
var (
	// ErrUnavailable: the store could not be reached (or did not answer in
	// time). Nothing was changed, or it cannot be told whether it was;
	// retrying later is the remedy.
	ErrUnavailable = errors.New("state store unavailable")
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	// ErrDuplicatePrekey refuses an upload naming a one-time prekey id that
	// its pool holds already. Nothing of the upload is stored.
	ErrDuplicatePrekey = errors.New("one-time prekey id already stored")
	// ErrTooManyPrekeys refuses an upload that would make a pool hold more
	// than PrekeyUpload.Max. Nothing of the upload is stored.
	ErrTooManyPrekeys = errors.New("too many one-time prekeys")
)

// Call is the record of a private call.
type Call struct {
	Creator string `json:"creator"` // the identity that may end it
	Ended   bool   `json:"ended"`   // joins and invites are refused
}

// Calls keeps private calls, by room.
type Calls interface {
	// CreateCall records c for room, kept for ttl; ErrExists if room has a
	// call of another creator. Creating the same call again (a retry)
	// changes nothing.
	CreateCall(ctx context.Context, room string, c Call, ttl time.Duration) error
	// Call returns room's call; ErrNotFound if there is none (never
	// created, or expired).
	Call(ctx context.Context, room string) (Call, error)
	// EndCall marks room's call ended for the rest of its life; ErrNotFound
	// if there is none.
	EndCall(ctx context.Context, room string) error
}

// OneTimePrekey is a single-use public prekey; the store does not
// interpret Key.
type OneTimePrekey struct {
	ID  uint32 `json:"id"`
	Key []byte `json:"key"`
}

// PrekeyUpload is what an identity publishes to the directory.
type PrekeyUpload struct {
	// Epoch names the device keys the one-time prekeys belong to. An upload
	// with an Epoch other than the stored one replaces the entry whole,
	// discarding every pool: the device may no longer hold their private
	// halves.
	Epoch []byte
	// Bundle is the long-lived part handed out with every fetch (identity
	// key, signed prekey, ...), opaque to the store. It replaces the stored
	// one.
	Bundle []byte
	// OneTime adds one-time prekeys to pools by name, one pool per kind of
	// key. A pool named with no keys is only counted.
	OneTime map[string][]OneTimePrekey
	// Max is the most one-time prekeys one pool may hold.
	Max int
	// TTL is how long the entry is kept after this upload; every fetch
	// extends it by as much again.
	TTL time.Duration
}

// PrekeyFetch is what TakePrekeys hands out.
type PrekeyFetch struct {
	Bundle []byte
	// OneTime holds the one-time prekey taken from each pool asked for that
	// had one.
	OneTime map[string]OneTimePrekey
	// Remaining counts the one-time prekeys left in every pool the entry
	// holds or was asked for.
	Remaining map[string]int
}

// Prekeys is the prekey directory.
type Prekeys interface {
	// PutPrekeys stores u for identity atomically, all or nothing, and
	// returns how many one-time prekeys each pool named in u.OneTime holds
	// now. ErrDuplicatePrekey and ErrTooManyPrekeys refuse it.
	PutPrekeys(ctx context.Context, identity string, u PrekeyUpload) (remaining map[string]int, err error)
	// TakePrekeys returns identity's bundle and removes, atomically, the
	// oldest one-time prekey of each pool in take: each is handed out once.
	// The entry is kept for ttl from now. ErrNotFound if identity has none.
	TakePrekeys(ctx context.Context, identity string, take []string, ttl time.Duration) (PrekeyFetch, error)
}

// Marks records keys for a while: a set-if-absent with expiry.
type Marks interface {
	// Mark records key for ttl unless it is recorded already, and reports
	// whether this call recorded it.
	Mark(ctx context.Context, key string, ttl time.Duration) (bool, error)
	// Unmark forgets key.
	Unmark(ctx context.Context, key string) error
}

// Leases gives each name at most one holder at a time, for a limited time.
type Leases interface {
	// ClaimLease makes owner the holder of name for ttl if nobody holds it,
	// or extends owner's lease if owner holds it, and returns the holder
	// after the call: owner when the claim succeeded.
	ClaimLease(ctx context.Context, name, owner string, ttl time.Duration) (holder string, err error)
	// RenewLease extends the lease to ttl from now if owner holds it, and
	// reports whether it did.
	RenewLease(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// ReleaseLease frees name if owner holds it, and reports whether it did.
	ReleaseLease(ctx context.Context, name, owner string) (bool, error)
	// LeaseHolder returns who holds name, or "" if nobody does.
	LeaseHolder(ctx context.Context, name string) (string, error)
}

// Nodes keeps the records the nodes of a cluster publish about themselves,
// each for a short while: a node whose record expired is gone.
type Nodes interface {
	// PutNode stores id's record (opaque to the store) for ttl, replacing
	// the one stored.
	PutNode(ctx context.Context, id string, record []byte, ttl time.Duration) error
	// DeleteNode forgets id's record at once.
	DeleteNode(ctx context.Context, id string) error
	// Nodes returns every record that has not expired, by node id.
	Nodes(ctx context.Context) (map[string][]byte, error)
}
