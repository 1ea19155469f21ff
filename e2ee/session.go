package e2ee

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"
)

// Envelope payload framing (docs/PROTOCOL.md §3).
const (
	payloadVersion  = 0x01
	typeInit        = 0x01 // pqxdh-init
	typeRatchet     = 0x02
	headerSize      = 32 + 4 + 4 // dh, pn, n
	adSize          = 2 * PublicIdentitySize
	messageTagSize  = 16
	minRatchetBytes = headerSize + messageTagSize
)

// Bounds of the Double Ratchet (docs/PROTOCOL.md §5.3).
const (
	// MaxSkip is the most message keys one message may make a chain skip.
	MaxSkip = 1000
	// MaxSkippedKeys is the most skipped message keys a session stores.
	MaxSkippedKeys = 2000
	// SkippedKeyLifetime is how long a skipped message key is kept.
	SkippedKeyLifetime = 10 * time.Minute
)

const (
	ratchetInfo     = "Sotto ratchet v1"
	messageKeysInfo = "Sotto message keys v1"
)

var zeroSalt [32]byte

// Session is a Double Ratchet session with one peer device, started by
// PQXDH (pqxdh.go). It turns plaintexts into envelope payloads and back. A session is
// not safe for concurrent use.
type Session struct {
	random    io.Reader
	peer      PublicIdentity
	ad        [adSize]byte
	initiator bool
	// lastResortKEM: PQXDH encapsulated to the responder's last-resort KEM
	// prekey, not to a one-time one.
	lastResortKEM bool
	// initPrefix is the pqxdh-init body before the ratchet message: the
	// initiator repeats it until the responder answers; the responder keeps
	// it to recognise the repeats.
	initPrefix []byte
	answered   bool
	st         ratchetState
}

type ratchetState struct {
	dhs            *ecdh.PrivateKey
	dhr            []byte
	rk, cks, ckr   [32]byte
	hasCKs, hasCKr bool
	ns, nr, pn     uint32
	skipped        skippedKeys
}

func (s *Session) setAD(initiator, responder PublicIdentity) {
	copy(s.ad[:PublicIdentitySize], initiator.b[:])
	copy(s.ad[PublicIdentitySize:], responder.b[:])
}

// PeerIdentity returns the identity of the session's peer.
func (s *Session) PeerIdentity() PublicIdentity { return s.peer }

// Initiator reports whether this side started the session with PQXDH.
func (s *Session) Initiator() bool { return s.initiator }

// LastResortKEM reports whether the session's PQXDH encapsulated to the
// responder's last-resort KEM prekey, because the directory had no
// one-time KEM prekey for the initiator. Such a session is as private as
// any; it shows a device whose one-time prekeys run out or are withheld.
func (s *Session) LastResortKEM() bool { return s.lastResortKEM }

// Encrypt encrypts plaintext for the peer and returns the envelope payload.
func (s *Session) Encrypt(plaintext []byte) ([]byte, error) {
	if !s.st.hasCKs {
		return nil, fmt.Errorf("encrypt: session has no sending chain yet: %w", ErrInvalidMessage)
	}
	if s.st.ns == math.MaxUint32 {
		return nil, fmt.Errorf("encrypt: sending chain exhausted; start a new session: %w", ErrInvalidMessage)
	}
	var mk [32]byte
	mk, s.st.cks = kdfCK(s.st.cks)
	defer clear(mk[:])
	out := make([]byte, 0, 2+initPrefixSize+headerSize+len(plaintext)+messageTagSize)
	out = append(out, payloadVersion)
	if s.initiator && !s.answered {
		out = append(out, typeInit)
		out = append(out, s.initPrefix...)
	} else {
		out = append(out, typeRatchet)
	}
	hdr := len(out)
	out = append(out, s.st.dhs.PublicKey().Bytes()...)
	out = binary.BigEndian.AppendUint32(out, s.st.pn)
	out = binary.BigEndian.AppendUint32(out, s.st.ns)
	s.st.ns++
	return sealMessage(out, &mk, plaintext, s.ad[:], out[hdr:])
}

// Decrypt authenticates and decrypts an envelope payload from the peer.
// now dates skipped message keys and expires old ones. A payload that
// fails leaves the session unchanged. A pqxdh-init that starts a new
// session returns ErrOtherSession: give it to AcceptSession.
func (s *Session) Decrypt(payload []byte, now time.Time) ([]byte, error) {
	typ, body, err := parsePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if typ == typeInit {
		if len(body) < initPrefixSize || s.initiator || subtle.ConstantTimeCompare(body[:initPrefixSize], s.initPrefix) != 1 {
			return nil, fmt.Errorf("decrypt: %w", ErrOtherSession)
		}
		body = body[initPrefixSize:]
	}
	pt, err := s.decryptMessage(body, now)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	s.answered = true
	return pt, nil
}

// IsPayload reports whether envelope data is framed as a payload of this
// protocol (docs/PROTOCOL.md §3: version 0x01, then type pqxdh-init or
// ratchet), which clients give to their sessions. Applications must not
// send data of their own that starts that way.
func IsPayload(data []byte) bool {
	_, _, err := parsePayload(data)
	return err == nil
}

func parsePayload(p []byte) (typ byte, body []byte, err error) {
	if len(p) < 2 || p[0] != payloadVersion || (p[1] != typeInit && p[1] != typeRatchet) {
		return 0, nil, ErrInvalidMessage
	}
	return p[1], p[2:], nil
}

