// Package media is Sotto's SFU-lite audio relay, built on pion/webrtc. It
// keeps one PeerConnection per participant and, per room, forwards each
// publisher's RTP to every other participant with the payload byte for byte
// unchanged: the payload is end-to-end encrypted and the relay has no key.
// RTCP is handled hop by hop.
//
// This package must never import e2ee.
//
// # Sessions
//
// A participant joins with an SDP offer holding one audio m-line that sends
// (sendrecv or sendonly) and offers Opus. The answer receives on that m-line
// (recvonly) and is returned only after ICE gathering completed, so it holds
// every server candidate; clients need not trickle. Every other
// participant's audio arrives on server-added sendonly transceivers through
// server-initiated renegotiation (PeerHandler.Offer, answered with
// Peer.SetAnswer). A listen-only participant offers Opus on recvonly
// m-lines only: the answer makes them inactive, it receives everyone, and
// the others get no track of it.
//
//   - On join, every other participant immediately gets an offer adding the
//     newcomer's track, and the newcomer gets one offer with every existing
//     publisher. Tracks are announced at join, before any RTP flows.
//   - On leave, the others get an offer in which the leaver's transceiver is
//     inactive (its msid is gone and the remote track ends). The transceiver
//     is reused for the next publisher once that offer is answered, so the
//     SDP does not grow with churn. A reused m-line keeps its SSRC, and the
//     relay keeps its sequence numbers and timestamps continuous: stacks
//     that bind a receiver to the SSRC of its first description (aiortc)
//     drop a new one. Clients map each mid to its publisher by the msid of
//     the latest offer.
//   - One offer in flight per participant. Changes arriving meanwhile queue
//     and go out together in a single offer after the answer.
//
// # Track identity
//
// For publisher P, the track its subscribers receive has stream ID P's
// participant ID and track ID "audio-" + P's participant ID: the SDP line is
// "a=msid:<P> audio-<P>".
//
// # Media
//
// Only Opus (48 kHz, 2 channels) is negotiated, with the RFC 6464
// audio-level extension and NACK feedback when the client offers it; no
// RED, no other codec. The payload type is the one the client's offer gave
// Opus. The answer and every offer state the fmtp line
// "minptime=10;useinbandfec=1" for it, whatever the client offered
// (forClient: pion, which echoes the client's, keeps its own copy). An offer without Opus audio fails with
// ErrUnsupportedCodec; an unparsable offer, or one without a sending audio
// m-line, with ErrInvalidSDP; a join this host cannot take now (out of file
// descriptors or memory) with ErrUnavailable.
//
// Only the participant's own stream (the first track on its offered audio
// m-line) is forwarded; media on any other stream of its PeerConnection is
// dropped and counted as unknown_ssrc. Per leg the relay rewrites the SSRC,
// payload type and audio-level extension ID (each client picks its own),
// never the payload. The audio level drives voice activity (speaking after
// about 200 ms louder than -50 dBov, silent after 500 ms without), reported
// through the room's onSpeaking callback on changes only.
//
// RTCP: subscribers' receiver reports end at the relay, their NACKs are
// answered from a per-publisher history of Config.NACKHistory packets; the
// relay sends its own sender reports to subscribers and receiver reports to
// publishers. Nothing is forwarded end to end.
//
// Loss on the way from a publisher is repaired by the relay itself: it
// keeps a receive window per published stream and sends the publisher a
// generic NACK (RFC 4585) as soon as a gap shows, repeated after one and a
// half round trips (measured from the participant's receiver reports,
// 100 ms until known) at most three times; a run of more than 16 lost
// packets is an outage and is not asked for. A repaired packet is forwarded
// when it comes, late, and kept in the history like any other; a packet
// received twice is dropped (duplicate). Stats counts the requests and
// their outcome (Upstream*). Opus in-band FEC stays negotiated, so a
// receiver can still conceal a single loss that was not repaired in time.
//
// # Network
//
// All media share one UDP port (pion's UDP mux) and one ICE-TCP port. The
// relay is an ICE-lite agent with host candidates only (or Config.PublicIPs
// in their place behind a 1:1 NAT); the client does the connectivity checks,
// so the relay learns the client's address from them and needs none of its
// candidates. A trickled candidate that names no m-line of the session, or
// another username fragment, fails with ErrCandidate.
package media
