// Package media is Sotto's SFU-lite audio relay, built on pion/webrtc. It
// keeps one PeerConnection per participant and, per room, forwards each
// publisher's RTP to every other participant with the payload byte for byte
// unchanged: the payload is end-to-end encrypted and the relay has no key.
// RTCP is handled hop by hop.
//
// This package must never import e2ee.
package media
