package token

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

var testSecret = []byte("token-test-secret-0123456789")

func mustMint(t *testing.T, secret []byte, c Claims) string {
	t.Helper()
	tok, err := Mint(secret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestMintVerifyRoundTrip(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	tok := mustMint(t, testSecret, Claims{Room: "standup", Identity: "alice@example.com", Expiry: exp})
	if !strings.HasPrefix(tok, "sotto1.") || strings.Count(tok, ".") != 2 {
		t.Fatalf("token %q is not sotto1.<claims>.<mac>", tok)
	}
	want := Claims{Room: "standup", Identity: "alice@example.com", Expiry: time.Unix(exp.Unix(), 0)}
	for name, verify := range map[string]func() (Claims, error){
		"Verify":          func() (Claims, error) { return Verify(testSecret, tok, "standup", time.Now()) },
		"VerifyAnyRoom":   func() (Claims, error) { return VerifyAnyRoom(testSecret, tok, time.Now()) },
		"ParseUnverified": func() (Claims, error) { return ParseUnverified(tok) },
	} {
		got, err := verify()
		if err != nil || !got.Expiry.Equal(want.Expiry) || got.Room != want.Room || got.Identity != want.Identity {
			t.Errorf("%s = %+v, %v; want %+v", name, got, err, want)
		}
	}
}

func TestVerifyRefuses(t *testing.T) {
	exp := time.Unix(2_000_000_000, 0)
	before := exp.Add(-time.Second)
	good := mustMint(t, testSecret, Claims{Room: "r1", Identity: "alice", Expiry: exp})
	signed, sig, _ := strings.Cut(good[len("sotto1."):], ".")
	otherClaims := base64.RawURLEncoding.EncodeToString([]byte(`{"room":"r1","sub":"mallory","exp":2000000000}`))
	short := []byte("short")
	shortTok, err := sign(short, tokens.prefix, wireClaims{Room: "r1", Subject: "alice", Expiry: exp.Unix()})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, tok, room string
		secret          []byte
		now             time.Time
		want            error
	}{
		{"garbage", "not-a-token", "r1", testSecret, before, ErrInvalid},
		{"empty", "", "r1", testSecret, before, ErrInvalid},
		{"tampered claims", "sotto1." + otherClaims + "." + sig, "r1", testSecret, before, ErrInvalid},
		{"tampered MAC", good[:len(good)-2] + "AA", "r1", testSecret, before, ErrInvalid},
		{"truncated MAC", good[:len(good)-1], "r1", testSecret, before, ErrInvalid},
		{"no MAC", "sotto1." + signed, "r1", testSecret, before, ErrInvalid},
		{"other prefix", "sotto2." + signed + "." + sig, "r1", testSecret, before, ErrInvalid},
		{"extra part", good + ".x", "r1", testSecret, before, ErrInvalid},
		{"too long", good + strings.Repeat("A", maxLen), "r1", testSecret, before, ErrInvalid},
		{"other secret", good, "r1", []byte("another-secret-0123456789"), before, ErrInvalid},
		{"short secret", shortTok, "r1", short, before, ErrInvalid},
		{"empty secret", good, "r1", nil, before, ErrInvalid},
		{"expired", good, "r1", testSecret, exp, ErrExpired},
		{"other room", good, "r2", testSecret, before, ErrWrongRoom},
		{"no room", good, "", testSecret, before, ErrWrongRoom},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Verify(c.secret, c.tok, c.room, c.now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify error = %v, want %v", err, c.want)
			}
			if got != (Claims{}) {
				t.Fatalf("Verify returned claims %+v with its error", got)
			}
		})
	}
	if _, err := Verify(testSecret, good, "r1", before); err != nil {
		t.Fatalf("the good token, a second before expiry: %v", err)
	}
}

func TestVerifyRefusesInvalidNames(t *testing.T) {
	// Claims signed with the right key but names Mint would refuse.
	for _, w := range []wireClaims{
		{Room: "bad room", Subject: "alice", Expiry: 2_000_000_000},
		{Room: "r1", Subject: "", Expiry: 2_000_000_000},
		{Room: strings.Repeat("r", 65), Subject: "alice", Expiry: 2_000_000_000},
		{Room: "r1", From: "alice", Expiry: 2_000_000_000}, // an invite's name claim
	} {
		tok, err := sign(testSecret, tokens.prefix, w)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyAnyRoom(testSecret, tok, time.Unix(0, 0)); !errors.Is(err, ErrInvalid) {
			t.Errorf("claims %+v: error %v, want ErrInvalid", w, err)
		}
		if _, err := ParseUnverified(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("claims %+v: ParseUnverified error %v, want ErrInvalid", w, err)
		}
	}
}

