package signaling

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
)

// Tokens and invites share one format:
//
//	<prefix>.<base64url JSON claims>.<base64url HMAC-SHA256(key, "<prefix>.<claims>")>
//
// The prefix versions the format and names the kind, and it is MAC input, so
// one kind can never be accepted as another.

// signClaims encodes claims under prefix and appends their MAC with key.
func signClaims(key []byte, prefix string, claims any) (string, error) {
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	payload := prefix + "." + base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + base64.RawURLEncoding.EncodeToString(claimsMAC(key, payload)), nil
}

// openClaims checks s's prefix and MAC, in constant time, before decoding
// its claims into claims. It reports whether all of that succeeded.
func openClaims(key []byte, prefix, s string, claims any) bool {
	i := strings.LastIndex(s, ".")
	if i < 0 {
		return false
	}
	payload, sig := s[:i], s[i+1:]
	body, ok := strings.CutPrefix(payload, prefix+".")
	if !ok {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, claimsMAC(key, payload)) {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	return err == nil && json.Unmarshal(raw, claims) == nil
}

func claimsMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}
