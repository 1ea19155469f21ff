package client

import (
	"sync"

	"github.com/sotto-voice/sotto/e2ee"
)

// TrustedIdentity is what a TrustStore remembers about one identity name:
// the public identity key first seen for it (or accepted since) and whether
// the user verified it by comparing safety numbers.
type TrustedIdentity struct {
	Key      e2ee.PublicIdentity
	Verified bool
}

// TrustStore remembers, per identity name (the identity the server's token
// grants, such as "alice"), the public identity key a call first saw for
// that name. A call trusts a name's first key on first use and reports any
// later different key with an IdentityChanged event; it never replaces a
// remembered key on its own. Keep one store for the lifetime of the
// application (persisting it if the application can) and pass it to every
// Join, so that a changed key is noticed across calls. Implementations must
// be safe for concurrent use.
type TrustStore interface {
	// Lookup returns what is remembered for name. A zero Key means
	// nothing is.
	Lookup(name string) (TrustedIdentity, error)
	// Remember records t for name, replacing what was remembered.
	Remember(name string, t TrustedIdentity) error
}

// MemoryTrustStore is a TrustStore in memory, for applications that keep
// nothing between runs. The zero value is ready to use.
type MemoryTrustStore struct {
	mu    sync.Mutex
	names map[string]TrustedIdentity
}

// NewMemoryTrustStore returns an empty in-memory TrustStore.
func NewMemoryTrustStore() *MemoryTrustStore { return &MemoryTrustStore{} }

// Lookup implements TrustStore.
func (s *MemoryTrustStore) Lookup(name string) (TrustedIdentity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[name], nil
}

// Remember implements TrustStore.
func (s *MemoryTrustStore) Remember(name string, t TrustedIdentity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.names == nil {
		s.names = make(map[string]TrustedIdentity)
	}
	s.names[name] = t
	return nil
}
