// Package floor is the yardstick for the relay's cost per forwarded
// packet: a minimal relay on loopback UDP that reads one packet, opens it
// with AES-GCM (as SRTP's AEAD_AES_128_GCM does), then for each subscriber
// seals it with that subscriber's key and sends it. That is the least any
// SRTP relay must do per packet; what Sotto spends beyond it is the
// overhead of its own path (SRTP bookkeeping, demultiplexing, RTCP and
// loss repair, the Go scheduler's wake-ups) and of the rest of the server.
//
// The relay runs in a child process (ServeRelay, spoken to over its stdin
// and stdout), so that its CPU time, like the server's
// process_cpu_seconds_total, covers everything that process does and
// nothing the traffic generator does. Measure drives it with the traffic
// shape of a load run: publishers sending one packet per 20 ms, each
// packet fanned out to the others of its room.
package floor
