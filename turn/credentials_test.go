package turn

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCredentials(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	user, pass, exp := Credentials([]byte("s3cret"), "alice", time.Hour, now)
	// Vector computed independently:
	//   printf '1700003600:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
	if user != "1700003600:alice" || pass != "YAFdW/YDZewZsR1QSgUk2IrfbRI=" || !exp.Equal(time.Unix(1700003600, 0)) {
		t.Fatalf("Credentials = %q, %q, %v", user, pass, exp)
	}

	if _, _, exp := Credentials(testSecret, "a", 0, now); !exp.Equal(now.Add(DefaultCredentialTTL)) {
		t.Errorf("zero TTL expires %v, want default %v", exp, now.Add(DefaultCredentialTTL))
	}
	if _, _, exp := Credentials(testSecret, "a", 30*24*time.Hour, now); !exp.Equal(now.Add(MaxCredentialTTL)) {
		t.Errorf("30-day TTL expires %v, want the cap %v", exp, now.Add(MaxCredentialTTL))
	}
	// Identities may contain the separator; the expiry is before the first.
	if u, _, _ := Credentials(testSecret, "a:b", time.Hour, now); u != "1700003600:a:b" {
		t.Errorf("username %q", u)
	}
}

func TestCheckUsername(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		username string
		want     error
	}{
		{"1700003600:alice", nil},
		{"1700000000:alice", nil}, // expires this second
		{"1699999999:alice", errExpired},
		{"1700043200:alice", nil}, // exactly the maximum
		{"1700043260:alice", nil}, // within the clock skew
		{"1700050000:alice", errTooLong},
		{"alice", errMalformedUsername},
		{"1700003600", errMalformedUsername},
		{":alice", errMalformedUsername},
		{"-5:alice", errMalformedUsername},
		{"17000036x0:alice", errMalformedUsername},
		{"99999999999999999999:alice", errMalformedUsername},
	} {
		if err := checkUsername(tc.username, now); !errors.Is(err, tc.want) {
			t.Errorf("checkUsername(%q) = %v, want %v", tc.username, err, tc.want)
		}
	}
}

func TestICEServersFor(t *testing.T) {
	now := time.Now()
	got := ICEServersFor([]string{"stun:turn.example.org:3478", "turn:turn.example.org:3478?transport=udp",
		"turns:turn.example.org:5349?transport=tcp"}, testSecret, "bob", time.Hour, now)
	if len(got) != 2 {
		t.Fatalf("got %d entries, want a STUN and a TURN entry: %+v", len(got), got)
	}
	if got[0].Username != "" || len(got[0].URLs) != 1 {
		t.Errorf("STUN entry %+v carries credentials or extra URLs", got[0])
	}
	wantUser, wantPass, _ := Credentials(testSecret, "bob", time.Hour, now)
	if got[1].Username != wantUser || got[1].Credential != wantPass || len(got[1].URLs) != 2 {
		t.Errorf("TURN entry %+v, want both TURN URLs with %q/%q", got[1], wantUser, wantPass)
	}
	if !strings.HasSuffix(got[1].Username, ":bob") {
		t.Errorf("username %q does not name the identity", got[1].Username)
	}
}
