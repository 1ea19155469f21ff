package token

import (
	"fmt"
	"time"
)

const (
	// invitePrefix versions the invite format and is part of its MAC input.
	invitePrefix = "sotto-invite1"
	// inviteKeyContext derives the invite MAC key from the server secret.
	// Room tokens are MACed with the secret itself, so an invite can never
	// verify as a token or the other way round.
	inviteKeyContext = "sotto invite key v1"
)

// InviteClaims is what an invite grants: joining Room, as a guest of
// Inviter, until Expiry (exclusive, to the second).
type InviteClaims struct {
	Room    string
	Inviter string
	Expiry  time.Time
}

type wireInvite struct {
	Room    string `json:"room"`
	Inviter string `json:"from"`
	Expiry  int64  `json:"exp"`
}

func (w *wireInvite) check() error {
	if !ValidRoom(w.Room) {
		return fmt.Errorf("invalid room name %q", w.Room)
	}
	if !ValidIdentity(w.Inviter) {
		return fmt.Errorf("invalid inviter %q", w.Inviter)
	}
	return nil
}

func (w *wireInvite) expiry() time.Time { return time.Unix(w.Expiry, 0) }

// MintInvite returns an invite granting c, signed with a key derived from
// secret.
func MintInvite(secret []byte, c InviteClaims) (string, error) {
	inv, err := mint(secret, inviteKey(secret), invitePrefix, &wireInvite{Room: c.Room, Inviter: c.Inviter, Expiry: c.Expiry.Unix()})
	if err != nil {
		return "", fmt.Errorf("mint invite: %w", err)
	}
	return inv, nil
}

// VerifyInvite checks invite's MAC with the key derived from secret and its
// expiry at now, and returns its claims. The MAC is compared in constant
// time before any claim is read. The error is ErrInvalid or ErrExpired
// (possibly wrapped).
func VerifyInvite(secret []byte, invite string, now time.Time) (InviteClaims, error) {
	var w wireInvite
	if err := verify(secret, inviteKey(secret), invitePrefix, invite, now, &w); err != nil {
		return InviteClaims{}, err
	}
	return InviteClaims{Room: w.Room, Inviter: w.Inviter, Expiry: w.expiry()}, nil
}

// inviteKey derives the invite MAC key, so that no invite is ever computed
// with the key that signs room tokens.
func inviteKey(secret []byte) []byte {
	return mac(secret, inviteKeyContext)
}
