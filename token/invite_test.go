package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestInviteRoundTripAndExpiry(t *testing.T) {
	exp := time.Now().Add(5 * time.Minute)
	inv, err := MintInvite(testSecret, InviteClaims{Room: "room", Inviter: "alice-abcdefgh", Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(inv, "sotto-invite1.") || strings.Count(inv, ".") != 2 {
		t.Fatalf("invite %q is not sotto-invite1.<claims>.<mac>", inv)
	}
	c, err := VerifyInvite(testSecret, inv, time.Now())
	if err != nil || c.Room != "room" || c.Inviter != "alice-abcdefgh" || c.Expiry.Unix() != exp.Unix() {
		t.Fatalf("VerifyInvite = %+v, %v", c, err)
	}
	if c, err := VerifyInvite(testSecret, inv, exp.Add(time.Second)); !errors.Is(err, ErrExpired) || c != (InviteClaims{}) {
		t.Fatalf("after expiry: %+v, %v; want ErrExpired and no claims", c, err)
	}
	for name, bad := range map[string]string{
		"tampered":   inv[:len(inv)-2] + "AA",
		"garbage":    "sotto-invite1.x.y",
		"too long":   inv + strings.Repeat("A", maxLen),
		"empty":      "",
		"extra part": inv + ".x",
	} {
		if _, err := VerifyInvite(testSecret, bad, time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if _, err := VerifyInvite([]byte("another-secret-0123456789"), inv, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("another server's secret: %v, want ErrInvalid", err)
	}
	// A token's name claim in an invite, correctly MACed, names no inviter.
	sub, err := sign(invites.key(testSecret), invites.prefix, wireClaims{Room: "room", Subject: "alice", Expiry: exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyInvite(testSecret, sub, time.Now()); !errors.Is(err, ErrInvalid) {
		t.Errorf("invite with a sub claim: %v, want ErrInvalid", err)
	}
}

func TestInviteAndTokenKeysDiffer(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	inv, err := MintInvite(testSecret, InviteClaims{Room: "room", Inviter: "alice-abcdefgh", Expiry: exp})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyAnyRoom(testSecret, inv, time.Now()); err == nil {
		t.Fatal("an invite verified as a token")
	}
	// Even an invite rewritten into the token format does not verify: the
	// MAC keys differ.
	_, claimsAndMAC, _ := strings.Cut(inv, ".")
	if _, err := VerifyAnyRoom(testSecret, tokens.prefix+"."+claimsAndMAC, time.Now()); err == nil {
		t.Fatal("a re-prefixed invite verified as a token")
	}
	tok := mustMint(t, testSecret, Claims{Room: "room", Identity: "alice", Expiry: exp})
	if _, err := VerifyInvite(testSecret, tok, time.Now()); err == nil {
		t.Fatal("a token verified as an invite")
	}
	_, claimsAndMAC, _ = strings.Cut(tok, ".")
	if _, err := VerifyInvite(testSecret, invites.prefix+"."+claimsAndMAC, time.Now()); err == nil {
		t.Fatal("a re-prefixed token verified as an invite")
	}
}
