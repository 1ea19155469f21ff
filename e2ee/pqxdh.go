package e2ee

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// pqxdhInfo names the whole suite, as PQXDH's KDF asks: the application,
// the curve, the hash and the KEM (docs/PROTOCOL.md §4.1).
const pqxdhInfo = "Sotto_PQXDH_CURVE25519_SHA-256_ML-KEM-768"

// The pqxdh-init body (docs/PROTOCOL.md §4.2): IK_A, EK_A, spk_id,
// opk_flag, opk_id, kem_id, kem_ct, then the first ratchet message.
const (
	initSPKOffset  = PublicIdentitySize + 32
	initOPKOffset  = initSPKOffset + 4
	initKEMOffset  = initOPKOffset + 1 + 4
	initCTOffset   = initKEMOffset + 4
	initPrefixSize = initCTOffset + KEMCiphertextSize
)

// initMessage is a parsed pqxdh-init body. Its fields alias the body.
type initMessage struct {
	identity  []byte // IK_A, not verified yet
	ephemeral [32]byte
	spkID     uint32
	hasOPK    bool
	opkID     uint32
	kemID     uint32
	kemCT     []byte
	prefix    []byte // everything before message
	message   []byte // the first Double Ratchet message
}

// parseInit splits a pqxdh-init body into its fields. It checks the layout
// only; keys are checked by AcceptSession.
func parseInit(body []byte) (initMessage, error) {
	var m initMessage
	if len(body) < initPrefixSize+minRatchetBytes {
		return m, fmt.Errorf("pqxdh-init of %d bytes: %w", len(body), ErrInvalidMessage)
	}
	m.identity = body[:PublicIdentitySize]
	copy(m.ephemeral[:], body[PublicIdentitySize:initSPKOffset])
	m.spkID = binary.BigEndian.Uint32(body[initSPKOffset:])
	flag, opkID := body[initOPKOffset], binary.BigEndian.Uint32(body[initOPKOffset+1:])
	switch {
	case flag == 1:
		m.hasOPK, m.opkID = true, opkID
	case flag != 0 || opkID != 0:
		return m, fmt.Errorf("pqxdh-init: one-time prekey flag %d, id %d: %w", flag, opkID, ErrInvalidMessage)
	}
	m.kemID = binary.BigEndian.Uint32(body[initKEMOffset:])
	m.kemCT = body[initCTOffset:initPrefixSize]
	m.prefix = body[:initPrefixSize]
	m.message = body[initPrefixSize:]
	return m, nil
}

// appendInitPrefix appends the pqxdh-init fields before the ratchet
// message.
func appendInitPrefix(b []byte, ik PublicIdentity, ek []byte, spkID uint32, opk *OneTimePrekey, kemID uint32, kemCT []byte) []byte {
	b = append(b, ik.b[:]...)
	b = append(b, ek...)
	b = binary.BigEndian.AppendUint32(b, spkID)
	if opk != nil {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint32(b, opk.ID)
	} else {
		b = append(b, 0, 0, 0, 0, 0)
	}
	b = binary.BigEndian.AppendUint32(b, kemID)
	return append(b, kemCT...)
}

// encapsulator is ML-KEM-768 encapsulation. Sessions use crypto/mlkem's
// (its randomness is its own); the test vectors use the derandomized form.
type encapsulator func(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error)

func encapsulate(ek *mlkem.EncapsulationKey768) (sharedKey, ciphertext []byte, err error) {
	sharedKey, ciphertext = ek.Encapsulate()
	return sharedKey, ciphertext, nil
}

// InitiateSession runs the initiator's half of PQXDH against a peer's
// bundle: it encapsulates to the bundle's one-time KEM prekey if there is
// one, else to its last-resort KEM prekey. The bundle's signatures are
// checked, and a bundle without a valid signed KEM prekey is refused with
// ErrNoKEMPrekey. Compare PeerIdentity with what you knew of the peer
// (CheckIdentity). random nil means crypto/rand; the encapsulation draws
// its own randomness from crypto/rand.
func InitiateSession(random io.Reader, local *Identity, bundle PrekeyBundle) (*Session, error) {
	return initiateSession(random, local, bundle, encapsulate)
}

