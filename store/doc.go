// Package store keeps the server state that must outlive a process: private
// calls and whether they ended, the prekey directory, the grants that ration
// one-time prekeys, and room leases. Signaling uses it through the Store
// interface; three implementations stand behind it:
//
//   - Memory (NewMemory): the default and the tests'. Nothing survives the
//     process.
//   - Bolt (OpenBolt, Options.DataDir): one file on disk for a single node,
//     go.etcd.io/bbolt. Everything survives a restart or a crash.
//   - Redis (OpenRedis, Options.RedisURL): shared by every node of a
//     cluster, github.com/redis/go-redis/v9.
//
// Open picks one from Options. docs/CLUSTER.md lists every Redis key.
//
// # What is kept, and why
//
// Calls: the creator and the ended flag of every private call, until the
// last token it could have handed out expires, so that an ended call stays
// ended across restarts and nodes. Invites carry no state of their own:
// they are signed and may be redeemed until they expire, unless their call
// ended, which the call record says.
//
// Prekey directory: each identity's bundle (opaque to the store) and its
// pools of one-time prekeys, one pool per kind of key (X25519 today; the
// ML-KEM prekeys of PQXDH will be a second pool, and a signed last-resort
// KEM prekey part of the bundle). A one-time prekey is claimed atomically:
// whatever the number of callers and nodes, each is handed out once, and
// deleted from the store as it is (memory also zeroes it). These are
// public keys, so remnants on disk or in freed memory reveal nothing; the
// point is that none is handed out twice.
//
// Marks: keys recorded once for a while. Signaling marks the pair
// (requester, target) when it hands out a one-time prekey, so that a
// requester gets at most one of a target's per window on any node and
// across restarts; the marks ration the shared directory, so they are
// shared with it.
//
// Leases: a room lives on one node at a time; its lease is claimed if free,
// renewed and released only by its holder, and expires on its own.
//
// Nodes: the record each node of a cluster publishes about itself (package
// cluster), kept for a few seconds and refreshed by the node: the list of
// records is the list of live nodes.
//
// # What stays per node
//
// Rooms, participants and their sessions live on the node that runs the
// room. The token buckets (call creations per client address, prekey
// fetches per requester and per target, envelopes per sender) bound the
// load on the node that answers, so they stay in its memory: behind N
// nodes a client may get up to N times an allowance, but never more than
// one one-time prekey of a target per window, which is what the prekey
// allowances protect. A created call's claim on a room slot (until its
// creator joins) is per node too: it is about that node's capacity.
//
// # Errors
//
// Every error names the operation. ErrUnavailable marks a store that could
// not be reached (Redis down, a timeout): the caller may retry later, and
// signaling answers 503 store_unavailable. ErrNotFound, ErrExists,
// ErrDuplicatePrekey and ErrTooManyPrekeys are answers, not failures.
//
// This package must never import e2ee.
package store
