package token

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// MinSecretLen is the shortest server secret accepted, in bytes. Nothing
// is minted with, and nothing verifies under, a shorter one.
const MinSecretLen = 16

// tokenPrefix versions the room-token format and is part of its MAC input.
const tokenPrefix = "sotto1"

// Errors returned by the functions that verify or parse. A failure of any
// cause but expiry or room (malformed, forged, another server's) is
// ErrInvalid, possibly wrapped with the cause.
var (
	ErrInvalid   = errors.New("token: invalid")
	ErrExpired   = errors.New("token: expired")
	ErrWrongRoom = errors.New("token: for another room")
)

var (
	roomPattern     = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	identityPattern = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)
)

// ValidRoom reports whether name is an acceptable room name: 1 to 64 ASCII
// letters, digits, '-' or '_'.
func ValidRoom(name string) bool { return roomPattern.MatchString(name) }

// ValidIdentity reports whether id is an acceptable participant identity: 1
// to 64 ASCII letters, digits, '.', '_', '@' or '-'.
func ValidIdentity(id string) bool { return identityPattern.MatchString(id) }

// Claims is what a room token grants: Identity may join Room until Expiry
// (exclusive, to the second).
type Claims struct {
	Room     string
	Identity string
	Expiry   time.Time
}

type wireClaims struct {
	Room     string `json:"room"`
	Identity string `json:"sub"`
	Expiry   int64  `json:"exp"`
}

func (w *wireClaims) check() error {
	if !ValidRoom(w.Room) {
		return fmt.Errorf("invalid room name %q", w.Room)
	}
	if !ValidIdentity(w.Identity) {
		return fmt.Errorf("invalid identity %q", w.Identity)
	}
	return nil
}

func (w *wireClaims) expiry() time.Time { return time.Unix(w.Expiry, 0) }

// Mint returns a room token granting c, signed with secret.
func Mint(secret []byte, c Claims) (string, error) {
	tok, err := mint(secret, secret, tokenPrefix, &wireClaims{Room: c.Room, Identity: c.Identity, Expiry: c.Expiry.Unix()})
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return tok, nil
}

// Verify checks tok's MAC with secret, its expiry at now and that it admits
// to room, and returns its claims. The MAC is compared in constant time
// before any claim is read. The error is ErrInvalid, ErrExpired or
// ErrWrongRoom (possibly wrapped).
func Verify(secret []byte, tok, room string, now time.Time) (Claims, error) {
	c, err := VerifyAnyRoom(secret, tok, now)
	if err != nil {
		return Claims{}, err
	}
	if c.Room != room {
		return Claims{}, ErrWrongRoom
	}
	return c, nil
}

// VerifyAnyRoom is Verify for the routes where a token for any room will
// do: it proves the identity, not the right to join a given room.
func VerifyAnyRoom(secret []byte, tok string, now time.Time) (Claims, error) {
	var w wireClaims
	if err := verify(secret, secret, tokenPrefix, tok, now, &w); err != nil {
		return Claims{}, err
	}
	return Claims{Room: w.Room, Identity: w.Identity, Expiry: w.expiry()}, nil
}

// ParseUnverified reads tok's claims without checking its MAC or expiry,
// for clients, which need the room and identity to address the server but
// do not hold the secret. Nothing it returns may be trusted for an access
// decision. The error wraps ErrInvalid.
func ParseUnverified(tok string) (Claims, error) {
	var w wireClaims
	if err := read(tokenPrefix, tok, &w); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := w.check(); err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return Claims{Room: w.Room, Identity: w.Identity, Expiry: w.expiry()}, nil
}
