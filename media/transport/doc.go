// Package transport is the relay's own media transport: the UDP socket
// and the ICE-TCP port every participant's media shares, and one Session
// per participant with its ICE-lite state, DTLS handshake and SRTP keys.
//
// One goroutine reads the UDP socket in batches (package udp). Each
// datagram is demultiplexed by its first byte (RFC 7983) and its source
// address: STUN goes to the ICE-lite agent (package ice), which learns the
// session's addresses from the client's authenticated checks; DTLS goes to
// the session's handshake (pion/dtls, with the use_srtp extension); SRTP
// and SRTCP are decrypted in place with the session's pion/srtp context
// and handed, plaintext, to the session's Handler on that same goroutine.
// What the handler sends back goes through a Writer, which encrypts each
// packet into a slot of its batch and sends the batch with one system call
// when the read batch is done. No channel and no goroutine hand-off lies
// between the socket and the handler, and nothing allocates per packet.
//
// ICE-TCP (RFC 6544, passive) carries the same packets framed as RFC 4571
// says; each TCP connection has a goroutine reading it, with a Writer of
// its own, and one writing it. A client relayed through TURN is an
// ordinary UDP peer: its packets come from the TURN server's relay
// address.
//
// A session is alive while its client is heard: authenticated checks or
// media. Silent for Config.DisconnectedAfter it is reported disconnected,
// and failed after Config.FailedAfter more.
package transport
