package client

import (
	"fmt"

	"github.com/sotto-voice/sotto/e2ee"
)

// IdentityKey returns the caller's public identity key, whose fingerprint
// and safety numbers the other participants see.
func (c *Call) IdentityKey() e2ee.PublicIdentity { return c.opts.Identity.Public() }

// keys returns the current join's end-to-end state; while the call
// reconnects, nobody's key is known.
func (c *Call) keys() (*e2eeState, error) {
	if s := c.session(); s != nil {
		return s.e2e, nil
	}
	return nil, c.reconnecting()
}

// peerKey returns what the current join knows of a participant's key.
func (c *Call) peerKey(participantID string) (*e2eeState, peerKey, error) {
	e, err := c.keys()
	if err != nil {
		return nil, peerKey{}, err
	}
	pk, err := e.peerKey(participantID)
	return e, pk, err
}

// Fingerprint returns the fingerprint of a participant's identity key (64
// hex digits, docs/PROTOCOL.md §1.1), or the caller's own for its own ID.
// It fails with ErrUnknownParticipant or, until the participant's session
// is set up, ErrNoSession.
func (c *Call) Fingerprint(participantID string) (string, error) {
	if participantID == c.ID() {
		return c.IdentityKey().Fingerprint(), nil
	}
	_, pk, err := c.peerKey(participantID)
	if err != nil {
		return "", err
	}
	return pk.key.Fingerprint(), nil
}

// SafetyNumber returns the safety number of the caller and a participant:
// 60 digits in 12 groups of 5, the same on both sides (docs/PROTOCOL.md
// §1.2). When the two people read out the same number, no one sits between
// them; they can then mark the participant verified (SetVerified). It fails
// with ErrUnknownParticipant or, until the participant's session is set up,
// ErrNoSession.
func (c *Call) SafetyNumber(participantID string) (string, error) {
	_, pk, err := c.peerKey(participantID)
	if err != nil {
		return "", err
	}
	return e2ee.SafetyNumber(c.IdentityKey(), pk.key), nil
}

// SetVerified records in the TrustStore whether the user verified a
// participant's identity key (compared safety numbers). The mark belongs to
// the key: a changed key is unverified again. It fails for a participant
// whose changed key is not accepted (ErrIdentityNotAccepted).
func (c *Call) SetVerified(participantID string, verified bool) error {
	_, pk, err := c.peerKey(participantID)
	if err != nil {
		return err
	}
	if pk.blocked {
		return ErrIdentityNotAccepted
	}
	if err := c.opts.TrustStore.Remember(pk.r.p.Identity, TrustedIdentity{Key: pk.key, Verified: verified}); err != nil {
		return fmt.Errorf("client: set verified %s: %w", pk.r.p.Identity, err)
	}
	return nil
}

// Verified reports whether the user verified the identity key the
// participant presents in this call.
func (c *Call) Verified(participantID string) (bool, error) {
	_, pk, err := c.peerKey(participantID)
	if err != nil {
		return false, err
	}
	t, err := c.opts.TrustStore.Lookup(pk.r.p.Identity)
	if err != nil {
		return false, fmt.Errorf("client: verified %s: %w", pk.r.p.Identity, err)
	}
	return t.Verified && t.Key.Equal(pk.key), nil
}

// AcceptIdentity accepts the changed identity key of a participant
// (IdentityChanged), named by its fingerprint: the New of the event, which
// the user approved. The TrustStore remembers the key, unverified, for the
// participant's identity name, the participant receives the caller's frame
// key and its frames are delivered.
//
// Until then the participant's session is frozen: whatever it sends waits,
// so that it cannot swap in yet another key. If it presents another key
// than fingerprint by the time the user decides, AcceptIdentity fails with
// ErrFingerprintMismatch: accepting one key never accepts another, and each
// change is reported by its own IdentityChanged. AcceptIdentity does
// nothing for a participant whose key did not change.
func (c *Call) AcceptIdentity(participantID, fingerprint string) error {
	e, err := c.keys()
	if err != nil {
		return err
	}
	return e.accept(participantID, fingerprint)
}
