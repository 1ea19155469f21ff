package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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
// Join, so that a changed key is noticed across calls: NewFileTrustStore
// keeps one in a file. Implementations must be safe for concurrent use.
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

// FileTrustStore is a TrustStore kept in a file, so that the identity keys
// a caller has seen, and the ones its user verified, outlive the process:
// a key that changed between two calls, or two runs, is reported. Open it
// once with NewFileTrustStore and pass it to every Join.
//
// The file is JSON and holds public keys and verification marks, no
// secret; it is written with mode 0600 all the same, as it tells whom the
// user talks to. Every Remember replaces it atomically (a new file renamed
// over the old). The store reads the file once, when opened: use one file
// from one process at a time.
type FileTrustStore struct {
	path string

	mu    sync.Mutex
	names map[string]TrustedIdentity
}

// trustFileVersion is the version of the file's format.
const trustFileVersion = 1

// trustFile is the file's content.
type trustFile struct {
	Version    int                       `json:"version"`
	Identities map[string]trustFileEntry `json:"identities"` // by identity name
}

type trustFileEntry struct {
	Key      []byte `json:"key"` // e2ee.PublicIdentity.Bytes
	Verified bool   `json:"verified"`
}

// NewFileTrustStore opens the trust store kept in the file at path,
// reading what it remembers. A missing file is an empty store, created by
// the first Remember; its directory must exist.
func NewFileTrustStore(path string) (*FileTrustStore, error) {
	s := &FileTrustStore{path: path, names: make(map[string]TrustedIdentity)}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("client: open trust store: %w", err)
	}
	var f trustFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("client: trust store %s: %w", path, err)
	}
	if f.Version != trustFileVersion {
		return nil, fmt.Errorf("client: trust store %s: version %d, want %d", path, f.Version, trustFileVersion)
	}
	for name, e := range f.Identities {
		key, err := e2ee.ParsePublicIdentity(e.Key)
		if err != nil {
			return nil, fmt.Errorf("client: trust store %s: identity %q: %w", path, name, err)
		}
		s.names[name] = TrustedIdentity{Key: key, Verified: e.Verified}
	}
	return s, nil
}

// Lookup implements TrustStore.
func (s *FileTrustStore) Lookup(name string) (TrustedIdentity, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.names[name], nil
}

// Remember implements TrustStore: the file is rewritten before Remember
// returns, and the store is unchanged if that fails.
func (s *FileTrustStore) Remember(name string, t TrustedIdentity) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := trustFile{Version: trustFileVersion, Identities: make(map[string]trustFileEntry, len(s.names)+1)}
	for n, e := range s.names {
		f.Identities[n] = trustFileEntry{Key: e.Key.Bytes(), Verified: e.Verified}
	}
	f.Identities[name] = trustFileEntry{Key: t.Key.Bytes(), Verified: t.Verified}
	b, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		return fmt.Errorf("client: trust store: %w", err)
	}
	if err := writeFileAtomic(s.path, b); err != nil {
		return fmt.Errorf("client: trust store: %w", err)
	}
	s.names[name] = t
	return nil
}

// writeFileAtomic replaces the file at path with b, mode 0600: a reader
// sees the old content or the new, never a part.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, nothing is there
	// CreateTemp makes the file with mode 0600.
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
