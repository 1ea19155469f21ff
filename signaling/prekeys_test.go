package signaling

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

func upload(n int, firstID uint32, fill byte) api.PrekeyUpload {
	u := api.PrekeyUpload{
		IdentityKey:  bytes.Repeat([]byte{fill}, 128),
		SignedPrekey: api.SignedPrekey{ID: 1, Key: bytes.Repeat([]byte{fill + 1}, 32), Signature: bytes.Repeat([]byte{fill + 2}, 64)},
	}
	for i := range n {
		u.OneTimePrekeys = append(u.OneTimePrekeys, api.OneTimePrekey{ID: firstID + uint32(i), Key: bytes.Repeat([]byte{byte(i)}, 32)})
	}
	// The ML-KEM prekeys mirror the X25519 ones, as many as one upload
	// may carry.
	u.KEMPrekey = kemPrekey(0, fill+3)
	for i := range min(n, MaxKEMPrekeysPerUpload) {
		u.OneTimeKEMPrekeys = append(u.OneTimeKEMPrekeys, kemPrekey(firstID+uint32(i), byte(i)))
	}
	return u
}

func kemPrekey(id uint32, fill byte) api.KEMPrekey {
	return api.KEMPrekey{ID: id, Key: bytes.Repeat([]byte{fill}, 1184), Signature: bytes.Repeat([]byte{fill + 1}, 64)}
}

func (s *testServer) putPrekeys(identity string, u api.PrekeyUpload) (int, []byte) {
	s.t.Helper()
	body, _ := json.Marshal(u)
	return s.do(http.MethodPut, "/v1/prekeys", "Bearer "+longToken(s.t, "any", identity), body)
}

// fakeClock stands in for Server.now, so that windows and allowances can
// pass without waiting.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// useFakeClock makes s's clock one the test moves.
func (s *testServer) useFakeClock() *fakeClock {
	c := &fakeClock{now: time.Now()}
	s.srv.now = c.Now
	return c
}

