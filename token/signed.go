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

// wire is the JSON form of a kind's claims.
type wire interface {
	check() error // refuses a bad room name or identity
	expiry() time.Time
}

// mint signs claims under prefix with key, after refusing what could
// never verify.
func mint(secret, key []byte, prefix string, claims wire) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("secret shorter than %d bytes", MinSecretLen)
	}
	if err := claims.check(); err != nil {
		return "", err
	}
	if claims.expiry().IsZero() {
		return "", errors.New("no expiry")
	}
	return sign(key, prefix, claims)
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

// verify checks s's prefix and MAC with key, in constant time, before it
// decodes the claims into claims: nothing from a forged string is parsed
// as JSON. Then it checks the claims and their expiry at now. secret is
// what key derives from, refused if too short: an empty secret would let
// anyone mint.
func verify(secret, key []byte, prefix, s string, now time.Time, claims wire) error {
	if len(secret) < MinSecretLen {
		return fmt.Errorf("%w: secret shorter than %d bytes", ErrInvalid, MinSecretLen)
	}
	signed, body, sig, err := split(prefix, s)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !hmac.Equal(sig, mac(key, signed)) {
		return fmt.Errorf("%w: bad MAC", ErrInvalid)
	}
	if err := json.Unmarshal(body, claims); err != nil {
		return fmt.Errorf("%w: claims: %v", ErrInvalid, err)
	}
	if err := claims.check(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !now.Before(claims.expiry()) {
		return ErrExpired
	}
	return nil
}

// read decodes s's claims into claims without checking its MAC.
func read(prefix, s string, claims any) error {
	_, body, _, err := split(prefix, s)
	if err != nil {
		return err
	}
	return json.Unmarshal(body, claims)
}

// split takes "<prefix>.<claims>.<mac>" apart: the signed part
// "<prefix>.<claims>", the decoded claims JSON and the decoded MAC.
func split(prefix, s string) (signed string, body, sig []byte, err error) {
	if len(s) > maxLen {
		return "", nil, nil, fmt.Errorf("longer than %d bytes", maxLen)
	}
	rest, ok := strings.CutPrefix(s, prefix+".")
	if !ok {
		return "", nil, nil, fmt.Errorf("does not start with %q", prefix+".")
	}
	b64Body, b64Sig, ok := strings.Cut(rest, ".")
	if !ok {
		return "", nil, nil, errors.New("no MAC")
	}
	if body, err = base64.RawURLEncoding.DecodeString(b64Body); err != nil {
		return "", nil, nil, fmt.Errorf("claims: %w", err)
	}
	if sig, err = base64.RawURLEncoding.DecodeString(b64Sig); err != nil {
		return "", nil, nil, fmt.Errorf("MAC: %w", err)
	}
	if len(sig) != sha256.Size {
		return "", nil, nil, fmt.Errorf("MAC is %d bytes, want %d", len(sig), sha256.Size)
	}
	return s[:len(prefix)+1+len(b64Body)], body, sig, nil
}

func mac(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
