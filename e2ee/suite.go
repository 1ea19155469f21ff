package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
)

// CipherSuite is an SFrame cipher suite from the RFC 9605 registry.
type CipherSuite uint16

// The cipher suites of RFC 9605 §4.5. AES128GCMSHA256 is Sotto's default.
const (
	AES128CTRHMACSHA256_80 CipherSuite = 0x0001
	AES128CTRHMACSHA256_64 CipherSuite = 0x0002
	AES128CTRHMACSHA256_32 CipherSuite = 0x0003
	AES128GCMSHA256        CipherSuite = 0x0004
	AES256GCMSHA512        CipherSuite = 0x0005

	DefaultCipherSuite = AES128GCMSHA256
)

// nonceSize is Nn, the same for every suite.
const nonceSize = 12

type suiteParams struct {
	name     string
	hash     func() hash.Hash
	nh       int // hash output size: base keys and ratchet output
	nk       int // AEAD key size
	nt       int // tag size
	ctrHMAC  bool
	encKeyNk int // AES key size inside nk for the CTR-HMAC suites
}

func (s CipherSuite) params() (suiteParams, bool) {
	switch s {
	case AES128CTRHMACSHA256_80:
		return suiteParams{"AES_128_CTR_HMAC_SHA256_80", sha256.New, 32, 48, 10, true, 16}, true
	case AES128CTRHMACSHA256_64:
		return suiteParams{"AES_128_CTR_HMAC_SHA256_64", sha256.New, 32, 48, 8, true, 16}, true
	case AES128CTRHMACSHA256_32:
		return suiteParams{"AES_128_CTR_HMAC_SHA256_32", sha256.New, 32, 48, 4, true, 16}, true
	case AES128GCMSHA256:
		return suiteParams{"AES_128_GCM_SHA256_128", sha256.New, 32, 16, 16, false, 0}, true
	case AES256GCMSHA512:
		return suiteParams{"AES_256_GCM_SHA512_128", sha512.New, 64, 32, 16, false, 0}, true
	}
	return suiteParams{}, false
}

// Valid reports whether s is one of the five suites of RFC 9605.
func (s CipherSuite) Valid() bool { _, ok := s.params(); return ok }

// BaseKeySize is Nh, the length of a base key of this suite (0 if invalid).
func (s CipherSuite) BaseKeySize() int { p, _ := s.params(); return p.nh }

// Overhead is the tag length Nt that sealing adds besides the header.
func (s CipherSuite) Overhead() int { p, _ := s.params(); return p.nt }

func (s CipherSuite) String() string {
	if p, ok := s.params(); ok {
		return p.name
	}
	return fmt.Sprintf("CipherSuite(0x%04x)", uint16(s))
}

// newAEAD returns the suite's AEAD keyed with key (Nk bytes).
func (p suiteParams) newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != p.nk {
		return nil, errors.New("e2ee: wrong AEAD key size")
	}
	if p.ctrHMAC {
		block, err := aes.NewCipher(key[:p.encKeyNk])
		if err != nil {
			return nil, err
		}
		return &ctrHMAC{block: block, mac: hmac.New(sha256.New, key[p.encKeyNk:]), tagSize: p.nt}, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// ctrHMAC is the AES-CTR + HMAC-SHA256 AEAD of RFC 9605 §4.5.1 with a
// truncated tag. Unlike crypto/cipher's AEADs it is not safe for
// concurrent use (it reuses its HMAC state and scratch blocks, so that it
// allocates nothing); its users serialise calls.
type ctrHMAC struct {
	block   cipher.Block
	mac     hash.Hash
	tagSize int
	counter [aes.BlockSize]byte
	stream  [aes.BlockSize]byte
	lens    [24]byte
	sum     [sha256.Size]byte
}

func (c *ctrHMAC) NonceSize() int { return nonceSize }
func (c *ctrHMAC) Overhead() int  { return c.tagSize }

// tag computes the full HMAC of RFC 9605 §4.5.1 into c.sum.
func (c *ctrHMAC) tag(nonce, aad, ct []byte) []byte {
	m := c.mac
	m.Reset()
	binary.BigEndian.PutUint64(c.lens[0:], uint64(len(aad)))
	binary.BigEndian.PutUint64(c.lens[8:], uint64(len(ct)))
	binary.BigEndian.PutUint64(c.lens[16:], uint64(c.tagSize))
	m.Write(c.lens[:])
	m.Write(nonce)
	m.Write(aad)
	m.Write(ct)
	return m.Sum(c.sum[:0])[:c.tagSize]
}

// ctr is AES-CTR with the initial counter block nonce || 0x00000000 and a
// 32-bit block counter (WebCrypto's AES-CTR with length 32).
func (c *ctrHMAC) ctr(dst, src, nonce []byte) {
	copy(c.counter[:], nonce)
	binary.BigEndian.PutUint32(c.counter[nonceSize:], 0)
	for i := 0; i < len(src); i += aes.BlockSize {
		c.block.Encrypt(c.stream[:], c.counter[:])
		n := min(len(src)-i, aes.BlockSize)
		subtle.XORBytes(dst[i:i+n], src[i:i+n], c.stream[:n])
		binary.BigEndian.PutUint32(c.counter[nonceSize:], binary.BigEndian.Uint32(c.counter[nonceSize:])+1)
	}
	clear(c.stream[:])
}

func (c *ctrHMAC) Seal(dst, nonce, plaintext, additionalData []byte) []byte {
	if len(nonce) != nonceSize {
		panic("e2ee: wrong nonce size")
	}
	ret, out := sliceForAppend(dst, len(plaintext)+c.tagSize)
	ct := out[:len(plaintext)]
	c.ctr(ct, plaintext, nonce)
	copy(out[len(plaintext):], c.tag(nonce, additionalData, ct))
	return ret
}

func (c *ctrHMAC) Open(dst, nonce, ciphertext, additionalData []byte) ([]byte, error) {
	if len(nonce) != nonceSize || len(ciphertext) < c.tagSize {
		return nil, ErrAuthFailed
	}
	ct := ciphertext[:len(ciphertext)-c.tagSize]
	if subtle.ConstantTimeCompare(c.tag(nonce, additionalData, ct), ciphertext[len(ct):]) != 1 {
		return nil, ErrAuthFailed
	}
	ret, out := sliceForAppend(dst, len(ct))
	c.ctr(out, ct, nonce)
	return ret, nil
}

// sliceForAppend extends in by n bytes, reusing its capacity when it can,
// and returns the whole slice and the n new bytes.
func sliceForAppend(in []byte, n int) (head, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		head = in[:total]
	} else {
		head = make([]byte, total)
		copy(head, in)
	}
	return head, head[len(in):]
}
