package client

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
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

// A FileTrustStore keeps what it remembers across reopening, in a file only
// its owner reads, and refuses a file it cannot trust.
func TestFileTrustStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "trust.json")
	s, err := NewFileTrustStore(path)
	if err != nil {
		t.Fatalf("missing file: %v", err)
	}
	if got, err := s.Lookup("alice"); err != nil || !got.Key.IsZero() {
		t.Fatalf("empty store: %+v, %v", got, err)
	}
	a, _ := e2ee.NewIdentity(nil)
	b, _ := e2ee.NewIdentity(nil)
	if err := s.Remember("alice", TrustedIdentity{Key: a.Public(), Verified: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remember("bob", TrustedIdentity{Key: b.Public()}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("trust file mode %v (%v), want 0600", fi.Mode(), err)
	}
	again, err := NewFileTrustStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.Lookup("alice"); !got.Key.Equal(a.Public()) || !got.Verified {
		t.Fatalf("alice after reopening: %+v", got)
	}
	if got, _ := again.Lookup("bob"); !got.Key.Equal(b.Public()) || got.Verified {
		t.Fatalf("bob after reopening: %+v", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("%d files beside the store, want it alone", len(entries))
	}

	// A store that cannot write changes nothing.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	gone := filepath.Join(t.TempDir(), "missing", "trust.json")
	broken, err := NewFileTrustStore(gone)
	if err != nil {
		t.Fatal(err)
	}
	if err := broken.Remember("alice", TrustedIdentity{Key: a.Public()}); err == nil {
		t.Fatal("Remember into a missing directory succeeded")
	}
	if got, _ := broken.Lookup("alice"); !got.Key.IsZero() {
		t.Fatalf("failed Remember kept %+v", got)
	}

	raw := a.Public().Bytes()
	raw[len(raw)-1] ^= 1 // breaks the identity's self-signature
	for name, content := range map[string]string{
		"not JSON":      "{",
		"other version": `{"version":2,"identities":{}}`,
		"bad key":       fmt.Sprintf(`{"version":1,"identities":{"alice":{"key":%q}}}`, base64.StdEncoding.EncodeToString(raw)),
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := NewFileTrustStore(path); err == nil {
			t.Errorf("%s: trust file accepted", name)
		}
	}
}
