package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
)

// Sizes the directory checks without interpreting the keys: the 128-byte
// public identity of docs/PROTOCOL.md §1, X25519 public keys, ML-KEM-768
// encapsulation keys and Ed25519 signatures.
const (
	identityKeyLen     = 128
	prekeyKeyLen       = 32
	kemKeyLen          = 1184
	prekeySignatureLen = 64
	// MaxPrekeysPerUpload caps the one-time prekeys in one PUT /v1/prekeys.
	MaxPrekeysPerUpload = 100
	// MaxKEMPrekeysPerUpload caps the one-time ML-KEM prekeys in one
	// upload, so that a full upload stays within the default body limit.
	MaxKEMPrekeysPerUpload = 32
	// PrekeysLowWater: below this many one-time prekeys left, the owner's
	// event streams get a prekeys_low event.
	PrekeysLowWater = 5
)

// The directory lives in the state store. This file says what it keeps
// there: the bundle's long-lived part (with the signed last-resort KEM
// prekey), opaque to the store, and the one-time prekeys of each kind in a
// pool of their own.
const (
	// oneTimePool names the X25519 one-time prekeys in the store.
	oneTimePool = "x25519"
	// oneTimeKEMPool names the one-time ML-KEM-768 prekeys; the store
	// keeps each as its key followed by its signature.
	oneTimeKEMPool = "mlkem768"
	// PrekeyTTL is how long the directory keeps a bundle after its last
	// upload or fetch. A bundle is only handed out while its owner is in a
	// room, and clients upload as they join; this bounds what a store
	// that survives restarts holds of identities never seen again.
	PrekeyTTL = 7 * 24 * time.Hour
)

