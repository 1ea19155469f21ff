package e2ee

import (
	"crypto/ecdh"
	"crypto/mlkem"
	"encoding/binary"
	"fmt"
	"io"
)

const (
	signedPrekeyLabel = "Sotto signed prekey v1"
	// kemPrekeyLabel names the KEM in the signed message, so that a KEM
	// prekey signature can never be taken for another (docs/PROTOCOL.md §2).
	kemPrekeyLabel = "Sotto ML-KEM-768 prekey v1"
)

// Sizes of the ML-KEM-768 values of PQXDH (FIPS 203).
const (
	// KEMPrekeySize is the size of an encoded ML-KEM-768 encapsulation key.
	KEMPrekeySize = mlkem.EncapsulationKeySize768
	// KEMCiphertextSize is the size of an ML-KEM-768 ciphertext.
	KEMCiphertextSize = mlkem.CiphertextSize768
)

// SignedPrekey is the public part of a signed prekey, shaped like
// api.SignedPrekey: Key is 32 bytes of X25519, Signature 64 bytes of
// Ed25519 by the identity.
type SignedPrekey struct {
	ID        uint32
	Key       []byte
	Signature []byte
}

// OneTimePrekey is the public part of a one-time prekey, shaped like
// api.OneTimePrekey.
type OneTimePrekey struct {
	ID  uint32
	Key []byte
}

// KEMPrekey is the public part of a signed ML-KEM-768 prekey, last-resort
// or one-time, shaped like api.KEMPrekey: Key is the 1184-byte
// encapsulation key, Signature 64 bytes of Ed25519 by the identity.
type KEMPrekey struct {
	ID        uint32
	Key       []byte
	Signature []byte
}

// PrekeyBundle is what an initiator fetches from the directory for a peer,
// field for field api.PrekeyBundle. KEMPrekey is the last-resort KEM
// prekey, which every bundle must carry; OneTimePrekey and
// OneTimeKEMPrekey are nil when the directory had none left.
type PrekeyBundle struct {
	IdentityKey      []byte
	SignedPrekey     SignedPrekey
	OneTimePrekey    *OneTimePrekey
	KEMPrekey        KEMPrekey
	OneTimeKEMPrekey *KEMPrekey
}

// kemSeed is the private form of an ML-KEM-768 prekey (d || z of FIPS
// 203). The store keeps only seeds, which it can zero, and expands one for
// each decapsulation: crypto/mlkem offers no way to wipe an expanded key.
type kemSeed = [mlkem.SeedSize]byte

// PrekeyStore holds a device's identity and the private parts of the
// prekeys it published. It answers PQXDH initial messages (AcceptSession),
// deletes each one-time prekey after its first use and zeroes KEM prekeys
// as they are retired. It is not safe for concurrent use.
type PrekeyStore struct {
	identity *Identity
	random   io.Reader
	nextID   uint32
	signed   SignedPrekey
	// The current signed prekey and the one before, for initiators that
	// fetched the bundle just before a rotation.
	signedPriv, previousPriv *ecdh.PrivateKey
	previousID               uint32
	oneTime                  map[uint32]*ecdh.PrivateKey
	// The last-resort KEM prekey and the one before, as for signed prekeys.
	kem                  KEMPrekey
	kemPriv, previousKEM *kemSeed
	previousKEMID        uint32
	oneTimeKEM           map[uint32]*kemSeed
	// accepted holds, per signed prekey still held, the ephemeral keys of
	// the sessions it started, so that a replayed initial message cannot
	// start a second session (one-time prekeys already prevent that; the
	// signed and last-resort prekeys alone do not).
	accepted map[uint32]map[[32]byte]bool
}

// NewPrekeyStore creates a store for id with a first signed prekey and a
// first last-resort KEM prekey. Prekey ids start at a random value so that
// ids a previous run published are not reused. random nil means
// crypto/rand.
func NewPrekeyStore(id *Identity, random io.Reader) (*PrekeyStore, error) {
	s := &PrekeyStore{
		identity:   id,
		random:     randOrDefault(random),
		oneTime:    map[uint32]*ecdh.PrivateKey{},
		oneTimeKEM: map[uint32]*kemSeed{},
		accepted:   map[uint32]map[[32]byte]bool{},
	}
	var b [4]byte
	if _, err := io.ReadFull(s.random, b[:]); err != nil {
		return nil, fmt.Errorf("new prekey store: %w", err)
	}
	s.nextID = binary.BigEndian.Uint32(b[:])
	if _, err := s.RotateSignedPrekey(); err != nil {
		return nil, err
	}
	if _, err := s.RotateKEMPrekey(); err != nil {
		return nil, err
	}
	return s, nil
}

// Identity returns the store's identity.
func (s *PrekeyStore) Identity() *Identity { return s.identity }