func initiateSession(random io.Reader, local *Identity, bundle PrekeyBundle, encaps encapsulator) (*Session, error) {
	random = randOrDefault(random)
	v, err := verifyBundle(bundle)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	ek, err := newX25519(random)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	ss, ct, err := encaps(v.kem)
	if err != nil {
		return nil, fmt.Errorf("initiate session: encapsulate: %w", err)
	}
	dhs := []dhPair{{local.dhPriv, v.spk}, {ek, v.peer.dhPublic()}, {ek, v.spk}}
	if v.opk != nil {
		dhs = append(dhs, dhPair{ek, v.opk})
	}
	sk, err := pqxdhSecret(dhs, ss)
	clear(ss)
	if err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	defer clear(sk)
	s := &Session{random: random, peer: v.peer, initiator: true, lastResortKEM: v.lastResortKEM}
	s.setAD(local.Public(), v.peer)
	s.initPrefix = appendInitPrefix(make([]byte, 0, initPrefixSize), local.pub, ek.PublicKey().Bytes(), bundle.SignedPrekey.ID, bundle.OneTimePrekey, v.kemID, ct)

	// RatchetInitAlice.
	if s.st.dhs, err = newX25519(random); err != nil {
		return nil, fmt.Errorf("initiate session: %w", err)
	}
	s.st.dhr = v.spk.Bytes()
	dh, err := x25519(s.st.dhs, v.spk)
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

// pqxdhSecret computes SK from the DH pairs, in order DH1..DH4, and the
// KEM shared secret SS.
func pqxdhSecret(pairs []dhPair, ss []byte) ([]byte, error) {
	ikm := make([]byte, 32, 32*5+mlkem.SharedKeySize)
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
	ikm = append(ikm, ss...)
	return hkdf.Key(sha256.New, ikm, zeroSalt[:], pqxdhInfo, 32)
}

// AcceptSession runs the responder's half of PQXDH on a pqxdh-init payload
// and decrypts the message it carries. On success the one-time prekeys it
// used (EC and KEM) are deleted from the store, the KEM one zeroed. A
// replayed initial message is refused with ErrReplayedInit. Compare the
// session's PeerIdentity with what you knew of the peer (CheckIdentity).
func AcceptSession(store *PrekeyStore, payload []byte, now time.Time) (*Session, []byte, error) {
	typ, body, err := parsePayload(payload)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	if typ != typeInit {
		return nil, nil, fmt.Errorf("accept session: not a pqxdh-init: %w", ErrInvalidMessage)
	}
	m, err := parseInit(body)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	peer, err := ParsePublicIdentity(m.identity)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	ek, _ := ecdh.X25519().NewPublicKey(m.ephemeral[:]) // any 32 bytes are an X25519 public key
	spk := store.signedPrekey(m.spkID)
	if spk == nil {
		return nil, nil, fmt.Errorf("accept session: signed prekey %d: %w", m.spkID, ErrUnknownPrekey)
	}
	if store.accepted[m.spkID][m.ephemeral] {
		return nil, nil, fmt.Errorf("accept session: %w", ErrReplayedInit)
	}
	local := store.identity
	pairs := []dhPair{{spk, peer.dhPublic()}, {local.dhPriv, ek}, {spk, ek}}
	if m.hasOPK {
		opk := store.oneTime[m.opkID]
		if opk == nil {
			return nil, nil, fmt.Errorf("accept session: one-time prekey %d: %w", m.opkID, ErrUnknownPrekey)
		}
		pairs = append(pairs, dhPair{opk, ek})
	}
	seed, oneTimeKEM := store.kemPrekey(m.kemID)
	if seed == nil {
		return nil, nil, fmt.Errorf("accept session: KEM prekey %d: %w", m.kemID, ErrUnknownPrekey)
	}
	ss, err := decapsulate(seed, m.kemCT)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	sk, err := pqxdhSecret(pairs, ss)
	clear(ss)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	defer clear(sk)
	s := &Session{random: store.random, peer: peer, initPrefix: append([]byte(nil), m.prefix...), lastResortKEM: !oneTimeKEM}
	s.setAD(peer, local.Public())
	// RatchetInitBob.
	s.st.dhs = spk
	copy(s.st.rk[:], sk)
	s.st.skipped = newSkippedKeys()
	pt, err := s.decryptMessage(m.message, now)
	if err != nil {
		return nil, nil, fmt.Errorf("accept session: %w", err)
	}
	if m.hasOPK {
		delete(store.oneTime, m.opkID)
	}
	if oneTimeKEM {
		clear(seed[:])
		delete(store.oneTimeKEM, m.kemID)
	}
	if store.accepted[m.spkID] == nil {
		store.accepted[m.spkID] = map[[32]byte]bool{}
	}
	store.accepted[m.spkID][m.ephemeral] = true
	return s, pt, nil
}

// decapsulate expands a KEM prekey's seed and decapsulates ct with it.
func decapsulate(seed *kemSeed, ct []byte) ([]byte, error) {
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		return nil, fmt.Errorf("KEM prekey: %w", err)
	}
	ss, err := dk.Decapsulate(ct)
	if err != nil {
		return nil, fmt.Errorf("KEM ciphertext: %w", ErrInvalidMessage)
	}
	return ss, nil
}
