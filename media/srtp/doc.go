// Package srtp protects the relay's RTP and RTCP (SRTP and SRTCP, RFC
// 3711) with the two protection profiles WebRTC endpoints negotiate over
// DTLS-SRTP (RFC 5764): AEAD_AES_128_GCM (RFC 7714) and
// AES128_CM_HMAC_SHA1_80. Packets are sealed and opened in place, without
// allocating and without looking anything up: the state of each stream
// (its rollover counter and, received, its replay window) is a Stream the
// caller keeps with the stream.
//
// It exists for the relay's cost per packet: pion/srtp, which the Go SDK
// uses, keeps that state in maps keyed by SSRC and parses each header again
// to protect it. The cryptography is the standard library's AES, AES-GCM
// and HMAC-SHA1; the tests check every transform against pion/srtp.
package srtp