func (s *PrekeyStore) newID() uint32 {
	s.nextID++
	return s.nextID
}

// RotateSignedPrekey replaces the signed prekey with a new one and returns
// it for upload. The previous one keeps answering initial messages until
// the next rotation.
func (s *PrekeyStore) RotateSignedPrekey() (SignedPrekey, error) {
	priv, err := newX25519(s.random)
	if err != nil {
		return SignedPrekey{}, fmt.Errorf("rotate signed prekey: %w", err)
	}
	id := s.newID()
	pub := priv.PublicKey().Bytes()
	if s.previousPriv != nil {
		delete(s.accepted, s.previousID)
	}
	s.previousPriv, s.previousID = s.signedPriv, s.signed.ID
	s.signedPriv = priv
	s.signed = SignedPrekey{ID: id, Key: pub, Signature: s.identity.sign(signedPrekeyLabel, binary.BigEndian.AppendUint32(nil, id), pub)}
	return s.SignedPrekey(), nil
}

// SignedPrekey returns the current signed prekey.
func (s *PrekeyStore) SignedPrekey() SignedPrekey {
	return SignedPrekey{ID: s.signed.ID, Key: append([]byte(nil), s.signed.Key...), Signature: append([]byte(nil), s.signed.Signature...)}
}

// NewOneTimePrekeys generates n one-time prekeys and returns their public
// parts for upload.
func (s *PrekeyStore) NewOneTimePrekeys(n int) ([]OneTimePrekey, error) {
	out := make([]OneTimePrekey, 0, n)
	for range n {
		priv, err := newX25519(s.random)
		if err != nil {
			return nil, fmt.Errorf("new one-time prekeys: %w", err)
		}
		id := s.newID()
		s.oneTime[id] = priv
		out = append(out, OneTimePrekey{ID: id, Key: priv.PublicKey().Bytes()})
	}
	return out, nil
}

// OneTimePrekeys returns how many unused one-time prekeys the store holds.
func (s *PrekeyStore) OneTimePrekeys() int { return len(s.oneTime) }

// RotateKEMPrekey replaces the last-resort KEM prekey with a new one and
// returns it for upload. The previous one keeps answering initial messages
// until the next rotation, when it is zeroed.
func (s *PrekeyStore) RotateKEMPrekey() (KEMPrekey, error) {
	seed, k, err := s.newKEMPrekey()
	if err != nil {
		return KEMPrekey{}, fmt.Errorf("rotate KEM prekey: %w", err)
	}
	if s.previousKEM != nil {
		clear(s.previousKEM[:])
	}
	s.previousKEM, s.previousKEMID = s.kemPriv, s.kem.ID
	s.kemPriv, s.kem = seed, k
	return s.KEMPrekey(), nil
}

// KEMPrekey returns the current last-resort KEM prekey.
func (s *PrekeyStore) KEMPrekey() KEMPrekey { return s.kem.clone() }

// NewOneTimeKEMPrekeys generates n signed one-time KEM prekeys and returns
// their public parts for upload.
func (s *PrekeyStore) NewOneTimeKEMPrekeys(n int) ([]KEMPrekey, error) {
	out := make([]KEMPrekey, 0, n)
	for range n {
		seed, k, err := s.newKEMPrekey()
		if err != nil {
			return nil, fmt.Errorf("new one-time KEM prekeys: %w", err)
		}
		s.oneTimeKEM[k.ID] = seed
		out = append(out, k)
	}
	return out, nil
}

// OneTimeKEMPrekeys returns how many unused one-time KEM prekeys the store
// holds.
func (s *PrekeyStore) OneTimeKEMPrekeys() int { return len(s.oneTimeKEM) }

// newKEMPrekey draws a seed, and signs the encapsulation key it gives
// under a new id.
func (s *PrekeyStore) newKEMPrekey() (*kemSeed, KEMPrekey, error) {
	seed := new(kemSeed)
	if _, err := io.ReadFull(s.random, seed[:]); err != nil {
		return nil, KEMPrekey{}, err
	}
	dk, err := mlkem.NewDecapsulationKey768(seed[:])
	if err != nil {
		return nil, KEMPrekey{}, err
	}
	id := s.newID()
	pub := dk.EncapsulationKey().Bytes()
	return seed, KEMPrekey{ID: id, Key: pub, Signature: s.identity.sign(kemPrekeyLabel, binary.BigEndian.AppendUint32(nil, id), pub)}, nil
}

// Destroy zeroes the KEM prekeys' private seeds and forgets every private
// prekey. The store answers no initial message afterwards.
func (s *PrekeyStore) Destroy() {
	for _, seed := range s.oneTimeKEM {
		clear(seed[:])
	}
	for _, seed := range []*kemSeed{s.kemPriv, s.previousKEM} {
		if seed != nil {
			clear(seed[:])
		}
	}
	clear(s.oneTimeKEM)
	clear(s.oneTime)
	clear(s.accepted)
	s.kemPriv, s.previousKEM, s.signedPriv, s.previousPriv = nil, nil, nil, nil
}

