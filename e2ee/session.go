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
	typeX3DHInit    = 0x01
	typeRatchet     = 0x02
	initPrefixSize  = PublicIdentitySize + 32 + 4 + 1 + 4 // IK_A, EK_A, spk_id, opk_flag, opk_id
	headerSize      = 32 + 4 + 4                          // dh, pn, n
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
	x3dhInfo        = "Sotto X3DH v1"
	ratchetInfo     = "Sotto ratchet v1"
	messageKeysInfo = "Sotto message keys v1"
)

var zeroSalt [32]byte

// Session is a Double Ratchet session with one peer device, started by
// X3DH. It turns plaintexts into envelope payloads and back. A session is
// not safe for concurrent use.
type Session struct {
	random    io.Reader
	peer      PublicIdentity
	ad        [adSize]byte
	initiator bool
	// initPrefix is the x3dh-init body before the ratchet message: the
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

// InitiateSession runs the initiator's half of X3DH against a peer's
// bundle. The bundle's signatures are checked; compare PeerIdentity with
// what you knew of the peer (CheckIdentity). random nil means crypto/rand.
func InitiateSession(random io.Reader, local *Identity, bundle PrekeyBundle) (*Session, error) {
	random = randOrDefault(random)
	peer, spk, opk, err := verifyBundle(bundle)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	ek, err := newX25519(random)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	dhs := []dhPair{{local.dhPriv, spk}, {ek, peer.dhPublic()}, {ek, spk}}
	if opk != nil {
		dhs = append(dhs, dhPair{ek, opk})
	}
	sk, err := x3dhSecret(dhs)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	defer clear(sk)
	s := &Session{random: random, peer: peer, initiator: true}
	s.setAD(local.Public(), peer)

	prefix := make([]byte, 0, initPrefixSize)
	prefix = append(prefix, local.pub.b[:]...)
	prefix = append(prefix, ek.PublicKey().Bytes()...)
	prefix = binary.BigEndian.AppendUint32(prefix, bundle.SignedPrekey.ID)
	if bundle.OneTimePrekey != nil {
		prefix = append(prefix, 1)
		prefix = binary.BigEndian.AppendUint32(prefix, bundle.OneTimePrekey.ID)
	} else {
		prefix = append(prefix, 0, 0, 0, 0, 0)
	}
	s.initPrefix = prefix

	// RatchetInitAlice.
	if s.st.dhs, err = newX25519(random); err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	s.st.dhr = spk.Bytes()
	dh, err := x25519(s.st.dhs, spk)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	s.st.rk, s.st.cks = kdfRK(sk, dh)
	s.st.hasCKs = true
	s.st.skipped = newSkippedKeys()
	return s, nil
}

type dhPair struct {
	priv *ecdh.PrivateKey
	pub  *ecdh.PublicKey
}

// x3dhSecret computes SK from the DH pairs, in order DH1..DH4.
func x3dhSecret(pairs []dhPair) ([]byte, error) {
	ikm := make([]byte, 32, 32*5)
	for i := range ikm {
		ikm[i] = 0xFF
	}
	defer clear(ikm)
	for _, p := range pairs {
		out, err := x25519(p.priv, p.pub)
		if err != nil {
			return nil, err
		}
		ikm = append(ikm, out...)
		clear(out)
	}
	return hkdf.Key(sha256.New, ikm, zeroSalt[:], x3dhInfo, 32)
}

func (s *Session) setAD(initiator, responder PublicIdentity) {
	copy(s.ad[:PublicIdentitySize], initiator.b[:])
	copy(s.ad[PublicIdentitySize:], responder.b[:])
}

// AcceptSession runs the responder's half of X3DH on an x3dh-init payload
// and decrypts the message it carries. On success the one-time prekey it
// used is deleted from the store. Compare the session's PeerIdentity with
// what you knew of the peer (CheckIdentity).
func AcceptSession(store *PrekeyStore, payload []byte, now time.Time) (*Session, []byte, error) {
	typ, body, err := parsePayload(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	if typ != typeX3DHInit || len(body) < initPrefixSize+minRatchetBytes {
		return nil, nil, fmt.Errorf("accept session: not an x3dh-init: %w", ErrInvalidMessage)
	}
	peer, err := ParsePublicIdentity(body[:PublicIdentitySize])
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	var ekBytes [32]byte
	copy(ekBytes[:], body[PublicIdentitySize:PublicIdentitySize+32])
	ek, _ := ecdh.X25519().NewPublicKey(ekBytes[:])
	spkID := binary.BigEndian.Uint32(body[160:164])
	opkFlag, opkID := body[164], binary.BigEndian.Uint32(body[165:169])
	spk := store.signedPrekey(spkID)
	if spk == nil {
		return nil, nil, fmt.Errorf("accept session: signed prekey %d: %w", spkID, ErrUnknownPrekey)
	}
	if store.accepted[spkID][ekBytes] {
		return nil, nil, fmt.Errorf("accept session: %w", ErrReplayedInit)
	}
	local := store.identity
	pairs := []dhPair{{spk, peer.dhPublic()}, {local.dhPriv, ek}, {spk, ek}}
	switch opkFlag {
	case 0:
		if opkID != 0 {
			return nil, nil, fmt.Errorf("accept session: %w", ErrInvalidMessage)
		}
	case 1:
		opk := store.oneTime[opkID]
		if opk == nil {
			return nil, nil, fmt.Errorf("accept session: one-time prekey %d: %w", opkID, ErrUnknownPrekey)
		}
		pairs = append(pairs, dhPair{opk, ek})
	default:
		return nil, nil, fmt.Errorf("accept session: %w", ErrInvalidMessage)
	}
	sk, err := x3dhSecret(pairs)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	defer clear(sk)
	s := &Session{random: store.random, peer: peer, initPrefix: append([]byte(nil), body[:initPrefixSize]...)}
	s.setAD(peer, local.Public())
	// RatchetInitBob.
	s.st.dhs = spk
	copy(s.st.rk[:], sk)
	s.st.skipped = newSkippedKeys()
	pt, err := s.decryptMessage(body[initPrefixSize:], now)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	if opkFlag == 1 {
		delete(store.oneTime, opkID)
	}
	if store.accepted[spkID] == nil {
		store.accepted[spkID] = map[[32]byte]bool{}
	}
	store.accepted[spkID][ekBytes] = true
	return s, pt, nil
}

// PeerIdentity returns the identity of the session's peer.
func (s *Session) PeerIdentity() PublicIdentity { return s.peer }

// Initiator reports whether this side started the session with X3DH.
func (s *Session) Initiator() bool { return s.initiator }

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
		out = append(out, typeX3DHInit)
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
// fails leaves the session unchanged. An x3dh-init that starts a new
// session returns ErrOtherSession: give it to AcceptSession.
func (s *Session) Decrypt(payload []byte, now time.Time) ([]byte, error) {
	typ, body, err := parsePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if typ == typeX3DHInit {
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
// protocol (docs/PROTOCOL.md §3: version 0x01, then type x3dh-init or
// ratchet), which clients give to their sessions. Applications must not
// send data of their own that starts that way.
func IsPayload(data []byte) bool {
	_, _, err := parsePayload(data)
	return err == nil
}

func parsePayload(p []byte) (typ byte, body []byte, err error) {
	if len(p) < 2 || p[0] != payloadVersion || (p[1] != typeX3DHInit && p[1] != typeRatchet) {
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