func TestMintRefuses(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	short := []byte("short")
	for name, mint := range map[string]func() (string, error){
		"token, short secret": func() (string, error) { return Mint(short, Claims{Room: "r", Identity: "a", Expiry: exp}) },
		"token, bad room":     func() (string, error) { return Mint(testSecret, Claims{Room: "bad room", Identity: "a", Expiry: exp}) },
		"token, no room":      func() (string, error) { return Mint(testSecret, Claims{Identity: "a", Expiry: exp}) },
		"token, bad identity": func() (string, error) { return Mint(testSecret, Claims{Room: "r", Identity: "a/b", Expiry: exp}) },
		"token, long identity": func() (string, error) {
			return Mint(testSecret, Claims{Room: "r", Identity: strings.Repeat("a", 65), Expiry: exp})
		},
		"token, no expiry":     func() (string, error) { return Mint(testSecret, Claims{Room: "r", Identity: "a"}) },
		"invite, short secret": func() (string, error) { return MintInvite(short, InviteClaims{Room: "r", Inviter: "a", Expiry: exp}) },
		"invite, bad room": func() (string, error) {
			return MintInvite(testSecret, InviteClaims{Room: "bad room", Inviter: "a", Expiry: exp})
		},
		"invite, bad inviter": func() (string, error) {
			return MintInvite(testSecret, InviteClaims{Room: "r", Inviter: "a b", Expiry: exp})
		},
		"invite, no expiry": func() (string, error) { return MintInvite(testSecret, InviteClaims{Room: "r", Inviter: "a"}) },
	} {
		if s, err := mint(); err == nil {
			t.Errorf("%s: minted %q", name, s)
		}
	}
}

// ParseUnverified leaves the MAC to the server: a client reads a forged
// token as well as a real one, and the server refuses it.
func TestParseUnverifiedLeavesTheMACToTheServer(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	tok := mustMint(t, testSecret, Claims{Room: "r1", Identity: "alice", Expiry: exp})
	forged := tok[:strings.LastIndex(tok, ".")+1] + "bWFj"
	c, err := ParseUnverified(forged)
	if err != nil || c.Room != "r1" || c.Identity != "alice" || c.Expiry.Unix() != exp.Unix() {
		t.Fatalf("ParseUnverified(forged) = %+v, %v", c, err)
	}
	if _, err := Verify(testSecret, forged, "r1", time.Now()); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Verify(forged): %v, want ErrInvalid", err)
	}
}

func TestParseUnverifiedRefusesMalformed(t *testing.T) {
	enc := base64.RawURLEncoding.EncodeToString
	mac := enc(make([]byte, 32))
	for name, tok := range map[string]string{
		"empty":          "",
		"two parts":      "sotto1." + enc([]byte(`{"room":"r","sub":"a"}`)),
		"wrong prefix":   "sotto2." + enc([]byte(`{"room":"r","sub":"a"}`)) + "." + mac,
		"invite":         "sotto-invite1." + enc([]byte(`{"room":"r","from":"a"}`)) + "." + mac,
		"no mac":         "sotto1." + enc([]byte(`{"room":"r","sub":"a"}`)) + ".",
		"bad base64":     "sotto1.!!!." + mac,
		"not JSON":       "sotto1." + enc([]byte(`room=r`)) + "." + mac,
		"no room":        "sotto1." + enc([]byte(`{"sub":"a"}`)) + "." + mac,
		"no identity":    "sotto1." + enc([]byte(`{"room":"r"}`)) + "." + mac,
		"bad room":       "sotto1." + enc([]byte(`{"room":"../r","sub":"a"}`)) + "." + mac,
		"too many parts": "sotto1.a.b.c",
	} {
		t.Run(name, func(t *testing.T) {
			if c, err := ParseUnverified(tok); !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseUnverified(%q) = %+v, %v; want ErrInvalid", tok, c, err)
			}
		})
	}
}

func TestValidNames(t *testing.T) {
	for name, want := range map[string]bool{
		"standup": true, "a": true, "A-z_0": true, strings.Repeat("r", 64): true,
		"": false, "a b": false, "a.b": false, "a@b": false, "é": false, strings.Repeat("r", 65): false,
	} {
		if got := ValidRoom(name); got != want {
			t.Errorf("ValidRoom(%q) = %v, want %v", name, got, want)
		}
	}
	for id, want := range map[string]bool{
		"alice": true, "alice@example.com": true, "bob.smith-8d2hx0w5": true, "a_b": true,
		"": false, "a b": false, "a/b": false, "a:b": false, strings.Repeat("i", 65): false,
	} {
		if got := ValidIdentity(id); got != want {
			t.Errorf("ValidIdentity(%q) = %v, want %v", id, got, want)
		}
	}
}
