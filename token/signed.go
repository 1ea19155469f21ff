package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxLen bounds what is parsed. The longest valid token or invite (64-byte
// names, a 20-digit expiry) is about 300 bytes.
const maxLen = 1024

// format is one kind of signed claims: a room, a name and an expiry, as
//
//	<prefix>.<base64url JSON claims>.<base64url HMAC-SHA256(key(secret), "<prefix>.<claims>")>
type format struct {
	kind   string // "token" or "invite", for errors
	prefix string
	key    func(secret []byte) []byte
	// name is the JSON claim of the name, and what it names in errors.
	name     func(*wireClaims) *string
	nameWhat string
}

// wireClaims is the JSON of either format; the format's name field is the
// one set, so the other is left out.
type wireClaims struct {
	Room    string `json:"room"`
	Subject string `json:"sub,omitempty"`  // a token's identity
	From    string `json:"from,omitempty"` // an invite's inviter
	Expiry  int64  `json:"exp"`
}

// fields are the claims of either format.
type fields struct {
	room, name string
	expiry     time.Time
}

// mint signs c with the format's key, after refusing what could never
// verify.
func (f format) mint(secret []byte, c fields) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("mint %s: secret shorter than %d bytes", f.kind, MinSecretLen)
	}
	if err := f.check(c); err != nil {
		return "", fmt.Errorf("mint %s: %w", f.kind, err)
	}
	if c.expiry.IsZero() {
		return "", fmt.Errorf("mint %s: no expiry", f.kind)
	}
	w := wireClaims{Room: c.room, Expiry: c.expiry.Unix()}
	*f.name(&w) = c.name
	s, err := sign(f.key(secret), f.prefix, w)
	if err != nil {
		return "", fmt.Errorf("mint %s: %w", f.kind, err)
	}
	return s, nil
}

// verify checks s's prefix and MAC, in constant time, before it decodes
// the claims: nothing from a forged string is parsed as JSON. Then it
// checks the claims and their expiry at now. A secret too short to mint
// with is refused: an empty one would let anyone mint.
func (f format) verify(secret []byte, s string, now time.Time) (fields, error) {
	if len(secret) < MinSecretLen {
		return fields{}, fmt.Errorf("%w: secret shorter than %d bytes", ErrInvalid, MinSecretLen)
	}
	signed, body, sig, err := split(f.prefix, s)
	if err != nil {
		return fields{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, mac(f.key(secret), signed)) {
		return fields{}, fmt.Errorf("%w: bad MAC", ErrInvalid)
	}
	c, err := f.decode(body)
	if err != nil {
		return fields{}, err
	}
	if !now.Before(c.expiry) {
		return fields{}, ErrExpired
	}
	return c, nil
}

// read decodes s's claims without checking its MAC (beyond its presence)
// or expiry.
func (f format) read(s string) (fields, error) {
	_, body, _, err := split(f.prefix, s)
	if err != nil {
		return fields{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return f.decode(body)
}

func (f format) decode(body []byte) (fields, error) {
	var w wireClaims
	if err := json.Unmarshal(body, &w); err != nil {
		return fields{}, fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	c := fields{room: w.Room, name: *f.name(&w), expiry: time.Unix(w.Expiry, 0)}
	if err := f.check(c); err != nil {
		return fields{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return c, nil
}

func (f format) check(c fields) error {
	if !ValidRoom(c.room) {
		return fmt.Errorf("invalid room name %q", c.room)
	}
	if !ValidIdentity(c.name) {
		return fmt.Errorf("invalid %s %q", f.nameWhat, c.name)
	}
	return nil
}

// sign encodes claims under prefix and appends their MAC with key.
func sign(key []byte, prefix string, claims any) (string, error) {
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signed := prefix + "." + base64.RawURLEncoding.EncodeToString(body)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(key, signed)), nil
}

// split takes "<prefix>.<claims>.<mac>" apart: the signed part
// "<prefix>.<claims>", the decoded claims JSON and the MAC, still encoded.
func split(prefix, s string) (signed string, body []byte, sig string, err error) {
	if len(s) > maxLen {
		return "", nil, "", fmt.Errorf("longer than %d bytes", maxLen)
	}
	rest, ok := strings.CutPrefix(s, prefix+".")
	if !ok {
		return "", nil, "", fmt.Errorf("does not start with %q", prefix+".")
	}
	b64Body, sig, ok := strings.Cut(rest, ".")
	if !ok || sig == "" || strings.Contains(sig, ".") {
		return "", nil, "", errors.New("not <claims>.<mac>")
	}
	if body, err = base64.RawURLEncoding.DecodeString(b64Body); err != nil {
		return "", nil, "", fmt.Errorf("claims: %w", err)
	}
	return s[:len(prefix)+1+len(b64Body)], body, sig, nil
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
