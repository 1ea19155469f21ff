package signaling

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// tokenPrefix versions the token format and is part of the MAC input, so a
// token can never be confused with another HMAC the server computes with the
// same secret (TURN credentials use a different construction and key).
const tokenPrefix = "sotto1"

// MinSecretLen is the shortest server secret accepted, in bytes.
const MinSecretLen = 16

// Errors returned by VerifyToken. They map to the API error codes
// unauthorized, token_expired and wrong_room.
var (
	ErrTokenInvalid = errors.New("token invalid")
	ErrTokenExpired = errors.New("token expired")
	ErrWrongRoom    = errors.New("token is for another room")
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

// Claims is what a token grants: Identity may join Room until Expiry.
type Claims struct {
	Room     string    `json:"room"`
	Identity string    `json:"sub"`
	Expiry   time.Time `json:"-"`
}

type wireClaims struct {
	Room     string `json:"room"`
	Identity string `json:"sub"`
	Expiry   int64  `json:"exp"`
}

// MintToken returns a token admitting identity to room for ttl, signed with
// secret. The format is "sotto1.<base64url claims>.<base64url HMAC-SHA256>".
func MintToken(secret []byte, room, identity string, ttl time.Duration) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("mint token: secret shorter than %d bytes", MinSecretLen)
	}
	if !ValidRoom(room) {
		return "", fmt.Errorf("mint token: invalid room name %q", room)
	}
	if !ValidIdentity(identity) {
		return "", fmt.Errorf("mint token: invalid identity %q", identity)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("mint token: ttl must be positive, got %v", ttl)
	}
	token, err := signClaims(secret, tokenPrefix, wireClaims{Room: room, Identity: identity, Expiry: time.Now().Add(ttl).Unix()})
	if err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	return token, nil
}

// VerifyToken checks token's signature and expiry and that it admits to room,
// and returns its claims. The MAC is compared in constant time before any
// claim is trusted.
func VerifyToken(secret []byte, token, room string, now time.Time) (Claims, error) {
	var w wireClaims
	if !openClaims(secret, tokenPrefix, token, &w) || !ValidRoom(w.Room) || !ValidIdentity(w.Identity) {
		return Claims{}, ErrTokenInvalid
	}
	c := Claims{Room: w.Room, Identity: w.Identity, Expiry: time.Unix(w.Expiry, 0)}
	if !now.Before(c.Expiry) {
		return c, ErrTokenExpired
	}
	if room != "" && c.Room != room {
		return c, ErrWrongRoom
	}
	return c, nil
}
