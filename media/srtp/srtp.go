package srtp

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// Profile is an SRTP protection profile, by its DTLS-SRTP identifier.
type Profile uint16

// The profiles supported.
const (
	AES128CMHMACSHA1_80 Profile = 0x0001
	AEADAES128GCM       Profile = 0x0007
)

// KeyLen and SaltLen are the lengths of a profile's master key and salt.
func (p Profile) KeyLen() int { return 16 }

// SaltLen is the length of the profile's master salt.
func (p Profile) SaltLen() int {
	if p == AEADAES128GCM {
		return 12
	}
	return 14
}

// tagLen is the authentication tag the profile appends.
func (p Profile) tagLen() int {
	if p == AEADAES128GCM {
		return 16
	}
	return 10
}

// Overhead is the most protecting a packet adds to it, RTP or RTCP.
const Overhead = 16 + 4

// Errors of opening a packet. The caller drops it.
var (
	ErrShort    = errors.New("srtp: packet too short")
	ErrAuth     = errors.New("srtp: authentication failed")
	ErrReplayed = errors.New("srtp: packet replayed or too old")
	ErrRoom     = errors.New("srtp: no room in the buffer for the tag")
)

// KDF labels (RFC 3711 section 4.3.1).
const (
	labelRTPKey   = 0
	labelRTPAuth  = 1
	labelRTPSalt  = 2
	labelRTCPKey  = 3
	labelRTCPAuth = 4
	labelRTCPSalt = 5
)

// Context protects one direction of one session: the packets one side
// sends. It is not safe for concurrent use.
type Context struct {
	profile   Profile
	rtp, rtcp transform
	rtcpIndex uint32      // the last SRTCP index sent
	rtcpSeen  []rtcpState // received SRTCP, per SSRC
}

// rtcpState is the SRTCP replay window of one SSRC received.
type rtcpState struct {
	ssrc   uint32
	window replayWindow
}

// maxRTCPStreams bounds the SSRCs a received SRTCP window is kept for.
const maxRTCPStreams = 16

// transform is the keyed transform of RTP or of RTCP.
type transform struct {
	aead  cipher.AEAD  // GCM
	block cipher.Block // CM
	mac   hash.Hash    // CM: HMAC-SHA1 with the session authentication key
	salt  [14]byte
	iv    [16]byte
	ks    [16]byte
	sum   [sha1.Size]byte
	word  [4]byte  // the ROC or SRTCP index, authenticated after a packet
	aad   [12]byte // GCM SRTCP's additional data; a field so that it does not escape
}

// NewContext keys a context with a master key and salt from DTLS-SRTP.
func NewContext(profile Profile, masterKey, masterSalt []byte) (*Context, error) {
	if profile != AEADAES128GCM && profile != AES128CMHMACSHA1_80 {
		return nil, fmt.Errorf("srtp: profile %#04x not supported", uint16(profile))
	}
	if len(masterKey) != profile.KeyLen() || len(masterSalt) != profile.SaltLen() {
		return nil, fmt.Errorf("srtp: master key of %d bytes and salt of %d, want %d and %d",
			len(masterKey), len(masterSalt), profile.KeyLen(), profile.SaltLen())
	}
	kdf, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("srtp: %w", err)
	}
	c := &Context{profile: profile}
	for _, t := range []struct {
		tr                  *transform
		key, auth, saltName byte
	}{{&c.rtp, labelRTPKey, labelRTPAuth, labelRTPSalt}, {&c.rtcp, labelRTCPKey, labelRTCPAuth, labelRTCPSalt}} {
		key := derive(kdf, masterSalt, t.key, 16)
		block, err := aes.NewCipher(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("srtp: %w", err)
		}
		salt := derive(kdf, masterSalt, t.saltName, profile.SaltLen())
		copy(t.tr.salt[:], salt)
		clear(salt)
		if profile == AEADAES128GCM {
			if t.tr.aead, err = cipher.NewGCM(block); err != nil {
				return nil, fmt.Errorf("srtp: %w", err)
			}
			continue
		}
		auth := derive(kdf, masterSalt, t.auth, 20)
		t.tr.block, t.tr.mac = block, hmac.New(sha1.New, auth)
		clear(auth)
	}
	return c, nil
}

// derive is the AES-CM key derivation function (RFC 3711 section 4.3.3)
// with a key derivation rate of 0, as DTLS-SRTP uses.
func derive(kdf cipher.Block, masterSalt []byte, label byte, n int) []byte {
	var in, block [16]byte
	copy(in[:], masterSalt)
	in[7] ^= label
	out := make([]byte, 0, n+15)
	for i := uint16(0); len(out) < n; i++ {
		binary.BigEndian.PutUint16(in[14:], i)
		kdf.Encrypt(block[:], in[:])
		out = append(out, block[:]...)
	}
	clear(block[:])
	return out[:n]
}

