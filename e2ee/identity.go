package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
)

// Sizes of the encoded identity forms (docs/PROTOCOL.md §1).
const (
	PublicIdentitySize  = 128
	PrivateIdentitySize = 65
)

const (
	identitySigLabel    = "Sotto identity key v1"
	fingerprintLabel    = "Sotto fingerprint v1"
	privateIdentityV1   = 0x01
	safetyIterations    = 5200
	safetyNumberVersion = 0
)

// Identity is a device's long-term private identity: an Ed25519 signing key
// and an X25519 key certified by it.
type Identity struct {
	seed    [ed25519.SeedSize]byte
	sigPriv ed25519.PrivateKey
	dhPriv  *ecdh.PrivateKey
	pub     PublicIdentity
}

// PublicIdentity is the 128-byte public form of an Identity: Ed25519 public
// key, X25519 public key and the Ed25519 signature over the latter. Values
// obtained from ParsePublicIdentity or Identity.Public have a valid
// signature; the zero value is no identity.
type PublicIdentity struct {
	b [PublicIdentitySize]byte
}

// NewIdentity generates an identity, reading 64 bytes from random (nil
// means crypto/rand).
func NewIdentity(random io.Reader) (*Identity, error) {
	var b [64]byte
	defer clear(b[:])
	if _, err := io.ReadFull(randOrDefault(random), b[:]); err != nil {
		return nil, fmt.Errorf("new identity: %w", err)
	}
	return identityFromSecrets(b[:32], b[32:])
}

// ParseIdentity restores an identity from its MarshalBinary form.
func ParseIdentity(b []byte) (*Identity, error) {
	if len(b) != PrivateIdentitySize || b[0] != privateIdentityV1 {
		return nil, fmt.Errorf("parse identity: %w", ErrInvalidMessage)
	}
	return identityFromSecrets(b[1:33], b[33:65])
}

func identityFromSecrets(seed, dh []byte) (*Identity, error) {
	dhPriv, err := ecdh.X25519().NewPrivateKey(dh)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	id := &Identity{sigPriv: ed25519.NewKeyFromSeed(seed), dhPriv: dhPriv}
	copy(id.seed[:], seed)
	copy(id.pub.b[0:32], id.sigPriv.Public().(ed25519.PublicKey))
	copy(id.pub.b[32:64], dhPriv.PublicKey().Bytes())
	copy(id.pub.b[64:], id.sign(identitySigLabel, id.pub.b[32:64]))
	return id, nil
}

// MarshalBinary returns the 65-byte private form: 0x01 || Ed25519 seed ||
// X25519 private key. It is secret; store it as such.
func (id *Identity) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, PrivateIdentitySize)
	b = append(b, privateIdentityV1)
	b = append(b, id.seed[:]...)
	return append(b, id.dhPriv.Bytes()...), nil
}

// Public returns the identity's public form.
func (id *Identity) Public() PublicIdentity { return id.pub }

func (id *Identity) sign(label string, parts ...[]byte) []byte {
	return ed25519.Sign(id.sigPriv, signedMessage(label, parts...))
}

func signedMessage(label string, parts ...[]byte) []byte {
	m := []byte(label)
	for _, p := range parts {
		m = append(m, p...)
	}
	return m
}

// ParsePublicIdentity decodes a 128-byte public identity and verifies its
// signature.
func ParsePublicIdentity(b []byte) (PublicIdentity, error) {
	var p PublicIdentity
	if len(b) != PublicIdentitySize {
		return p, fmt.Errorf("parse public identity: %d bytes: %w", len(b), ErrInvalidMessage)
	}
	copy(p.b[:], b)
	if !p.verify(identitySigLabel, p.b[64:], p.b[32:64]) {
		return PublicIdentity{}, fmt.Errorf("parse public identity: %w", ErrBadSignature)
	}
	return p, nil
}