// storedBundle is the long-lived part of a bundle as the store keeps it.
type storedBundle struct {
	IdentityKey  []byte           `json:"identity_key"`
	SignedPrekey api.SignedPrekey `json:"signed_prekey"`
	KEMPrekey    api.KEMPrekey    `json:"kem_prekey"`
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
	case len(u.KEMPrekey.Key) == 0:
		// No silent downgrade: every bundle lets its fetcher run PQXDH.
		return errorf(api.CodeBadRequest, "kem_prekey is required (PQXDH)")
	case len(u.OneTimeKEMPrekeys) > MaxKEMPrekeysPerUpload:
		return errorf(api.CodeBadRequest, "at most %d one-time KEM prekeys per upload", MaxKEMPrekeysPerUpload)
	}
	if err := validateKEM("kem_prekey", u.KEMPrekey); err != nil {
		return err
	}
	seenKEM := map[uint32]bool{u.KEMPrekey.ID: true}
	for i, k := range u.OneTimeKEMPrekeys {
		if err := validateKEM(fmt.Sprintf("one_time_kem_prekeys[%d]", i), k); err != nil {
			return err
		}
		if seenKEM[k.ID] {
			return errorf(api.CodeBadRequest, "one_time_kem_prekeys[%d]: duplicate id %d", i, k.ID)
		}
		seenKEM[k.ID] = true
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

func validateKEM(name string, k api.KEMPrekey) *api.Error {
	switch {
	case len(k.Key) != kemKeyLen:
		return errorf(api.CodeBadRequest, "%s.key must be %d bytes", name, kemKeyLen)
	case len(k.Signature) != prekeySignatureLen:
		return errorf(api.CodeBadRequest, "%s.signature must be %d bytes", name, prekeySignatureLen)
	}
	return nil
}

// putPrekeys stores an upload for identity and returns the one-time
// prekeys held of each kind.
func (s *Server) putPrekeys(ctx context.Context, identity string, u *api.PrekeyUpload) (api.PrekeyStatus, *api.Error) {
	bundle, err := json.Marshal(storedBundle{IdentityKey: u.IdentityKey, SignedPrekey: u.SignedPrekey, KEMPrekey: u.KEMPrekey})
	if err != nil {
		return api.PrekeyStatus{}, errorf(api.CodeInternal, "encode bundle: %v", err)
	}
	oneTime := make([]store.OneTimePrekey, len(u.OneTimePrekeys))
	for i, k := range u.OneTimePrekeys {
		oneTime[i] = store.OneTimePrekey{ID: k.ID, Key: k.Key}
	}
	oneTimeKEM := make([]store.OneTimePrekey, len(u.OneTimeKEMPrekeys))
	for i, k := range u.OneTimeKEMPrekeys {
		oneTimeKEM[i] = store.OneTimePrekey{ID: k.ID, Key: append(clone(k.Key), k.Signature...)}
	}
	remaining, err := s.store.PutPrekeys(ctx, identity, store.PrekeyUpload{
		// A new identity key makes every stored prekey meaningless, and a
		// new signed prekey comes from a restarted device, which may no
		// longer hold the private halves of the one-time prekeys stored
		// before: handing them out would start sessions it cannot accept.
		// Either replaces the stored one-time prekeys. (Both have fixed
		// sizes, so their concatenation is unambiguous.)
		Epoch:   append(clone(u.IdentityKey), u.SignedPrekey.Key...),
		Bundle:  bundle,
		OneTime: map[string][]store.OneTimePrekey{oneTimePool: oneTime, oneTimeKEMPool: oneTimeKEM},
		Max:     s.cfg.MaxPrekeys,
		TTL:     PrekeyTTL,
	})
	switch {
	case errors.Is(err, store.ErrDuplicatePrekey):
		return api.PrekeyStatus{}, errorf(api.CodeBadRequest, "a one-time prekey id of this upload is already stored")
	case errors.Is(err, store.ErrTooManyPrekeys):
		return api.PrekeyStatus{}, errorf(api.CodeBadRequest, "at most %d one-time prekeys of each kind may be stored", s.cfg.MaxPrekeys)
	case err != nil:
		return api.PrekeyStatus{}, s.storeError(err)
	}
	return status(remaining), nil
}

func status(remaining map[string]int) api.PrekeyStatus {
	return api.PrekeyStatus{Remaining: remaining[oneTimePool], RemainingKEM: remaining[oneTimeKEMPool]}
}

// takeBundle returns identity's bundle and how many one-time prekeys of
// each kind remain. With oneTime, the bundle carries the
// oldest one-time prekey of each kind, if any is left, removed from the
// store. store.ErrNotFound if identity has no bundle.
func (s *Server) takeBundle(ctx context.Context, identity string, oneTime bool) (api.PrekeyBundle, api.PrekeyStatus, error) {
	var pools []string
	if oneTime {
		pools = []string{oneTimePool, oneTimeKEMPool}
	}
	f, err := s.store.TakePrekeys(ctx, identity, pools, PrekeyTTL)
	if err != nil {
		return api.PrekeyBundle{}, api.PrekeyStatus{}, err
	}
	var b storedBundle
	if err := json.Unmarshal(f.Bundle, &b); err != nil {
		return api.PrekeyBundle{}, api.PrekeyStatus{}, fmt.Errorf("decode the stored bundle of %s: %w", identity, err)
	}
	out := api.PrekeyBundle{Identity: identity, IdentityKey: b.IdentityKey, SignedPrekey: b.SignedPrekey, KEMPrekey: b.KEMPrekey}
	if k, ok := f.OneTime[oneTimePool]; ok {
		out.OneTimePrekey = &api.OneTimePrekey{ID: k.ID, Key: k.Key}
	}
	if k, ok := f.OneTime[oneTimeKEMPool]; ok && len(k.Key) == kemKeyLen+prekeySignatureLen {
		out.OneTimeKEMPrekey = &api.KEMPrekey{ID: k.ID, Key: k.Key[:kemKeyLen], Signature: k.Key[kemKeyLen:]}
	}
	return out, status(f.Remaining), nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

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
	st, apiErr := s.putPrekeys(r.Context(), claims.Identity, &u)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, st)
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
	running := s.rooms[claims.Room] != nil
	s.mu.Unlock()
	if !visible {
		// Who is in a room only its node knows: in a cluster, a fetch
		// for a room another node runs is sent there.
		if !running && s.owner(w, r, claims.Room) {
			return
		}
		s.refusePrekeyFetch(w, 0, errNoBundle())
		return
	}
	if ok, wait := s.access.targets.allow(target, now); !ok {
		s.refusePrekeyFetch(w, wait, errorf(api.CodeRateLimited, "too many prekey fetches of this identity"))
		return
	}
	ctx := r.Context()
	grant := grantKey(claims.Identity, target)
	oneTime, err := s.store.Mark(ctx, grant, OneTimePrekeyWindow)
	if err != nil {
		s.refusePrekeyFetch(w, 0, s.storeError(err))
		return
	}
	bundle, remaining, err := s.takeBundle(ctx, target, oneTime)
	if oneTime && bundle.OneTimePrekey == nil && bundle.OneTimeKEMPrekey == nil {
		// Nothing was handed out: the requester gets one after a refill.
		// Should this fail, the requester gets none this window: fewer
		// one-time prekeys, never more.
		if err := s.store.Unmark(context.WithoutCancel(ctx), grant); err != nil {
			s.log.Warn("withdraw a one-time prekey grant", "err", err)
		}
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The target is in the call but the directory has no bundle of
		// it: the store lost it (a Redis restarted without persistence).
		// Asking the target to upload again lets the requester's retry
		// find one.
		s.notifyIdentity(target, encode(api.PrekeysLow{Type: api.TypePrekeysLow, Remaining: 0}))
		s.refusePrekeyFetch(w, 0, errNoBundle())
		return
	case err != nil:
		s.refusePrekeyFetch(w, 0, s.storeError(err))
		return
	}
	if remaining.Remaining < PrekeysLowWater || remaining.RemainingKEM < PrekeysLowWater {
		s.notifyIdentity(target, encode(api.PrekeysLow{Type: api.TypePrekeysLow, Remaining: remaining.Remaining, RemainingKEM: remaining.RemainingKEM}))
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
