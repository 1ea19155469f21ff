// Package udp reads and writes a UDP socket in batches: on Linux one
// recvmmsg system call takes every datagram waiting, up to the batch
// size, and one sendmmsg sends a whole batch, each datagram to its own
// address. Elsewhere a batch is one datagram per system call, with the
// same interface.
//
// It exists because the relay's cost per forwarded packet is mostly system
// calls, and because golang.org/x/net/ipv4.PacketConn.ReadBatch, the usual
// route to recvmmsg from Go, allocates a net.UDPAddr and its IP for every
// datagram read. Here addresses are netip.AddrPort values and nothing
// allocates once a Reader or Writer exists; each is owned by one goroutine.
package udp
