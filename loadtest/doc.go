// Package loadtest runs synthetic callers against a Sotto server. Each
// caller is a full participant driven by the Go SDK (package client): it
// gets a token, joins, does the end-to-end key exchange with every peer,
// sends real Opus frames at real-time pace (one 20 ms frame per tick) and
// receives everyone else's. The run reports join time, send-to-receive
// latency, loss, jitter, decrypt failures and rekeys as the SDK counts them,
// and the server's CPU per forwarded packet from its /metrics.
//
// Latency needs no clock sync: the same process sends and receives. Each
// sent frame is remembered in a per-sender ring (sequence, payload hash,
// send time); a receiver finds the frame by its RTP sequence number minus a
// per-pair offset (the relay may renumber a reused leg), checked against
// the payload hash.
package loadtest
