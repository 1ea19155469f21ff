package signaling

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/sotto-voice/sotto/api"
)

func upload(n int, firstID uint32, fill byte) api.PrekeyUpload {
	u := api.PrekeyUpload{
		IdentityKey:  bytes.Repeat([]byte{fill}, 128),
		SignedPrekey: api.SignedPrekey{ID: 1, Key: bytes.Repeat([]byte{fill + 1}, 32), Signature: bytes.Repeat([]byte{fill + 2}, 64)},
	}
	for i := range n {
		u.OneTimePrekeys = append(u.OneTimePrekeys, api.OneTimePrekey{ID: firstID + uint32(i), Key: bytes.Repeat([]byte{byte(i)}, 32)})
	}
	return u
}

func (s *testServer) putPrekeys(identity string, u api.PrekeyUpload) (int, []byte) {
	s.t.Helper()
	body, _ := json.Marshal(u)
	return s.do(http.MethodPut, "/v1/prekeys", "Bearer "+mintToken(s.t, "any", identity), body)
}

func (s *testServer) fetchBundle(as, identity string) api.PrekeyBundle {
	s.t.Helper()
	status, b := s.do(http.MethodGet, "/v1/prekeys/"+identity, "Bearer "+mintToken(s.t, "any", as), nil)
	if status != http.StatusOK {
		s.t.Fatalf("fetch %s: %d %s", identity, status, b)
	}
	var bundle api.PrekeyBundle
	if err := json.Unmarshal(b, &bundle); err != nil {
		s.t.Fatal(err)
	}
	return bundle
}

func TestPrekeyDirectory(t *testing.T) {
	s := newTestServer(t, nil)
	jr, _ := s.join("r1", "alice")
	ea := s.connect(jr)

	status, b := s.putPrekeys("alice", upload(6, 1, 10))
	if status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":6}` {
		t.Fatalf("upload: %d %s", status, b)
	}
	// The bundle is bound to the token's identity: Bob's upload is Bob's.
	if status, b := s.putPrekeys("bob", upload(1, 1, 50)); status != http.StatusOK {
		t.Fatalf("bob upload: %d %s", status, b)
	}
	seen := map[uint32]bool{}
	for want := 5; want >= 0; want-- {
		bundle := s.fetchBundle("bob", "alice")
		if bundle.Identity != "alice" || bundle.IdentityKey[0] != 10 || len(bundle.SignedPrekey.Signature) != 64 || bundle.OneTimePrekey == nil {
			t.Fatalf("bundle %+v", bundle)
		}
		if seen[bundle.OneTimePrekey.ID] {
			t.Fatalf("one-time prekey %d handed out twice", bundle.OneTimePrekey.ID)
		}
		seen[bundle.OneTimePrekey.ID] = true
		if want < PrekeysLowWater {
			var low api.PrekeysLow
			ea.decode(ea.expect(api.TypePrekeysLow), &low)
			if low.Remaining != want {
				t.Fatalf("prekeys_low remaining %d, want %d", low.Remaining, want)
			}
		}
	}
	// Exhausted: the bundle comes without a one-time prekey.
	if bundle := s.fetchBundle("carol", "alice"); bundle.OneTimePrekey != nil || len(bundle.IdentityKey) != 128 {
		t.Fatalf("exhausted bundle %+v", bundle)
	}
	if bundle := s.fetchBundle("alice", "bob"); bundle.IdentityKey[0] != 50 || bundle.OneTimePrekey == nil {
		t.Fatalf("bob's bundle %+v", bundle)
	}
	// A refill is reflected in the status.
	if status, b := s.putPrekeys("alice", upload(3, 100, 10)); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":3}` {
		t.Fatalf("refill: %d %s", status, b)
	}
	if status, b := s.putPrekeys("alice", upload(2, 200, 10)); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":5}` {
		t.Fatalf("second refill: %d %s", status, b)
	}
	// A new signed prekey (a restarted device) replaces the one-time
	// prekeys stored with the old one.
	restarted := upload(2, 300, 10)
	restarted.SignedPrekey.Key = bytes.Repeat([]byte{99}, 32)
	if status, b := s.putPrekeys("alice", restarted); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":2}` {
		t.Fatalf("upload with a new signed prekey: %d %s", status, b)
	}
	if bundle := s.fetchBundle("bob", "alice"); bundle.OneTimePrekey == nil || bundle.OneTimePrekey.ID != 300 || bundle.SignedPrekey.Key[0] != 99 {
		t.Fatalf("bundle after restart %+v", bundle)
	}

	status, b = s.do(http.MethodGet, "/v1/prekeys/nobody", "Bearer "+mintToken(t, "any", "bob"), nil)
	s.expectError(status, b, http.StatusNotFound, api.CodeNotFound)
	status, b = s.do(http.MethodGet, "/v1/prekeys/alice", "", nil)
	s.expectError(status, b, http.StatusUnauthorized, api.CodeUnauthorized)
	status, b = s.do(http.MethodGet, "/v1/prekeys/bad%20name", "Bearer "+mintToken(t, "any", "bob"), nil)
	s.expectError(status, b, http.StatusBadRequest, api.CodeInvalidName)
}

func TestPrekeyUploadValidation(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxPrekeys = 150 })
	bad := func(edit func(*api.PrekeyUpload)) api.PrekeyUpload {
		u := upload(2, 1, 1)
		edit(&u)
		return u
	}
	for name, u := range map[string]api.PrekeyUpload{
		"short identity key": bad(func(u *api.PrekeyUpload) { u.IdentityKey = u.IdentityKey[:127] }),
		"long signed prekey": bad(func(u *api.PrekeyUpload) { u.SignedPrekey.Key = make([]byte, 33) }),
		"short signature":    bad(func(u *api.PrekeyUpload) { u.SignedPrekey.Signature = make([]byte, 63) }),
		"short one-time key": bad(func(u *api.PrekeyUpload) { u.OneTimePrekeys[1].Key = nil }),
		"duplicate id":       bad(func(u *api.PrekeyUpload) { u.OneTimePrekeys[1].ID = u.OneTimePrekeys[0].ID }),
		"too many at once":   upload(MaxPrekeysPerUpload+1, 1, 1),
	} {
		t.Run(name, func(t *testing.T) {
			status, b := s.putPrekeys("alice", u)
			s.expectError(status, b, http.StatusBadRequest, api.CodeBadRequest)
		})
	}
	status, b := s.do(http.MethodPut, "/v1/prekeys", "Bearer "+mintToken(t, "any", "alice"), []byte(`{"identity_key": "!!"}`))
	s.expectError(status, b, http.StatusBadRequest, api.CodeInvalidJSON)

	// The per-identity cap counts what is stored; ids must stay unique.
	if status, b := s.putPrekeys("alice", upload(100, 1, 1)); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, b)
	}
	status, b = s.putPrekeys("alice", upload(51, 1000, 1))
	s.expectError(status, b, http.StatusBadRequest, api.CodeBadRequest)
	status, b = s.putPrekeys("alice", upload(1, 5, 1))
	s.expectError(status, b, http.StatusBadRequest, api.CodeBadRequest)
	// A new identity key replaces the bundle whole, so the cap starts over.
	status, b = s.putPrekeys("alice", upload(100, 1, 2))
	if status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":100}` {
		t.Fatalf("new identity: %d %s", status, b)
	}
}
