// Package cluster makes one `sotto serve` process a node of a cluster: many
// nodes behind one address, sharing a Redis through package store, with
// every room running on exactly one of them.
//
// Each node publishes a record of itself (id, advertised URL, media and
// TURN addresses, rooms, participants, CPU) every heartbeat, kept for a
// few heartbeats: a node whose record expired is gone. A room runs on the
// node that holds its lease; the first join claims it, for the least-loaded
// live node, atomically (one holder however many nodes claim at once), and
// the holder renews the leases of the rooms it runs every heartbeat. A
// node that finds another holding the lease of a room it runs closes the
// room at once, rather than run it twice; while the store does not answer
// at all, it keeps its rooms (nobody can claim them then) and calls go on.
//
// Place answers a join with the node that runs the room, which may be this
// one; Owner answers the same for requests that must not place a room
// (ending a call, redeeming an invite). Drain makes the node stop taking
// rooms and hand back its leases, for a SIGTERM.
//
// The media path never reaches this package: it works at joins, at ends
// and on its heartbeat. docs/CLUSTER.md describes the design and its
// failures. This package must never import e2ee.
package cluster
