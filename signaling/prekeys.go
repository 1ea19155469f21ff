package signaling

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

// Sizes the directory checks without interpreting the keys: the 128-byte
// public identity of docs/PROTOCOL.md §1, X25519 public keys and Ed25519
// signatures.
const (
	identityKeyLen     = 128
	prekeyKeyLen       = 32
	prekeySignatureLen = 64
	// MaxPrekeysPerUpload caps the one-time prekeys in one PUT /v1/prekeys.
	MaxPrekeysPerUpload = 100
	// PrekeysLowWater: below this many one-time prekeys left, the owner's
	// event streams get a prekeys_low event.
	PrekeysLowWater = 5
)

// prekeyDirectory stores each identity's X3DH bundle in memory.
type prekeyDirectory struct {
	max     int
	mu      sync.Mutex
	bundles map[string]*storedBundle
}

type storedBundle struct {
	identityKey []byte
	signed      api.SignedPrekey
	oneTime     []api.OneTimePrekey // handed out from the front
	kem         api.KEMPrekey
	oneTimeKEM  []api.KEMPrekey // handed out from the front
}

func newPrekeyDirectory(max int) *prekeyDirectory {
	return &prekeyDirectory{max: max, bundles: make(map[string]*storedBundle)}
}

// validate checks sizes and counts of an upload.
func validateUpload(u *api.PrekeyUpload) *api.Error {
	switch {
	case len(u.IdentityKey) != identityKeyLen:
		return errorf(api.CodeBadRequest, "identity_key must be %d bytes", identityKeyLen)
	case len(u.SignedPrekey.Key) != prekeyKeyLen:
		return errorf(api.CodeBadRequest, "signed_prekey.key must be %d bytes", prekeyKeyLen)
	case len(u.SignedPrekey.Signature) != prekeySignatureLen:
		return errorf(api.CodeBadRequest, "signed_prekey.signature must be %d bytes", prekeySignatureLen)
	case len(u.OneTimePrekeys) > MaxPrekeysPerUpload:
		return errorf(api.CodeBadRequest, "at most %d one-time prekeys per upload", MaxPrekeysPerUpload)
	}
	seen := make(map[uint32]bool, len(u.OneTimePrekeys))
	for i, k := range u.OneTimePrekeys {
		if len(k.Key) != prekeyKeyLen {
			return errorf(api.CodeBadRequest, "one_time_prekeys[%d].key must be %d bytes", i, prekeyKeyLen)
		}
		if seen[k.ID] {
			return errorf(api.CodeBadRequest, "one_time_prekeys[%d]: duplicate id %d", i, k.ID)
		}
		seen[k.ID] = true
	}
	return nil
}

// put stores an upload for identity and returns the one-time prekeys held.
func (d *prekeyDirectory) put(identity string, u *api.PrekeyUpload) (int, *api.Error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.bundles[identity]
	switch {
	case b == nil || string(b.identityKey) != string(u.IdentityKey):
		// A new identity key makes every stored prekey meaningless.
		b = &storedBundle{}
	case string(b.signed.Key) != string(u.SignedPrekey.Key):
		// A new signed prekey comes from a restarted device, which may no
		// longer hold the private halves of the one-time prekeys stored
		// before: handing them out would start sessions it cannot accept.
		b = &storedBundle{}
	}
	for _, k := range u.OneTimePrekeys {
		for _, old := range b.oneTime {
			if old.ID == k.ID {
				return 0, errorf(api.CodeBadRequest, "one-time prekey id %d is already stored", k.ID)
			}
		}
	}
	if len(b.oneTime)+len(u.OneTimePrekeys) > d.max {
		return 0, errorf(api.CodeBadRequest, "at most %d one-time prekeys may be stored; %d are", d.max, len(b.oneTime))
	}
	b.identityKey = clone(u.IdentityKey)
	b.signed = api.SignedPrekey{ID: u.SignedPrekey.ID, Key: clone(u.SignedPrekey.Key), Signature: clone(u.SignedPrekey.Signature)}
	for _, k := range u.OneTimePrekeys {
		b.oneTime = append(b.oneTime, api.OneTimePrekey{ID: k.ID, Key: clone(k.Key)})
	}
	b.kem = cloneKEM(u.KEMPrekey)
	for _, k := range u.OneTimeKEMPrekeys {
		b.oneTimeKEM = append(b.oneTimeKEM, cloneKEM(k))
	}
	d.bundles[identity] = b
	return len(b.oneTime), nil
}

