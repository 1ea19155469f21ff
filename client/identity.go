package client

import (
	"fmt"

	"github.com/sotto-voice/sotto/e2ee"
)

// IdentityKey returns the caller's public identity key, whose fingerprint
// and safety numbers the other participants see.
func (c *Call) IdentityKey() e2ee.PublicIdentity { return c.e2e.public }

// Fingerprint returns the fingerprint of a participant's identity key (64
// hex digits, docs/PROTOCOL.md §1.1), or the caller's own for its own ID.
// It fails with ErrUnknownParticipant or, until the participant's session
// is set up, ErrNoSession.
func (c *Call) Fingerprint(participantID string) (string, error) {
	if participantID == c.ID() {
		return c.e2e.public.Fingerprint(), nil
	}
	_, id, err := c.e2e.peerIdentity(participantID)
	if err != nil {
		return "", err
	}
	return id.Fingerprint(), nil
}

// SafetyNumber returns the safety number of the caller and a participant:
// 60 digits in 12 groups of 5, the same on both sides (docs/PROTOCOL.md
// §1.2). When the two people read out the same number, no one sits between
// them; they can then mark the participant verified (SetVerified). It fails
// with ErrUnknownParticipant or, until the participant's session is set up,
// ErrNoSession.
func (c *Call) SafetyNumber(participantID string) (string, error) {
	_, id, err := c.e2e.peerIdentity(participantID)
	if err != nil {
		return "", err
	}
	return e2ee.SafetyNumber(c.e2e.public, id), nil
}

// SetVerified records in the TrustStore whether the user verified a
// participant's identity key (compared safety numbers). The mark belongs to
// the key: a changed key is unverified again. It fails for a participant
// whose changed key is not accepted (ErrIdentityNotAccepted).
func (c *Call) SetVerified(participantID string, verified bool) error {
	r, id, err := c.e2e.peerIdentity(participantID)
	if err != nil {
		return err
	}
	if r.blocked.Load() {
		return ErrIdentityNotAccepted
	}
	if err := c.e2e.trust.Remember(r.p.Identity, TrustedIdentity{Key: id, Verified: verified}); err != nil {
		return fmt.Errorf("client: set verified %s: %w", r.p.Identity, err)
	}
	return nil
}

// Verified reports whether the user verified the identity key the
// participant presents in this call.
func (c *Call) Verified(participantID string) (bool, error) {
	r, id, err := c.e2e.peerIdentity(participantID)
	if err != nil {
		return false, err
	}
	t, err := c.e2e.trust.Lookup(r.p.Identity)
	if err != nil {
		return false, fmt.Errorf("client: verified %s: %w", r.p.Identity, err)
	}
	return t.Verified && t.Key.Equal(id), nil
}

// AcceptIdentity accepts the changed identity key of a participant
// (IdentityChanged): the TrustStore remembers the new key, unverified, for
// its identity name, the participant receives the caller's frame key and
// its frames are delivered. Accept only what the user approved. It does
// nothing for a participant whose key did not change.
func (c *Call) AcceptIdentity(participantID string) error {
	return c.e2e.accept(participantID)
}
