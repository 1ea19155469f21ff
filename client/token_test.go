package client

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/signaling"
)

func TestParseTokenReadsClaimsOfMintedToken(t *testing.T) {
	tok, err := signaling.MintToken([]byte("0123456789abcdef0123"), "standup", "alice@example", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parseToken(tok)
	if err != nil {
		t.Fatalf("parseToken: %v", err)
	}
	if c.Room != "standup" || c.Identity != "alice@example" {
		t.Errorf("claims = %+v, want room standup, identity alice@example", c)
	}
	if exp := time.Unix(c.Expiry, 0); exp.Before(time.Now()) || exp.After(time.Now().Add(2*time.Hour)) {
		t.Errorf("expiry %v not about an hour ahead", exp)
	}
}

func TestParseTokenRejectsMalformed(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	for name, tok := range map[string]string{
		"empty":          "",
		"two parts":      "sotto1." + enc([]byte(`{"room":"r","sub":"a"}`)),
		"wrong prefix":   "sotto2." + enc([]byte(`{"room":"r","sub":"a"}`)) + ".mac",
		"no mac":         "sotto1." + enc([]byte(`{"room":"r","sub":"a"}`)) + ".",
		"bad base64":     "sotto1.!!!.mac",
		"not JSON":       "sotto1." + enc([]byte(`room=r`)) + ".mac",
		"no room":        "sotto1." + enc([]byte(`{"sub":"a"}`)) + ".mac",
		"no identity":    "sotto1." + enc([]byte(`{"room":"r"}`)) + ".mac",
		"too many parts": "sotto1.a.b.c",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseToken(tok); !errors.Is(err, ErrMalformedToken) {
				t.Errorf("parseToken(%q) error = %v, want ErrMalformedToken", tok, err)
			}
		})
	}
}
