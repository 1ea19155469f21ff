package client

import (
	"testing"

	"github.com/sotto-voice/sotto/e2ee"
)

// MemoryTrustStore remembers per name and replaces on Remember.
func TestMemoryTrustStore(t *testing.T) {
	var s MemoryTrustStore
	if got, err := s.Lookup("alice"); err != nil || !got.Key.IsZero() {
		t.Fatalf("empty store: %+v, %v", got, err)
	}
	a, _ := e2ee.NewIdentity(nil)
	b, _ := e2ee.NewIdentity(nil)
	s.Remember("alice", TrustedIdentity{Key: a.Public(), Verified: true})
	s.Remember("bob", TrustedIdentity{Key: b.Public()})
	if got, _ := s.Lookup("alice"); !got.Key.Equal(a.Public()) || !got.Verified {
		t.Fatalf("alice: %+v", got)
	}
	s.Remember("alice", TrustedIdentity{Key: b.Public()})
	if got, _ := s.Lookup("alice"); !got.Key.Equal(b.Public()) || got.Verified {
		t.Fatalf("alice replaced: %+v", got)
	}
}
