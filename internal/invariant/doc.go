// Package invariant holds tests for the design's structural invariants,
// above all that the server packages (server, signaling, media, turn,
// token, store) never depend on e2ee: the relay is unable to decrypt by
// construction.
package invariant