func (p PublicIdentity) verify(label string, sig []byte, parts ...[]byte) bool {
	return ed25519.Verify(ed25519.PublicKey(p.b[0:32]), signedMessage(label, parts...), sig)
}

func (p PublicIdentity) dhPublic() *ecdh.PublicKey {
	k, _ := ecdh.X25519().NewPublicKey(p.b[32:64]) // any 32 bytes are an X25519 public key
	return k
}

// Bytes returns the 128-byte encoding.
func (p PublicIdentity) Bytes() []byte { return append([]byte(nil), p.b[:]...) }

// IsZero reports whether p is the zero value (no identity).
func (p PublicIdentity) IsZero() bool { return p == PublicIdentity{} }

// Equal reports, in constant time, whether p and q are the same identity
// (same Ed25519 and X25519 keys).
func (p PublicIdentity) Equal(q PublicIdentity) bool {
	return subtle.ConstantTimeCompare(p.b[:64], q.b[:64]) == 1
}

// Compare orders identities by their encoding (-1, 0 or +1). Two devices
// that initiated sessions to each other at once keep the session started
// by the lower identity (docs/PROTOCOL.md §4.2).
func (p PublicIdentity) Compare(q PublicIdentity) int { return bytes.Compare(p.b[:], q.b[:]) }

// Fingerprint is the identity's hex fingerprint: SHA-256 over a label and
// both public keys, 64 lowercase hex digits.
func (p PublicIdentity) Fingerprint() string {
	h := sha256.New()
	h.Write([]byte(fingerprintLabel))
	h.Write(p.b[:64])
	return hex.EncodeToString(h.Sum(nil))
}

// CheckIdentity returns nil if presented is the identity known for a peer,
// and an error wrapping ErrIdentityChanged with both fingerprints if not.
// A zero known identity (first contact) accepts anything.
func CheckIdentity(known, presented PublicIdentity) error {
	if known.IsZero() || known.Equal(presented) {
		return nil
	}
	return fmt.Errorf("%w: known %s, presented %s", ErrIdentityChanged, known.Fingerprint(), presented.Fingerprint())
}

// SafetyNumber returns the 60-digit safety number of two identities as 12
// groups of 5 digits. Both sides get the same string whatever the order of
// a and b (docs/PROTOCOL.md §1.2).
func SafetyNumber(a, b PublicIdentity) string {
	x, y := safetyHalf(a), safetyHalf(b)
	if y < x {
		x, y = y, x
	}
	all := x + y
	var sb strings.Builder
	for i := 0; i < len(all); i += 5 {
		if i > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteString(all[i : i+5])
	}
	return sb.String()
}

func safetyHalf(p PublicIdentity) string {
	key := p.b[:64]
	h := make([]byte, 0, 2+64+sha512.Size)
	h = binary.BigEndian.AppendUint16(h, safetyNumberVersion)
	h = append(h, key...)
	for range safetyIterations {
		d := sha512.New()
		d.Write(h)
		d.Write(key)
		h = d.Sum(h[:0])
	}
	var sb strings.Builder
	for i := range 6 {
		var c uint64
		for _, x := range h[5*i : 5*i+5] {
			c = c<<8 | uint64(x)
		}
		fmt.Fprintf(&sb, "%05d", c%100000)
	}
	return sb.String()
}

func randOrDefault(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// newX25519 generates an X25519 key from 32 bytes of random (reading them
// itself, so a deterministic reader gives deterministic keys).
func newX25519(random io.Reader) (*ecdh.PrivateKey, error) {
	var b [32]byte
	defer clear(b[:])
	if _, err := io.ReadFull(randOrDefault(random), b[:]); err != nil {
		return nil, err
	}
	return ecdh.X25519().NewPrivateKey(b[:])
}

// x25519 computes a DH output, rejecting the all-zero result of a
// low-order peer key.
func x25519(priv *ecdh.PrivateKey, pub *ecdh.PublicKey) ([]byte, error) {
	out, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("x25519: %w", ErrInvalidMessage)
	}
	return out, nil
}
