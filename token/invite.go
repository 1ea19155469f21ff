package token

import "time"

// invites is the invite format. Its key is derived from the server secret
// with a fixed context; room tokens are MACed with the secret itself, so
// an invite can never verify as a token or the other way round.
var invites = format{
	kind:     "invite",
	prefix:   "sotto-invite1",
	key:      func(secret []byte) []byte { return mac(secret, "sotto invite key v1") },
	name:     func(w *wireClaims) *string { return &w.From },
	nameWhat: "inviter",
}

// InviteClaims is what an invite grants: joining Room, as a guest of
// Inviter, until Expiry (exclusive, to the second).
type InviteClaims struct {
	Room    string
	Inviter string
	Expiry  time.Time
}

// MintInvite returns an invite granting c, signed with a key derived from
// secret. It refuses what Mint refuses.
func MintInvite(secret []byte, c InviteClaims) (string, error) {
	return invites.mint(secret, fields{room: c.Room, name: c.Inviter, expiry: c.Expiry})
}

// VerifyInvite checks invite's MAC with the key derived from secret and its
// expiry at now, and returns its claims. The MAC is compared in constant
// time before any claim is read. The error is ErrInvalid or ErrExpired
// (possibly wrapped).
func VerifyInvite(secret []byte, invite string, now time.Time) (InviteClaims, error) {
	f, err := invites.verify(secret, invite, now)
	return InviteClaims{Room: f.room, Inviter: f.name, Expiry: f.expiry}, err
}
