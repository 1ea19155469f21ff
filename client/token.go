package client

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrMalformedToken is returned by Join when the token is not in the
// "sotto1.<claims>.<mac>" format the server issues.
var ErrMalformedToken = errors.New("client: malformed token")

// tokenClaims are the claims of a room token, read without verifying the
// signature: the client only needs the room and identity to address the
// server, which verifies the token itself.
type tokenClaims struct {
	Room     string `json:"room"`
	Identity string `json:"sub"`
	Expiry   int64  `json:"exp"`
}

// parseToken decodes the claims of token without verifying it.
func parseToken(token string) (tokenClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != "sotto1" || parts[2] == "" {
		return tokenClaims{}, ErrMalformedToken
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tokenClaims{}, fmt.Errorf("%w: claims: %v", ErrMalformedToken, err)
	}
	var c tokenClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return tokenClaims{}, fmt.Errorf("%w: claims: %v", ErrMalformedToken, err)
	}
	if c.Room == "" || c.Identity == "" {
		return tokenClaims{}, fmt.Errorf("%w: no room or identity", ErrMalformedToken)
	}
	return c, nil
}
