package token

import (
	"testing"
	"time"
)

// FuzzParse feeds arbitrary strings to every reader of the format. None may
// panic; what verifies must read the same without verification; and what
// ParseUnverified accepts must carry names a client can put in a URL.
func FuzzParse(f *testing.F) {
	v := loadVectors(f)
	for _, x := range v.Tokens {
		f.Add(x.Token)
	}
	for _, x := range v.Invites {
		f.Add(x.Invite)
	}
	for _, x := range v.Reject {
		f.Add(x.Value)
	}
	secret := []byte(v.Tokens[0].Secret)
	now := time.Unix(v.Tokens[0].Expiry, 0).Add(-time.Hour)
	f.Fuzz(func(t *testing.T, s string) {
		parsed, perr := ParseUnverified(s)
		if perr == nil && (!ValidRoom(parsed.Room) || !ValidIdentity(parsed.Identity)) {
			t.Fatalf("ParseUnverified(%q) accepted claims %+v", s, parsed)
		}
		if c, err := VerifyAnyRoom(secret, s, now); err == nil && (perr != nil || c != parsed) {
			t.Fatalf("%q verifies as %+v but parses as %+v, %v", s, c, parsed, perr)
		}
		if c, err := VerifyInvite(secret, s, now); err == nil && (!ValidRoom(c.Room) || !ValidIdentity(c.Inviter)) {
			t.Fatalf("VerifyInvite(%q) accepted claims %+v", s, c)
		}
	})
}
