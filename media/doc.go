// Package media is Sotto's SFU-lite audio relay. Per room, it forwards
// each publisher's RTP to every other participant with the payload byte
// for byte unchanged: the payload is end-to-end encrypted and the relay has
// no key. RTCP is handled hop by hop.
//
// This package must never import e2ee.
//
// # The packet path
//
// The relay owns its media path (package transport): all participants
// share one UDP socket (and one ICE-TCP port), read and written in batches
// by one goroutine. A participant's packets are told apart by their source
// address, learned from its authenticated ICE checks, and decrypted in
// place with its SRTP keys from a DTLS handshake of its own; each
// subscriber's copy is built, encrypted into a slot of the batch and sent
// with the rest of the batch in one system call. No goroutine hand-off and
// no allocation lies between reading a packet and sending its copies. There
// is no PeerConnection on the relay: pion's DTLS and SRTP do the
// cryptography, the relay does the rest.
//
// # Sessions
//
// A participant joins with an SDP offer holding one audio m-line that sends
// (sendrecv or sendonly) and offers Opus. The answer receives on that m-line
// (recvonly) and carries every candidate of the relay; clients need not
// trickle. A trickled candidate that names no m-line of the session, or
// another username fragment, fails with ErrCandidate; the others are not
// needed. Every other participant's audio arrives on m-lines the relay adds
// (sendonly) through server-initiated renegotiation (PeerHandler.Offer,
// answered with Peer.SetAnswer). A listen-only participant offers Opus on
// recvonly m-lines only: the answer makes them inactive, it receives
// everyone, and the others get no track of it.
//
//   - On join, every other participant immediately gets an offer adding the
//     newcomer's track, and the newcomer gets one offer with every existing
//     publisher. Tracks are announced at join, before any RTP flows.
//   - On leave, the others get an offer in which the leaver's m-line is
//     inactive (its msid is gone and the remote track ends). The m-line is
//     reused for the next publisher once that offer is answered, so the
//     SDP does not grow with churn. A reused m-line keeps its SSRC, and the
//     relay keeps its sequence numbers and timestamps continuous: stacks
//     that bind a receiver to the SSRC of its first description (aiortc)
//     drop a new one. Clients map each mid to its publisher by the msid of
//     the latest offer.
//   - One offer in flight per participant. Changes arriving meanwhile queue
//     and go out together in a single offer after the answer.
//   - A client's own offer (Peer.AnswerOffer) may restart ICE: the relay
//     answers with new ICE credentials; the DTLS session and keys stay.
//
// # Track identity
//
// For publisher P, the track its subscribers receive has stream ID P's
// participant ID and track ID "audio-" + P's participant ID: the SDP line is
// "a=msid:<P> audio-<P>".
//
// # Media
//
// Only Opus (48 kHz, 2 channels) is negotiated, under the payload type the
// client's offer gave it, with the format "minptime=10;useinbandfec=1",
// and NACK feedback and the RFC 6464 audio-level extension when the client
// offers them; no RED, no other codec. An offer without Opus audio fails
// with ErrUnsupportedCodec; an unparsable offer, or one without a sending
// audio m-line, ICE credentials or a DTLS fingerprint, with ErrInvalidSDP.
// A join the relay cannot take now fails with ErrUnavailable.
//
// Only the participant's own stream (the SSRC its offer declares on its
// audio m-line, or the first one it sends if it declares none) is
// forwarded; anything else it sends is dropped and counted as
// unknown_ssrc, and RTP under another payload type as malformed. Per leg
// the relay rewrites the SSRC, payload type and audio-level extension ID
// (each client picks its own), never the payload. The audio level drives
// voice activity (speaking after about 200 ms louder than -50 dBov, silent
// after 500 ms without), reported through the room's onSpeaking callback
// on changes only.
//
// RTCP: subscribers' receiver reports end at the relay, their NACKs are
// answered from a per-publisher history of Config.NACKHistory packets; the
// relay sends its own sender reports to subscribers and receiver reports to
// publishers, once a second, in one compound packet per participant.
// Nothing is forwarded end to end.
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
// All media share one UDP port and one ICE-TCP port. The relay is an
// ICE-lite agent with host candidates only (or Config.PublicIPs in their
// place behind a 1:1 NAT); the client does the connectivity checks, and
// the relay sends on the path the client nominated or, if the client's
// media comes over another path it checked, on that one. A client that
// falls silent (no checks, no media) is reported through
// PeerHandler.Connectivity and fails after Config.ICEFailedTimeout more.
// The relay is DTLS client (a=setup:active) unless the client's offer
// insists on being one, and checks the client's certificate against the
// fingerprint of its offer.
package media