func (s *PrekeyStore) signedPrekey(id uint32) *ecdh.PrivateKey {
	switch {
	case s.signedPriv != nil && id == s.signed.ID:
		return s.signedPriv
	case s.previousPriv != nil && id == s.previousID:
		return s.previousPriv
	}
	return nil
}

// kemPrekey returns the seed of the KEM prekey id and whether it is a
// one-time one, or nil.
func (s *PrekeyStore) kemPrekey(id uint32) (seed *kemSeed, oneTime bool) {
	if seed := s.oneTimeKEM[id]; seed != nil {
		return seed, true
	}
	switch {
	case s.kemPriv != nil && id == s.kem.ID:
		return s.kemPriv, false
	case s.previousKEM != nil && id == s.previousKEMID:
		return s.previousKEM, false
	}
	return nil, false
}

func (k KEMPrekey) clone() KEMPrekey {
	return KEMPrekey{ID: k.ID, Key: append([]byte(nil), k.Key...), Signature: append([]byte(nil), k.Signature...)}
}

// verifiedBundle is a bundle whose signatures verified, with the keys an
// initiator uses: the one-time KEM prekey when offered, else the
// last-resort one.
type verifiedBundle struct {
	peer          PublicIdentity
	spk, opk      *ecdh.PublicKey
	kem           *mlkem.EncapsulationKey768
	kemID         uint32
	lastResortKEM bool
}

// verifyBundle checks the bundle's signatures and sizes and returns its
// keys. A bundle without a valid signed last-resort KEM prekey is refused
// with ErrNoKEMPrekey: there is no session without post-quantum protection.
func verifyBundle(b PrekeyBundle) (v verifiedBundle, err error) {
	if v.peer, err = ParsePublicIdentity(b.IdentityKey); err != nil {
		return v, err
	}
	if len(b.SignedPrekey.Key) != 32 || len(b.SignedPrekey.Signature) != 64 {
		return v, fmt.Errorf("signed prekey: %w", ErrInvalidMessage)
	}
	if !v.peer.verify(signedPrekeyLabel, b.SignedPrekey.Signature, binary.BigEndian.AppendUint32(nil, b.SignedPrekey.ID), b.SignedPrekey.Key) {
		return v, fmt.Errorf("signed prekey: %w", ErrBadSignature)
	}
	if v.spk, err = ecdh.X25519().NewPublicKey(b.SignedPrekey.Key); err != nil {
		return v, fmt.Errorf("signed prekey: %w", ErrInvalidMessage)
	}
	if b.OneTimePrekey != nil {
		if v.opk, err = ecdh.X25519().NewPublicKey(b.OneTimePrekey.Key); err != nil {
			return v, fmt.Errorf("one-time prekey: %w", ErrInvalidMessage)
		}
	}
	lastResort, err := v.peer.verifyKEMPrekey(b.KEMPrekey)
	if err != nil {
		return v, fmt.Errorf("last-resort KEM prekey: %w", err)
	}
	v.kem, v.kemID, v.lastResortKEM = lastResort, b.KEMPrekey.ID, true
	if b.OneTimeKEMPrekey != nil {
		if v.kem, err = v.peer.verifyKEMPrekey(*b.OneTimeKEMPrekey); err != nil {
			return v, fmt.Errorf("one-time KEM prekey: %w", err)
		}
		v.kemID, v.lastResortKEM = b.OneTimeKEMPrekey.ID, false
	}
	return v, nil
}

// verifyKEMPrekey checks a KEM prekey's signature by p and decodes its key.
// Every error wraps ErrNoKEMPrekey.
func (p PublicIdentity) verifyKEMPrekey(k KEMPrekey) (*mlkem.EncapsulationKey768, error) {
	if len(k.Key) == 0 && len(k.Signature) == 0 {
		return nil, ErrNoKEMPrekey
	}
	if len(k.Key) != KEMPrekeySize || len(k.Signature) != 64 {
		return nil, fmt.Errorf("%w: %d-byte key, %d-byte signature: %w", ErrNoKEMPrekey, len(k.Key), len(k.Signature), ErrInvalidMessage)
	}
	if !p.verify(kemPrekeyLabel, k.Signature, binary.BigEndian.AppendUint32(nil, k.ID), k.Key) {
		return nil, fmt.Errorf("%w: %w", ErrNoKEMPrekey, ErrBadSignature)
	}
	ek, err := mlkem.NewEncapsulationKey768(k.Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoKEMPrekey, ErrInvalidMessage)
	}
	return ek, nil
}
