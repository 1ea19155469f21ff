// Package e2ee implements Sotto's end-to-end encryption: device identities
// and safety numbers, X3DH key agreement, the Double Ratchet, per-sender
// frame-key chains and SFrame (RFC 9605). It is a pure library with no
// network or file I/O; only clients use it. docs/PROTOCOL.md gives every
// byte it produces.
package e2ee
