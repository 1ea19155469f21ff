package token

import (
	"errors"
	"regexp"
	"time"
)

// MinSecretLen is the shortest server secret accepted, in bytes. Nothing
// is minted with, and nothing verifies under, a shorter one.
const MinSecretLen = 16

// Errors returned by the functions that verify or parse. A failure of any
// cause but expiry or room (malformed, forged, another server's) is
// ErrInvalid, possibly wrapped with the cause.
var (
	ErrInvalid   = errors.New("token: invalid")
	ErrExpired   = errors.New("token: expired")
	ErrWrongRoom = errors.New("token: for another room")
)

// tokens is the room-token format. Its prefix versions the format and is
// part of the MAC input; the key is the server secret itself.
var tokens = format{
	kind:     "token",
	prefix:   "sotto1",
	key:      func(secret []byte) []byte { return secret },
	name:     func(w *wireClaims) *string { return &w.Subject },
	nameWhat: "identity",
}

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

// Mint returns a room token granting c, signed with secret. It refuses a
// secret shorter than MinSecretLen, names that ValidRoom or ValidIdentity
// refuse, and a zero Expiry.
func Mint(secret []byte, c Claims) (string, error) {
	return tokens.mint(secret, fields{room: c.Room, name: c.Identity, expiry: c.Expiry})
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
	f, err := tokens.verify(secret, tok, now)
	return f.claims(), err
}

// ParseUnverified reads tok's claims without checking its MAC or expiry,
// for clients, which need the room and identity to address the server but
// do not hold the secret: the server verifies. Nothing it returns may be
// trusted for an access decision. The error wraps ErrInvalid.
func ParseUnverified(tok string) (Claims, error) {
	f, err := tokens.read(tok)
	return f.claims(), err
}

func (f fields) claims() Claims { return Claims{Room: f.room, Identity: f.name, Expiry: f.expiry} }