// take returns identity's bundle and how many one-time prekeys remain. With
// oneTime, the bundle carries the oldest one-time prekey, if any is left,
// removed from the store.
func (d *prekeyDirectory) take(identity string, oneTime bool) (api.PrekeyBundle, int, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.bundles[identity]
	if b == nil {
		return api.PrekeyBundle{}, 0, false
	}
	out := api.PrekeyBundle{Identity: identity, IdentityKey: b.identityKey, SignedPrekey: b.signed, KEMPrekey: b.kem}
	if oneTime && len(b.oneTime) > 0 {
		k := b.oneTime[0]
		b.oneTime = b.oneTime[1:]
		out.OneTimePrekey = &k
	}
	if oneTime && len(b.oneTimeKEM) > 0 {
		k := b.oneTimeKEM[0]
		b.oneTimeKEM = b.oneTimeKEM[1:]
		out.OneTimeKEMPrekey = &k
	}
	return out, len(b.oneTime), true
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

func cloneKEM(k api.KEMPrekey) api.KEMPrekey {
	return api.KEMPrekey{ID: k.ID, Key: clone(k.Key), Signature: clone(k.Signature)}
}

// handlePrekeyUpload serves PUT /v1/prekeys.
func (s *Server) handlePrekeyUpload(w http.ResponseWriter, r *http.Request) {
	claims, apiErr := s.bearerAnyRoom(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	var u api.PrekeyUpload
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &u); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if apiErr := validateUpload(&u); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	n, apiErr := s.prekeys.put(claims.Identity, &u)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, api.PrekeyStatus{Remaining: n})
}

// handlePrekeyFetch serves GET /v1/prekeys/{identity} under the rules of
// prekeyaccess.go. An identity that is absent and one the caller may not
// see get the same answer, so that fetches tell nobody who exists.
func (s *Server) handlePrekeyFetch(w http.ResponseWriter, r *http.Request) {
	claims, apiErr := s.bearerAnyRoom(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	target := r.PathValue("identity")
	if !token.ValidIdentity(target) {
		writeError(w, errorf(api.CodeInvalidName, "identity must be 1-64 of A-Z a-z 0-9 . _ @ -"))
		return
	}
	now := s.now()
	if ok, wait := s.access.requesters.allow(claims.Identity, now); !ok {
		s.refusePrekeyFetch(w, wait, errorf(api.CodeRateLimited, "too many prekey fetches by this identity"))
		return
	}
	s.mu.Lock()
	visible := s.mayFetchLocked(claims.Room, claims.Identity, target)
	s.mu.Unlock()
	if !visible {
		s.refusePrekeyFetch(w, 0, errNoBundle())
		return
	}
	if ok, wait := s.access.targets.allow(target, now); !ok {
		s.refusePrekeyFetch(w, wait, errorf(api.CodeRateLimited, "too many prekey fetches of this identity"))
		return
	}
	oneTime := s.access.grants.claim(claims.Identity, target, now)
	bundle, remaining, ok := s.prekeys.take(target, oneTime)
	if oneTime && bundle.OneTimePrekey == nil && bundle.OneTimeKEMPrekey == nil {
		s.access.grants.release(claims.Identity, target)
	}
	if !ok {
		s.refusePrekeyFetch(w, 0, errNoBundle())
		return
	}
	if remaining < PrekeysLowWater {
		s.notifyIdentity(target, encode(api.PrekeysLow{Type: api.TypePrekeysLow, Remaining: remaining}))
	}
	writeJSON(w, http.StatusOK, bundle)
}

// errNoBundle answers both an identity without a bundle and one the caller
// may not see; it names neither.
func errNoBundle() *api.Error {
	return errorf(api.CodeNotFound, "no prekey bundle of this identity is available to this token")
}

// refusePrekeyFetch counts a refused fetch by its code and answers it, with
// Retry-After when wait is set.
func (s *Server) refusePrekeyFetch(w http.ResponseWriter, wait time.Duration, err *api.Error) {
	s.counters.count(&s.counters.prekeyFetchesRefused, err.Code)
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	}
	writeError(w, err)
}

// notifyIdentity queues msg on the event streams of every participant
// authenticated as identity, in any room.
func (s *Server) notifyIdentity(identity string, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rm := range s.rooms {
		for _, p := range rm.participants {
			if p.active && p.identity == identity {
				s.sendLocked(p, msg)
			}
		}
	}
}