// Stream is the state of one SSRC's RTP in one direction: its rollover
// counter and highest sequence number, and for a received stream the
// replay window. The zero value is a stream not yet seen.
type Stream struct {
	started bool
	roc     uint32
	highest uint16
	window  replayWindow
}

// index estimates the packet index of sequence number seq (RFC 3711
// appendix A): the rollover counter for seq relative to the highest seen.
func (s *Stream) index(seq uint16) uint64 {
	if !s.started {
		return uint64(seq)
	}
	roc := s.roc
	switch {
	case s.highest < 1<<15 && seq > s.highest && seq-s.highest > 1<<15 && roc > 0:
		roc-- // from before the last wraparound; before the first, a jump ahead
	case s.highest >= 1<<15 && seq < s.highest && s.highest-seq > 1<<15:
		roc++ // past the next wraparound
	}
	return uint64(roc)<<16 | uint64(seq)
}

// update records a packet of index i as sent or authentically received.
func (s *Stream) update(i uint64) {
	if !s.started || i > uint64(s.roc)<<16|uint64(s.highest) {
		s.started, s.roc, s.highest = true, uint32(i>>16), uint16(i)
	}
}

// replayWindow remembers which of the last 64 indexes were received.
type replayWindow struct {
	top  uint64 // highest index accepted
	bits uint64 // bit k: top-k was accepted
	any  bool
}

// fresh reports whether index i has not been received and is recent
// enough to tell.
func (w *replayWindow) fresh(i uint64) bool {
	switch {
	case !w.any || i > w.top:
		return true
	case w.top-i >= 64:
		return false
	}
	return w.bits&(1<<(w.top-i)) == 0
}

// accept marks index i received.
func (w *replayWindow) accept(i uint64) {
	switch {
	case !w.any:
		w.any, w.top, w.bits = true, i, 1
	case i > w.top:
		if d := i - w.top; d < 64 {
			w.bits = w.bits<<d | 1
		} else {
			w.bits = 1
		}
		w.top = i
	default:
		w.bits |= 1 << (w.top - i)
	}
}

// rtpIV writes the IV of an RTP packet into t.iv: GCM's 12 bytes (RFC
// 7714 section 8.1) or CM's 16 (RFC 3711 section 4.1.1).
func (t *transform) rtpIV(gcm bool, ssrc uint32, i uint64) {
	t.iv = [16]byte{}
	if gcm {
		binary.BigEndian.PutUint32(t.iv[2:], ssrc)
		binary.BigEndian.PutUint32(t.iv[6:], uint32(i>>16))
		binary.BigEndian.PutUint16(t.iv[10:], uint16(i))
		for k := range 12 {
			t.iv[k] ^= t.salt[k]
		}
		return
	}
	binary.BigEndian.PutUint32(t.iv[4:], ssrc)
	binary.BigEndian.PutUint32(t.iv[8:], uint32(i>>16))
	binary.BigEndian.PutUint16(t.iv[12:], uint16(i))
	for k := range 14 {
		t.iv[k] ^= t.salt[k]
	}
}

// rtcpIV writes the IV of an RTCP packet with SRTCP index i.
func (t *transform) rtcpIV(gcm bool, ssrc, i uint32) {
	t.iv = [16]byte{}
	if gcm {
		binary.BigEndian.PutUint32(t.iv[2:], ssrc)
		binary.BigEndian.PutUint32(t.iv[8:], i)
		for k := range 12 {
			t.iv[k] ^= t.salt[k]
		}
		return
	}
	binary.BigEndian.PutUint32(t.iv[4:], ssrc)
	binary.BigEndian.PutUint32(t.iv[10:], i)
	for k := range 14 {
		t.iv[k] ^= t.salt[k]
	}
}

// xorKeyStream applies AES-CM with the counter block in t.iv to b.
func (t *transform) xorKeyStream(b []byte) {
	for ctr := uint16(0); len(b) > 0; ctr++ {
		binary.BigEndian.PutUint16(t.iv[14:], ctr)
		t.block.Encrypt(t.ks[:], t.iv[:])
		n := subtle.XORBytes(b, b, t.ks[:])
		b = b[n:]
	}
}

// tag computes HMAC-SHA1 of b followed by t.word, in t.sum.
func (t *transform) tag(b []byte) []byte {
	t.mac.Reset()
	t.mac.Write(b)
	t.mac.Write(t.word[:])
	return t.mac.Sum(t.sum[:0])
}
