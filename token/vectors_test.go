package token

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"
)

// vectors is testdata/vectors.json, computed from the format's description
// in docs/API.md by another implementation.
type vectors struct {
	Tokens []struct {
		Secret, Room, Identity, Token string
		Expiry                        int64
	}
	Invites []struct {
		Secret, Room, Inviter, Invite string
		KeyHex                        string `json:"key_hex"`
		Expiry                        int64
	}
	Reject []struct{ Kind, Secret, Value, Why string }
}

func loadVectors(t testing.TB) vectors {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) == 0 || len(v.Invites) == 0 || len(v.Reject) == 0 {
		t.Fatalf("vectors file has %d tokens, %d invites, %d rejects", len(v.Tokens), len(v.Invites), len(v.Reject))
	}
	return v
}

func TestVectors(t *testing.T) {
	v := loadVectors(t)
	for _, x := range v.Tokens {
		exp := time.Unix(x.Expiry, 0)
		got, err := Mint([]byte(x.Secret), Claims{Room: x.Room, Identity: x.Identity, Expiry: exp})
		if err != nil || got != x.Token {
			t.Errorf("Mint(%s, %s) = %q, %v; want %q", x.Room, x.Identity, got, err, x.Token)
		}
		want := Claims{Room: x.Room, Identity: x.Identity, Expiry: exp}
		if c, err := Verify([]byte(x.Secret), x.Token, x.Room, exp.Add(-time.Second)); err != nil || c != want {
			t.Errorf("Verify(%q) = %+v, %v; want %+v", x.Token, c, err, want)
		}
		if c, err := ParseUnverified(x.Token); err != nil || c != want {
			t.Errorf("ParseUnverified(%q) = %+v, %v; want %+v", x.Token, c, err, want)
		}
		if _, err := Verify([]byte(x.Secret), x.Token, x.Room, exp); !errors.Is(err, ErrExpired) {
			t.Errorf("Verify(%q) at its expiry: %v, want ErrExpired", x.Token, err)
		}
	}
	for _, x := range v.Invites {
		exp := time.Unix(x.Expiry, 0)
		if key := hex.EncodeToString(invites.key([]byte(x.Secret))); key != x.KeyHex {
			t.Errorf("invite key of %q = %s, want %s", x.Secret, key, x.KeyHex)
		}
		got, err := MintInvite([]byte(x.Secret), InviteClaims{Room: x.Room, Inviter: x.Inviter, Expiry: exp})
		if err != nil || got != x.Invite {
			t.Errorf("MintInvite(%s, %s) = %q, %v; want %q", x.Room, x.Inviter, got, err, x.Invite)
		}
		want := InviteClaims{Room: x.Room, Inviter: x.Inviter, Expiry: exp}
		if c, err := VerifyInvite([]byte(x.Secret), x.Invite, exp.Add(-time.Second)); err != nil || c != want {
			t.Errorf("VerifyInvite(%q) = %+v, %v; want %+v", x.Invite, c, err, want)
		}
		if _, err := VerifyInvite([]byte(x.Secret), x.Invite, exp); !errors.Is(err, ErrExpired) {
			t.Errorf("VerifyInvite(%q) at its expiry: %v, want ErrExpired", x.Invite, err)
		}
	}
	// Rejects are checked well before any vector's expiry, so that only
	// their flaw can refuse them.
	now := time.Unix(v.Tokens[0].Expiry, 0).Add(-time.Hour)
	for _, x := range v.Reject {
		var err error
		switch x.Kind {
		case "token":
			_, err = VerifyAnyRoom([]byte(x.Secret), x.Value, now)
		case "invite":
			_, err = VerifyInvite([]byte(x.Secret), x.Value, now)
		default:
			t.Fatalf("reject vector of unknown kind %q", x.Kind)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s (%s): %v, want ErrInvalid", x.Why, x.Kind, err)
		}
	}
}
