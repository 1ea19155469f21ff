package e2ee

import (
	"crypto/cipher"
	"crypto/hkdf"
	"encoding/binary"
	"math/bits"
)

// maxHeaderSize is the longest SFrame header: config byte, 8-byte KID,
// 8-byte CTR.
const maxHeaderSize = 17

// appendHeader appends the RFC 9605 §4.3 encoding of kid and ctr to dst.
func appendHeader(dst []byte, kid, ctr uint64) []byte {
	var config byte
	kidLen, ctrLen := 0, 0
	if kid < 8 {
		config = byte(kid) << 4
	} else {
		kidLen = byteLen(kid)
		config = 0x80 | byte(kidLen-1)<<4
	}
	if ctr < 8 {
		config |= byte(ctr)
	} else {
		ctrLen = byteLen(ctr)
		config |= 0x08 | byte(ctrLen-1)
	}
	dst = append(dst, config)
	dst = appendUint(dst, kid, kidLen)
	return appendUint(dst, ctr, ctrLen)
}

func byteLen(v uint64) int { return (bits.Len64(v) + 7) / 8 }

func appendUint(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// parseHeader decodes the SFrame header at the start of b and returns its
// KID, CTR and length.
func parseHeader(b []byte) (kid, ctr uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, 0, false
	}
	config := b[0]
	n = 1
	if config&0x80 == 0 {
		kid = uint64(config>>4) & 0x07
	} else {
		l := int(config>>4&0x07) + 1
		if len(b) < n+l {
			return 0, 0, 0, false
		}
		kid = readUint(b[n : n+l])
		n += l
	}
	if config&0x08 == 0 {
		ctr = uint64(config & 0x07)
	} else {
		l := int(config&0x07) + 1
		if len(b) < n+l {
			return 0, 0, 0, false
		}
		ctr = readUint(b[n : n+l])
		n += l
	}
	return kid, ctr, n, true
}

func readUint(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// sframeKey is the derived key material of one (base key, KID) pair: the
// AEAD, built once, and the salt.
type sframeKey struct {
	kid  uint64
	aead cipher.AEAD
	salt [nonceSize]byte
	// nonce is scratch space for the nonce of the frame being processed,
	// so that it does not escape to the heap; callers serialise use.
	nonce [nonceSize]byte
}

// deriveSFrameKey implements derive_key_salt of RFC 9605 §4.4.2.
func deriveSFrameKey(suite CipherSuite, kid uint64, baseKey []byte) (*sframeKey, error) {
	p, ok := suite.params()
	if !ok {
		return nil, ErrUnknownSuite
	}
	secret, err := hkdf.Extract(p.hash, baseKey, nil)
	if err != nil {
		return nil, err
	}
	defer clear(secret)
	key, err := hkdf.Expand(p.hash, secret, sframeLabel("SFrame 1.0 Secret key ", kid, suite), p.nk)
	if err != nil {
		return nil, err
	}
	defer clear(key)
	salt, err := hkdf.Expand(p.hash, secret, sframeLabel("SFrame 1.0 Secret salt ", kid, suite), nonceSize)
	if err != nil {
		return nil, err
	}
	aead, err := p.newAEAD(key)
	if err != nil {
		return nil, err
	}
	k := &sframeKey{kid: kid, aead: aead}
	copy(k.salt[:], salt)
	clear(salt)
	return k, nil
}

func sframeLabel(prefix string, kid uint64, suite CipherSuite) string {
	b := make([]byte, 0, len(prefix)+10)
	b = append(b, prefix...)
	b = binary.BigEndian.AppendUint64(b, kid)
	b = binary.BigEndian.AppendUint16(b, uint16(suite))
	return string(b)
}

// ratchetBaseKey is the SFrame ratchet of RFC 9605 §5.1.
func ratchetBaseKey(suite CipherSuite, baseKey []byte) ([]byte, error) {
	p, ok := suite.params()
	if !ok {
		return nil, ErrUnknownSuite
	}
	prk, err := hkdf.Extract(p.hash, baseKey, nil)
	if err != nil {
		return nil, err
	}
	defer clear(prk)
	return hkdf.Expand(p.hash, prk, "SFrame 1.0 Ratchet", p.nh)
}

// setNonce computes salt XOR CTR into k.nonce and returns it.
func (k *sframeKey) setNonce(ctr uint64) []byte {
	k.nonce = k.salt
	var c [8]byte
	binary.BigEndian.PutUint64(c[:], ctr)
	for i := range c {
		k.nonce[nonceSize-8+i] ^= c[i]
	}
	return k.nonce[:]
}

// seal appends header || AEAD(plaintext) to dst. metadata, if any, is
// authenticated after the header (RFC 9605 §4.4.3); Sotto frames use none.
func (k *sframeKey) seal(dst []byte, ctr uint64, metadata, plaintext []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, k.kid, ctr)
	aad := dst[start:]
	if len(metadata) > 0 {
		aad = append(append([]byte(nil), aad...), metadata...)
	}
	return k.aead.Seal(dst, k.setNonce(ctr), plaintext, aad)
}

// open authenticates and decrypts the frame whose header (hdrLen bytes,
// with counter ctr) starts frame, appending the plaintext to dst.
func (k *sframeKey) open(dst []byte, ctr uint64, hdrLen int, metadata, frame []byte) ([]byte, error) {
	aad := frame[:hdrLen]
	if len(metadata) > 0 {
		aad = append(append([]byte(nil), aad...), metadata...)
	}
	out, err := k.aead.Open(dst, k.setNonce(ctr), frame[hdrLen:], aad)
	if err != nil {
		return dst, ErrAuthFailed
	}
	return out, nil
}
