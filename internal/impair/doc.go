// Package impair makes a UDP socket lose packets on purpose, the way a
// lossy network path does, for tests and load runs on loopback. A Conn is
// a caller's own socket: it drops a fraction of the datagrams it sends
// (the caller's uplink) and of those it receives (its downlink), each
// decided by a seeded random sequence, so a run can be repeated. Every
// datagram that is not dropped really crosses UDP.
//
// Putting the loss in the caller's socket, rather than in a proxy between
// caller and relay, keeps ICE as it is: the relay's candidates stay the
// addresses the caller reaches, and the relay sees the caller's own
// address. The Go SDK takes such a socket through client.Options.ListenMedia.
package impair