// longToken is a token valid for longer than any fake clock here advances.
func longToken(t *testing.T, room, identity string) string {
	t.Helper()
	tok, err := token.Mint(testSecret, token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// fetch asks for identity's bundle with a token admitting as to room.
func (s *testServer) fetch(room, as, identity string) (int, []byte) {
	s.t.Helper()
	return s.do(http.MethodGet, "/v1/prekeys/"+identity, "Bearer "+longToken(s.t, room, as), nil)
}

func (s *testServer) fetchBundle(room, as, identity string) api.PrekeyBundle {
	s.t.Helper()
	status, b := s.fetch(room, as, identity)
	if status != http.StatusOK {
		s.t.Fatalf("%s fetches %s: %d %s", as, identity, status, b)
	}
	var bundle api.PrekeyBundle
	if err := json.Unmarshal(b, &bundle); err != nil {
		s.t.Fatal(err)
	}
	return bundle
}

// expectNoBundle checks that a fetch got the one answer for an identity
// that is absent or not the caller's to see.
func (s *testServer) expectNoBundle(status int, body []byte) {
	s.t.Helper()
	s.expectError(status, body, http.StatusNotFound, api.CodeNotFound)
	if want := encode(api.ErrorBody{Error: errNoBundle()}); !bytes.Equal(bytes.TrimSpace(body), want) {
		s.t.Fatalf("answer %s, want the same as for an absent identity: %s", body, want)
	}
}

func TestPrekeyDirectory(t *testing.T) {
	s := newTestServer(t, nil)
	clock := s.useFakeClock()
	jr, _ := s.join("r1", "alice")
	ea := s.connect(jr)
	for _, name := range []string{"bob", "carol"} {
		other, _ := s.join("r1", name)
		ea.expectJoined(other.ParticipantID)
	}

	status, b := s.putPrekeys("alice", upload(6, 1, 10))
	if status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":6,"remaining_kem":6}` {
		t.Fatalf("upload: %d %s", status, b)
	}
	// The bundle is bound to the token's identity: Bob's upload is Bob's.
	if status, b := s.putPrekeys("bob", upload(1, 1, 50)); status != http.StatusOK {
		t.Fatalf("bob upload: %d %s", status, b)
	}
	// One window after another, Bob gets each of Alice's one-time prekeys
	// once, oldest first.
	for want := 5; want >= 0; want-- {
		bundle := s.fetchBundle("r1", "bob", "alice")
		if bundle.Identity != "alice" || bundle.IdentityKey[0] != 10 || len(bundle.SignedPrekey.Signature) != 64 || bundle.OneTimePrekey == nil {
			t.Fatalf("bundle %+v", bundle)
		}
		if id := bundle.OneTimePrekey.ID; id != uint32(6-want) {
			t.Fatalf("one-time prekey %d handed out, want %d", id, 6-want)
		}
		if k := bundle.OneTimeKEMPrekey; k == nil || k.ID != uint32(6-want) || len(k.Key) != 1184 || len(k.Signature) != 64 || bundle.KEMPrekey.Key[0] != 13 {
			t.Fatalf("KEM prekeys of the bundle: last-resort %d, one-time %+v; want one-time %d", bundle.KEMPrekey.ID, k, 6-want)
		}
		if want < PrekeysLowWater {
			var low api.PrekeysLow
			ea.decode(ea.expect(api.TypePrekeysLow), &low)
			if low.Remaining != want || low.RemainingKEM != want {
				t.Fatalf("prekeys_low remaining %d and %d KEM, want %d", low.Remaining, low.RemainingKEM, want)
			}
		}
		clock.advance(OneTimePrekeyWindow)
	}
	// Exhausted: the bundle comes without a one-time prekey.
	if bundle := s.fetchBundle("r1", "carol", "alice"); bundle.OneTimePrekey != nil || bundle.OneTimeKEMPrekey != nil || len(bundle.IdentityKey) != 128 || len(bundle.KEMPrekey.Key) != 1184 {
		t.Fatalf("exhausted bundle %+v", bundle)
	}
	if bundle := s.fetchBundle("r1", "alice", "bob"); bundle.IdentityKey[0] != 50 || bundle.OneTimePrekey == nil {
		t.Fatalf("bob's bundle %+v", bundle)
	}
	// A refill is reflected in the status.
	if status, b := s.putPrekeys("alice", upload(3, 100, 10)); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":3,"remaining_kem":3}` {
		t.Fatalf("refill: %d %s", status, b)
	}
	if status, b := s.putPrekeys("alice", upload(2, 200, 10)); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":5,"remaining_kem":5}` {
		t.Fatalf("second refill: %d %s", status, b)
	}
	// A new signed prekey (a restarted device) replaces the one-time
	// prekeys stored with the old one.
	restarted := upload(2, 300, 10)
	restarted.SignedPrekey.Key = bytes.Repeat([]byte{99}, 32)
	if status, b := s.putPrekeys("alice", restarted); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":2,"remaining_kem":2}` {
		t.Fatalf("upload with a new signed prekey: %d %s", status, b)
	}
	if bundle := s.fetchBundle("r1", "bob", "alice"); bundle.OneTimePrekey == nil || bundle.OneTimePrekey.ID != 300 || bundle.SignedPrekey.Key[0] != 99 {
		t.Fatalf("bundle after restart %+v", bundle)
	}

	status, b = s.fetch("r1", "bob", "nobody")
	s.expectNoBundle(status, b)
	status, b = s.do(http.MethodGet, "/v1/prekeys/alice", "", nil)
	s.expectError(status, b, http.StatusUnauthorized, api.CodeUnauthorized)
	status, b = s.fetch("r1", "bob", "bad%20name")
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
		"short identity key":            bad(func(u *api.PrekeyUpload) { u.IdentityKey = u.IdentityKey[:127] }),
		"long signed prekey":            bad(func(u *api.PrekeyUpload) { u.SignedPrekey.Key = make([]byte, 33) }),
		"short signature":               bad(func(u *api.PrekeyUpload) { u.SignedPrekey.Signature = make([]byte, 63) }),
		"short one-time key":            bad(func(u *api.PrekeyUpload) { u.OneTimePrekeys[1].Key = nil }),
		"duplicate id":                  bad(func(u *api.PrekeyUpload) { u.OneTimePrekeys[1].ID = u.OneTimePrekeys[0].ID }),
		"too many at once":              upload(MaxPrekeysPerUpload+1, 1, 1),
		"no KEM prekey":                 bad(func(u *api.PrekeyUpload) { u.KEMPrekey = api.KEMPrekey{} }),
		"short KEM prekey":              bad(func(u *api.PrekeyUpload) { u.KEMPrekey.Key = u.KEMPrekey.Key[:1183] }),
		"short KEM signature":           bad(func(u *api.PrekeyUpload) { u.KEMPrekey.Signature = u.KEMPrekey.Signature[:63] }),
		"short one-time KEM key":        bad(func(u *api.PrekeyUpload) { u.OneTimeKEMPrekeys[0].Key = nil }),
		"duplicate KEM id":              bad(func(u *api.PrekeyUpload) { u.OneTimeKEMPrekeys[1].ID = u.OneTimeKEMPrekeys[0].ID }),
		"KEM id of the last-resort key": bad(func(u *api.PrekeyUpload) { u.OneTimeKEMPrekeys[0].ID = u.KEMPrekey.ID }),
		"too many KEM at once": bad(func(u *api.PrekeyUpload) {
			for i := range MaxKEMPrekeysPerUpload - 1 {
				u.OneTimeKEMPrekeys = append(u.OneTimeKEMPrekeys, kemPrekey(uint32(100+i), 1))
			}
		}),
	} {
		t.Run(name, func(t *testing.T) {
			status, b := s.putPrekeys("alice", u)
			s.expectError(status, b, http.StatusBadRequest, api.CodeBadRequest)
		})
	}
	status, b := s.do(http.MethodPut, "/v1/prekeys", "Bearer "+longToken(t, "any", "alice"), []byte(`{"identity_key": "!!"}`))
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
	if status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":100,"remaining_kem":32}` {
		t.Fatalf("new identity: %d %s", status, b)
	}
}

