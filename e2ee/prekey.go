package e2ee

import (
	"crypto/ecdh"
	"encoding/binary"
	"fmt"
	"io"
)

const signedPrekeyLabel = "Sotto signed prekey v1"

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

// PrekeyBundle is what an initiator fetches from the directory for a peer,
// field for field api.PrekeyBundle. OneTimePrekey is nil when the directory
// had none left.
type PrekeyBundle struct {
	IdentityKey   []byte
	SignedPrekey  SignedPrekey
	OneTimePrekey *OneTimePrekey
}

// PrekeyStore holds a device's identity and the private parts of the
// prekeys it published. It answers X3DH initial messages (AcceptSession)
// and deletes each one-time prekey after its first use. It is not safe for
// concurrent use.
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
	// accepted holds, per signed prekey still held, the ephemeral keys of
	// the sessions it started, so that a replayed initial message cannot
	// start a second session (one-time prekeys already prevent that; the
	// signed prekey alone does not).
	accepted map[uint32]map[[32]byte]bool
}

// NewPrekeyStore creates a store for id with a first signed prekey. Prekey
// ids start at a random value so that ids a previous run published are
// not reused. random nil means crypto/rand.
func NewPrekeyStore(id *Identity, random io.Reader) (*PrekeyStore, error) {
	s := &PrekeyStore{identity: id, random: randOrDefault(random), oneTime: map[uint32]*ecdh.PrivateKey{}, accepted: map[uint32]map[[32]byte]bool{}}
	var b [4]byte
	if _, err := io.ReadFull(s.random, b[:]); err != nil {
		return nil, fmt.Errorf("new prekey store: %w", err)
	}
	s.nextID = binary.BigEndian.Uint32(b[:])
	if _, err := s.RotateSignedPrekey(); err != nil {
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

func (s *PrekeyStore) signedPrekey(id uint32) *ecdh.PrivateKey {
	switch {
	case id == s.signed.ID:
		return s.signedPriv
	case s.previousPriv != nil && id == s.previousID:
		return s.previousPriv
	}
	return nil
}

// verifyBundle checks the bundle's signatures and returns its keys.
func verifyBundle(b PrekeyBundle) (peer PublicIdentity, spk, opk *ecdh.PublicKey, err error) {
	peer, err = ParsePublicIdentity(b.IdentityKey)
	if err != nil {
		return peer, nil, nil, err
	}
	if len(b.SignedPrekey.Key) != 32 || len(b.SignedPrekey.Signature) != 64 {
		return peer, nil, nil, fmt.Errorf("signed prekey: %w", ErrInvalidMessage)
	}
	if !peer.verify(signedPrekeyLabel, b.SignedPrekey.Signature, binary.BigEndian.AppendUint32(nil, b.SignedPrekey.ID), b.SignedPrekey.Key) {
		return peer, nil, nil, fmt.Errorf("signed prekey: %w", ErrBadSignature)
	}
	if spk, err = ecdh.X25519().NewPublicKey(b.SignedPrekey.Key); err != nil {
		return peer, nil, nil, fmt.Errorf("signed prekey: %w", ErrInvalidMessage)
	}
	if b.OneTimePrekey != nil {
		if opk, err = ecdh.X25519().NewPublicKey(b.OneTimePrekey.Key); err != nil {
			return peer, nil, nil, fmt.Errorf("one-time prekey: %w", ErrInvalidMessage)
		}
	}
	return peer, spk, opk, nil
}