// decryptMessage is RatchetDecrypt. The chains move on a copy of the
// state and the keys it skips wait aside, both committed only if the
// message authenticates; expired skipped keys go whatever the message.
func (s *Session) decryptMessage(msg []byte, now time.Time) ([]byte, error) {
	if len(msg) < minRatchetBytes {
		return nil, ErrInvalidMessage
	}
	s.st.skipped.expire(now)
	header := msg[:headerSize]
	var id skipID
	copy(id[:], header[:32])
	binary.BigEndian.PutUint32(id[32:], binary.BigEndian.Uint32(header[36:40]))
	if sk := s.st.skipped.lookup(id); sk != nil {
		pt, err := openMessage(&sk.mk, msg[headerSize:], s.ad[:], header)
		if err != nil {
			return nil, ErrDecrypt
		}
		s.st.skipped.remove(sk)
		return pt, nil
	}
	st := s.st
	var skipped []*skippedKey
	pt, err := s.advanceAndOpen(&st, msg, now, &skipped)
	if err != nil {
		zeroKeys(skipped)
		return nil, err
	}
	s.st = st
	s.st.skipped.add(skipped)
	return pt, nil
}

// advanceAndOpen is the part of RatchetDecrypt that moves the chains; the
// keys it skips are appended to skipped.
func (s *Session) advanceAndOpen(st *ratchetState, msg []byte, now time.Time, skipped *[]*skippedKey) ([]byte, error) {
	header := msg[:headerSize]
	dh := header[:32]
	if st.dhr == nil || subtle.ConstantTimeCompare(dh, st.dhr) != 1 {
		if err := st.skip(binary.BigEndian.Uint32(header[32:36]), now, skipped); err != nil {
			return nil, err
		}
		if err := st.dhRatchet(dh, s.random); err != nil {
			return nil, err
		}
	}
	if err := st.skip(binary.BigEndian.Uint32(header[36:40]), now, skipped); err != nil {
		return nil, err
	}
	var mk [32]byte
	mk, st.ckr = kdfCK(st.ckr)
	defer clear(mk[:])
	st.nr++
	pt, err := openMessage(&mk, msg[headerSize:], s.ad[:], header)
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// skip is SkipMessageKeys: it derives the receiving chain's keys up to
// until and appends them to skipped.
func (st *ratchetState) skip(until uint32, now time.Time, skipped *[]*skippedKey) error {
	if uint64(st.nr)+MaxSkip < uint64(until) {
		return ErrTooManySkipped
	}
	if !st.hasCKr {
		return nil
	}
	for st.nr < until {
		k := &skippedKey{stored: now}
		copy(k.id[:], st.dhr)
		binary.BigEndian.PutUint32(k.id[32:], st.nr)
		k.mk, st.ckr = kdfCK(st.ckr)
		*skipped = append(*skipped, k)
		st.nr++
	}
	return nil
}

// dhRatchet is DHRatchet of the specification.
func (st *ratchetState) dhRatchet(dh []byte, random io.Reader) error {
	st.pn, st.ns, st.nr = st.ns, 0, 0
	st.dhr = append([]byte(nil), dh...)
	pub, _ := ecdh.X25519().NewPublicKey(st.dhr)
	out, err := x25519(st.dhs, pub)
	if err != nil {
		return err
	}
	st.rk, st.ckr = kdfRK(st.rk[:], out)
	st.hasCKr = true
	clear(out)
	if st.dhs, err = newX25519(random); err != nil {
		return err
	}
	if out, err = x25519(st.dhs, pub); err != nil {
		return err
	}
	st.rk, st.cks = kdfRK(st.rk[:], out)
	st.hasCKs = true
	clear(out)
	return nil
}

func kdfRK(rk, dh []byte) (newRK, ck [32]byte) {
	okm, err := hkdf.Key(sha256.New, dh, rk, ratchetInfo, 64)
	if err != nil {
		panic(err) // 64 bytes of SHA-256 HKDF cannot fail
	}
	copy(newRK[:], okm[:32])
	copy(ck[:], okm[32:])
	clear(okm)
	return newRK, ck
}

func kdfCK(ck [32]byte) (mk, next [32]byte) {
	m := hmac.New(sha256.New, ck[:])
	m.Write([]byte{0x01})
	m.Sum(mk[:0])
	m.Reset()
	m.Write([]byte{0x02})
	m.Sum(next[:0])
	return mk, next
}

func messageAEAD(mk *[32]byte) (cipher.AEAD, []byte) {
	okm, err := hkdf.Key(sha256.New, mk[:], zeroSalt[:], messageKeysInfo, 44)
	if err != nil {
		panic(err) // 44 bytes of SHA-256 HKDF cannot fail
	}
	defer clear(okm[:32])
	block, _ := aes.NewCipher(okm[:32]) // 32-byte key: cannot fail
	aead, _ := cipher.NewGCM(block)
	return aead, okm[32:44]
}

func sealMessage(dst []byte, mk *[32]byte, plaintext, ad, header []byte) ([]byte, error) {
	aead, nonce := messageAEAD(mk)
	aad := append(append(make([]byte, 0, len(ad)+len(header)), ad...), header...)
	return aead.Seal(dst, nonce, plaintext, aad), nil
}

func openMessage(mk *[32]byte, ciphertext, ad, header []byte) ([]byte, error) {
	aead, nonce := messageAEAD(mk)
	aad := append(append(make([]byte, 0, len(ad)+len(header)), ad...), header...)
	return aead.Open(nil, nonce, ciphertext, aad)
}
