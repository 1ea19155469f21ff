package turn

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what the TURN REST convention and coturn use.
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/sotto-voice/sotto/api"
)

const (
	// DefaultCredentialTTL is the lifetime of credentials minted with a zero TTL.
	DefaultCredentialTTL = 6 * time.Hour
	// MaxCredentialTTL caps every credential lifetime, minted here or
	// presented to the server. TURN checks credentials on every refresh, so
	// an allocation cannot outlive its credential: 12 hours covers any call
	// while keeping a leaked credential's usefulness short. A client that
	// stays longer rejoins (or restarts ICE) with fresh credentials.
	MaxCredentialTTL = 12 * time.Hour
	// clockSkew tolerates a credential minted by another node (e.g. sharing
	// the secret with an external coturn) whose clock is slightly ahead.
	clockSkew = time.Minute
)

// Credentials mints TURN REST credentials (draft-uberti-behave-turn-rest,
// the convention coturn's use-auth-secret understands): the username is
// "expiry:identity" with expiry in Unix seconds, and the password is
// base64(HMAC-SHA1(secret, username)). A ttl of zero or less means
// DefaultCredentialTTL; a ttl above MaxCredentialTTL is capped to it.
func Credentials(secret []byte, identity string, ttl time.Duration, now time.Time) (username, password string, expires time.Time) {
	if ttl <= 0 {
		ttl = DefaultCredentialTTL
	}
	ttl = min(ttl, MaxCredentialTTL)
	expiry := now.Add(ttl).Unix()
	username = strconv.FormatInt(expiry, 10) + ":" + identity
	return username, restPassword(secret, username), time.Unix(expiry, 0)
}

func restPassword(secret []byte, username string) string {
	mac := hmac.New(sha1.New, secret)
	mac.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

var (
	errMalformedUsername = errors.New("malformed REST username, want expiry:identity")
	errExpired           = errors.New("credential expired")
	errTooLong           = errors.New("credential lifetime exceeds the maximum")
)

// checkUsername validates the expiry part of a REST username at time now.
func checkUsername(username string, now time.Time) error {
	expiryText, _, found := strings.Cut(username, ":")
	if !found {
		return errMalformedUsername
	}
	expiry, err := strconv.ParseInt(expiryText, 10, 64)
	if err != nil || expiry <= 0 {
		return errMalformedUsername
	}
	switch {
	case expiry < now.Unix():
		return errExpired
	case expiry > now.Add(MaxCredentialTTL+clockSkew).Unix():
		return errTooLong
	}
	return nil
}

// ICEServersFor returns the ICE server list a participant receives: STUN URLs
// as they are, TURN/TURNS URLs with fresh REST credentials for identity. It
// serves both the embedded server and an external one (e.g. coturn with
// use-auth-secret and the same secret) named by URL.
func ICEServersFor(urls []string, secret []byte, identity string, ttl time.Duration, now time.Time) []api.ICEServer {
	var stun, turn []string
	for _, u := range urls {
		if strings.HasPrefix(u, "stun:") || strings.HasPrefix(u, "stuns:") {
			stun = append(stun, u)
		} else {
			turn = append(turn, u)
		}
	}
	var out []api.ICEServer
	if len(stun) > 0 {
		out = append(out, api.ICEServer{URLs: stun})
	}
	if len(turn) > 0 {
		user, pass, _ := Credentials(secret, identity, ttl, now)
		out = append(out, api.ICEServer{URLs: turn, Username: user, Credential: pass})
	}
	return out
}