// TestPrekeyFetchNeedsSharedRoom: a bundle goes only to a participant of a
// room its owner is in now, and everyone else gets the answer an absent
// identity gets (issue 10: an anonymous call token drained another room's
// identity, and 200 against 404 told who exists).
func TestPrekeyFetchNeedsSharedRoom(t *testing.T) {
	s := newTestServer(t, nil)
	alice, _ := s.join("r1", "alice")
	s.join("r1", "bob")
	s.join("r1", "dave") // present, never uploads
	s.join("r2", "mallory")
	if status, b := s.putPrekeys("alice", upload(10, 1, 10)); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, b)
	}
	refusals := []struct{ room, as, identity string }{
		{"r2", "mallory", "alice"},   // another room's participant
		{"r2", "mallory", "nobody"},  // absent: the same answer
		{"r1", "carol", "alice"},     // a token for r1, but not in the room
		{"r1", "bob", "nobody"},      // nobody of that name in the room
		{"r1", "bob", "dave"},        // in the room, no bundle
		{"r2", "mallory", "mallory"}, // in the room, no bundle
	}
	for _, f := range refusals {
		status, b := s.fetch(f.room, f.as, f.identity)
		s.expectNoBundle(status, b)
	}
	if bundle := s.fetchBundle("r1", "bob", "alice"); bundle.OneTimePrekey == nil || bundle.OneTimePrekey.ID != 1 {
		t.Fatalf("co-participant's bundle %+v", bundle)
	}
	// Gone from the room, Alice is out of reach again.
	if status, b := s.do(http.MethodDelete, "/v1/rooms/r1/participants/"+alice.ParticipantID, "Session "+alice.Session, nil); status != http.StatusNoContent {
		t.Fatalf("leave: %d %s", status, b)
	}
	status, b := s.fetch("r1", "bob", "alice")
	s.expectNoBundle(status, b)
	if got := s.srv.Stats().PrekeyFetchesRefused[string(api.CodeNotFound)]; got != uint64(len(refusals)+1) {
		t.Fatalf("%d refused fetches counted, want %d", got, len(refusals)+1)
	}
	// Nothing the refused fetches did cost Alice a one-time prekey.
	if status, b := s.putPrekeys("alice", upload(0, 1, 10)); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":9,"remaining_kem":9}` {
		t.Fatalf("status: %d %s", status, b)
	}
}

// TestOneTimePrekeyWindow: a requester gets one one-time prekey of a target
// per window; within it, bundles come without one.
func TestOneTimePrekeyWindow(t *testing.T) {
	s := newTestServer(t, nil)
	clock := s.useFakeClock()
	for _, name := range []string{"alice", "bob", "carol", "dave"} {
		s.join("r1", name)
	}
	if status, b := s.putPrekeys("alice", upload(3, 1, 10)); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, b)
	}
	oneTime := func(as string) uint32 {
		t.Helper()
		if k := s.fetchBundle("r1", as, "alice").OneTimePrekey; k != nil {
			return k.ID
		}
		return 0
	}
	if id := oneTime("bob"); id != 1 {
		t.Fatalf("bob's first fetch: one-time prekey %d, want 1", id)
	}
	for range 5 {
		if id := oneTime("bob"); id != 0 {
			t.Fatalf("bob got one-time prekey %d again within the window", id)
		}
	}
	if id := oneTime("carol"); id != 2 {
		t.Fatalf("carol's first fetch: one-time prekey %d, want 2", id)
	}
	clock.advance(OneTimePrekeyWindow - time.Second)
	if id := oneTime("bob"); id != 0 {
		t.Fatalf("bob got one-time prekey %d a second before the window ends", id)
	}
	clock.advance(time.Second)
	if id := oneTime("bob"); id != 3 {
		t.Fatalf("bob after the window: one-time prekey %d, want 3", id)
	}
	// None left: Dave's fetch hands nothing out, so it costs him no grant,
	// and after a refill he gets one at once.
	if id := oneTime("dave"); id != 0 {
		t.Fatalf("dave got one-time prekey %d of none", id)
	}
	if status, b := s.putPrekeys("alice", upload(1, 100, 10)); status != http.StatusOK {
		t.Fatalf("refill: %d %s", status, b)
	}
	if id := oneTime("dave"); id != 100 {
		t.Fatalf("dave after the refill: one-time prekey %d, want 100", id)
	}
}

// TestPrekeyFetchRateLimits: fetches are limited per requester (outsiders
// included) and per target, with 429 rate_limited and Retry-After.
func TestPrekeyFetchRateLimits(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxParticipants = 3 })
	clock := s.useFakeClock()
	burst := prekeyFetchesPerPeer * 3
	for _, name := range []string{"alice", "bob", "carol"} {
		s.join("r1", name)
		if status, b := s.putPrekeys(name, upload(1, 1, 10)); status != http.StatusOK {
			t.Fatalf("upload: %d %s", status, b)
		}
	}
	s.join("r2", "mallory")
	limited := func(room, as, identity string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, s.ts.URL+"/v1/prekeys/"+identity, nil)
		req.Header.Set("Authorization", "Bearer "+longToken(t, room, as))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		s.expectError(resp.StatusCode, b, http.StatusTooManyRequests, api.CodeRateLimited)
		if ra := resp.Header.Get("Retry-After"); ra != "1" {
			t.Fatalf("Retry-After %q, want 1 (one fetch a second refills)", ra)
		}
	}

	// An outsider's refused fetches count against its allowance, not
	// against the target's.
	for range burst {
		status, b := s.fetch("r2", "mallory", "alice")
		s.expectNoBundle(status, b)
	}
	limited("r2", "mallory", "alice")

	// Bob spreads his allowance over two targets.
	for i := range burst {
		s.fetchBundle("r1", "bob", []string{"alice", "carol"}[i%2])
	}
	limited("r1", "bob", "carol")

	// Carol has allowance left, Alice as a target has not.
	for range burst - burst/2 {
		s.fetchBundle("r1", "carol", "alice")
	}
	limited("r1", "carol", "alice")
	clock.advance(time.Second)
	s.fetchBundle("r1", "carol", "alice")

	if got := s.srv.Stats().PrekeyFetchesRefused[string(api.CodeRateLimited)]; got != 3 {
		t.Fatalf("%d rate-limited fetches counted, want 3", got)
	}
}
