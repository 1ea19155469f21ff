package signaling

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

var callIdentityPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,40}-[a-z2-7]{8}$`)

func (s *testServer) postJSON(path, auth string, v any) (int, []byte) {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do(http.MethodPost, path, auth, b)
}

func (s *testServer) createCall(name string) api.CreateCallResponse {
	s.t.Helper()
	status, b := s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: name})
	if status != http.StatusCreated {
		s.t.Fatalf("create call: %d %s", status, b)
	}
	var cr api.CreateCallResponse
	if err := json.Unmarshal(b, &cr); err != nil {
		s.t.Fatal(err)
	}
	return cr
}

// joinWithToken joins room with tok and a fresh Opus peer.
func (s *testServer) joinWithToken(room, tok string) (int, []byte) {
	s.t.Helper()
	p := newPeer(s.t, webrtc.MimeTypeOpus)
	return s.postJSON("/v1/rooms/"+room+"/join", "Bearer "+tok, api.JoinRequest{SDP: p.offer(s.t)})
}

func (s *testServer) mustJoinWithToken(room, tok string) api.JoinResponse {
	s.t.Helper()
	status, b := s.joinWithToken(room, tok)
	if status != http.StatusOK {
		s.t.Fatalf("join: %d %s", status, b)
	}
	var jr api.JoinResponse
	if err := json.Unmarshal(b, &jr); err != nil {
		s.t.Fatal(err)
	}
	return jr
}

// roster is the identities of room's participants, as the server holds them.
func (s *testServer) roster(room string) []string {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	var ids []string
	if rm := s.srv.rooms[room]; rm != nil {
		for _, p := range rm.participants {
			ids = append(ids, p.identity)
		}
	}
	return ids
}

func TestCreateCallInviteRedeemJoin(t *testing.T) {
	s := newTestServer(t, nil)
	cr := s.createCall("Alice")
	if !callIdentityPattern.MatchString(cr.Identity) || !strings.HasPrefix(cr.Identity, "Alice-") {
		t.Fatalf("creator identity %q: want Alice-<8 random>", cr.Identity)
	}
	if !token.ValidRoom(cr.Room) || len(cr.Room) < 32 {
		t.Fatalf("room %q: want a long random valid name", cr.Room)
	}
	if c, err := token.Verify(testSecret, cr.Token, cr.Room, time.Now()); err != nil || c.Identity != cr.Identity {
		t.Fatalf("creator token: %+v, %v", c, err)
	}
	if d := time.Until(time.Unix(cr.InviteExpires, 0)); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("invite expires in %v, want the default hour", d)
	}
	if other := s.createCall("Alice"); other.Room == cr.Room || other.Identity == cr.Identity {
		t.Fatal("two calls share a room or an identity")
	}

	status, b := s.postJSON("/v1/invites/inspect", "", api.InviteRequest{Invite: cr.Invite})
	var info api.InviteInfo
	if status != http.StatusOK || json.Unmarshal(b, &info) != nil {
		t.Fatalf("inspect: %d %s", status, b)
	}
	if info.Inviter != cr.Identity || info.Expires != cr.InviteExpires {
		t.Fatalf("inspect = %+v, want inviter %s", info, cr.Identity)
	}

	alice := s.connect(s.mustJoinWithToken(cr.Room, cr.Token))
	rr := s.letIn(cr, "bob")
	if rr.Room != cr.Room || rr.Inviter != cr.Identity || !callIdentityPattern.MatchString(rr.Identity) {
		t.Fatalf("redeem = %+v", rr)
	}
	alice.expectKnock(api.KnockPending)
	alice.expectKnock(api.KnockAdmitted)
	// The same name twice gives two identities: nobody can take over
	// another's place by choosing its name.
	if again := s.knock(cr.Invite, "bob"); again.Identity == rr.Identity {
		t.Fatalf("two redemptions with one name got the same identity %q", rr.Identity)
	}
	alice.expectKnock(api.KnockPending)
	bobJoin := s.mustJoinWithToken(rr.Room, rr.Token)
	if bobJoin.Identity != rr.Identity {
		t.Fatalf("joined as %q, want %q", bobJoin.Identity, rr.Identity)
	}
	alice.expectJoined(bobJoin.ParticipantID)
}

func TestInviteRefused(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.CallsPerMinute = 1000 })
	cr := s.createCall("alice")
	expired, err := token.MintInvite(testSecret, token.InviteClaims{Room: cr.Room, Inviter: cr.Identity, Expiry: time.Now().Add(-time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	otherSecret, err := token.MintInvite([]byte("another-secret-0123456789"), token.InviteClaims{Room: cr.Room, Inviter: cr.Identity, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tampered := []byte(cr.Invite)
	tampered[len(tampered)-3] ^= 1
	cases := []struct {
		name, invite string
		status       int
		code         api.ErrorCode
	}{
		{"empty", "", http.StatusBadRequest, api.CodeInviteInvalid},
		{"garbage", "hello", http.StatusBadRequest, api.CodeInviteInvalid},
		{"tampered", string(tampered), http.StatusBadRequest, api.CodeInviteInvalid},
		{"other secret", otherSecret, http.StatusBadRequest, api.CodeInviteInvalid},
		{"room token", cr.Token, http.StatusBadRequest, api.CodeInviteInvalid},
		{"too long", cr.Invite + strings.Repeat("A", 1024), http.StatusBadRequest, api.CodeInviteInvalid},
		{"expired", expired, http.StatusGone, api.CodeInviteExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, b := s.postJSON("/v1/invites/inspect", "", api.InviteRequest{Invite: c.invite})
			s.expectError(status, b, c.status, c.code)
			status, b = s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: c.invite, Name: "mallory"})
			s.expectError(status, b, c.status, c.code)
		})
	}

	// An invite is not a token: it admits nobody by itself.
	status, b := s.joinWithToken(cr.Room, cr.Invite)
	s.expectError(status, b, http.StatusUnauthorized, api.CodeUnauthorized)

	for _, name := range []string{"", "   ", "a b", "<script>", "x@y", strings.Repeat("n", 41)} {
		status, b := s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: cr.Invite, Name: name})
		s.expectError(status, b, http.StatusBadRequest, api.CodeInvalidName)
		status, b = s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: name})
		s.expectError(status, b, http.StatusBadRequest, api.CodeInvalidName)
	}
	status, b = s.do(http.MethodPost, "/v1/invites/redeem", "", []byte(`{"invite":`))
	s.expectError(status, b, http.StatusBadRequest, api.CodeInvalidJSON)
	status, b = s.do(http.MethodGet, "/v1/calls", "", nil)
	s.expectError(status, b, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)
}

func TestInspectLeavesNoTrace(t *testing.T) {
	s := newTestServer(t, nil)
	cr := s.createCall("alice")
	alice := s.connect(s.mustJoinWithToken(cr.Room, cr.Token))
	before := s.roster(cr.Room)
	for range 3 {
		if status, b := s.postJSON("/v1/invites/inspect", "", api.InviteRequest{Invite: cr.Invite}); status != http.StatusOK {
			t.Fatalf("inspect: %d %s", status, b)
		}
	}
	if after := s.roster(cr.Room); len(after) != 1 || len(before) != 1 || after[0] != before[0] {
		t.Fatalf("roster changed by inspecting: %v -> %v", before, after)
	}
	// Nothing was announced to the creator either: the next event it gets
	// is the knock a later redemption causes.
	rr := s.letIn(cr, "carol")
	if k := alice.expectKnock(api.KnockPending); k.Name != "carol" {
		t.Fatalf("first event after inspecting: a knock of %q, want carol's", k.Name)
	}
	alice.expectKnock(api.KnockAdmitted)
	carol := s.mustJoinWithToken(rr.Room, rr.Token)
	alice.expectJoined(carol.ParticipantID)
}

// callOfTwo is a private call its creator (alice) and a guest (bob) have
// joined, with their event streams.
type callOfTwo struct {
	cr                 api.CreateCallResponse
	rr                 api.RedeemInviteResponse
	aliceJoin, bobJoin api.JoinResponse
	alice, bob         *events
}

func (s *testServer) startCallOfTwo() callOfTwo {
	s.t.Helper()
	var c callOfTwo
	c.cr = s.createCall("alice")
	c.aliceJoin = s.mustJoinWithToken(c.cr.Room, c.cr.Token)
	c.alice = s.connect(c.aliceJoin)
	c.rr = s.letIn(c.cr, "bob")
	c.alice.expectKnock(api.KnockPending)
	c.alice.expectKnock(api.KnockAdmitted)
	c.bobJoin = s.mustJoinWithToken(c.rr.Room, c.rr.Token)
	c.bob = s.connect(c.bobJoin)
	c.alice.expectJoined(c.bobJoin.ParticipantID)
	return c
}

func TestEndCall(t *testing.T) {
	s := newTestServer(t, nil)
	c := s.startCallOfTwo()
	cr, rr, alice, bob := c.cr, c.rr, c.alice, c.bob

	end := "/v1/rooms/" + cr.Room + "/end"
	status, b := s.do(http.MethodPost, end, "Bearer "+rr.Token, nil)
	s.expectError(status, b, http.StatusForbidden, api.CodeForbidden)
	status, b = s.do(http.MethodPost, end, "", nil)
	s.expectError(status, b, http.StatusUnauthorized, api.CodeUnauthorized)
	// A room joined with an ordinary token has no creator: nobody ends it.
	status, b = s.do(http.MethodPost, "/v1/rooms/plain/end", "Bearer "+mintToken(t, "plain", "alice"), nil)
	s.expectError(status, b, http.StatusForbidden, api.CodeForbidden)

	if status, b := s.do(http.MethodPost, end, "Bearer "+cr.Token, nil); status != http.StatusNoContent {
		t.Fatalf("end: %d %s", status, b)
	}
	// Each hears the other leave (in either order) and then its own end.
	for _, ev := range []*events{alice, bob} {
		for m := ev.expectAny(api.TypeLeft, api.TypeClosed); m.Type == api.TypeLeft; m = ev.expectAny(api.TypeLeft, api.TypeClosed) {
			var l api.Left
			ev.decode(m, &l)
			if l.Reason != api.ReasonRoomEnded {
				t.Fatalf("left %+v, want reason room_ended", l)
			}
		}
	}
	if ids := s.roster(cr.Room); len(ids) != 0 {
		t.Fatalf("room still holds %v", ids)
	}

	// The call stays ended: old tokens, the invite and new redemptions are
	// all refused.
	status, b = s.joinWithToken(rr.Room, rr.Token)
	s.expectError(status, b, http.StatusGone, api.CodeCallEnded)
	status, b = s.joinWithToken(cr.Room, cr.Token)
	s.expectError(status, b, http.StatusGone, api.CodeCallEnded)
	status, b = s.postJSON("/v1/invites/inspect", "", api.InviteRequest{Invite: cr.Invite})
	s.expectError(status, b, http.StatusGone, api.CodeCallEnded)
	status, b = s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: cr.Invite, Name: "eve"})
	s.expectError(status, b, http.StatusGone, api.CodeCallEnded)
}

func TestCreateCallLimits(t *testing.T) {
	t.Run("rate", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.CallsPerMinute = 2 })
		cr := s.createCall("a")
		s.createCall("b")
		status, b := s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: "c"})
		s.expectError(status, b, http.StatusTooManyRequests, api.CodeRateLimited)
		// Two a minute: the next one is up to 30 s away.
		req := httptest.NewRequest(http.MethodPost, "/v1/calls", strings.NewReader(`{"name":"c"}`))
		req.RemoteAddr = "127.0.0.1:1"
		w := httptest.NewRecorder()
		s.srv.ServeHTTP(w, req)
		if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); w.Code != http.StatusTooManyRequests || err != nil || ra < 1 || ra > 30 {
			t.Fatalf("Retry-After %q (status %d), want 1-30 s", w.Header().Get("Retry-After"), w.Code)
		}
		// Redemptions share the allowance: they mint tokens too.
		status, b = s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: cr.Invite, Name: "d"})
		s.expectError(status, b, http.StatusTooManyRequests, api.CodeRateLimited)
		// Inspecting is free.
		if status, b := s.postJSON("/v1/invites/inspect", "", api.InviteRequest{Invite: cr.Invite}); status != http.StatusOK {
			t.Fatalf("inspect: %d %s", status, b)
		}
	})
	t.Run("rooms", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.MaxRooms = 1 })
		s.createCall("a")
		// The first call holds the only room slot before anyone joins it.
		status, b := s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: "b"})
		s.expectError(status, b, http.StatusServiceUnavailable, api.CodeTooManyRooms)
		// Until its creator has been away too long.
		s.srv.mu.Lock()
		for room, created := range s.srv.calls.pending {
			s.srv.calls.pending[room] = created.Add(-pendingCallTTL - time.Second)
		}
		s.srv.mu.Unlock()
		cr := s.createCall("c")
		// A call joined and left again frees its slot for the next one.
		jr := s.mustJoinWithToken(cr.Room, cr.Token)
		status, b = s.do(http.MethodDelete, "/v1/rooms/"+cr.Room+"/participants/"+jr.ParticipantID, "Session "+jr.Session, nil)
		if status != http.StatusNoContent {
			t.Fatalf("leave: %d %s", status, b)
		}
		s.createCall("d")
	})
	t.Run("ttl", func(t *testing.T) {
		s := newTestServer(t, func(c *Config) { c.InviteTTL = 5 * time.Minute })
		cr := s.createCall("a")
		if d := time.Until(time.Unix(cr.InviteExpires, 0)); d > 5*time.Minute || d < 4*time.Minute {
			t.Fatalf("invite expires in %v, want 5m", d)
		}
		inv, err := token.VerifyInvite(testSecret, cr.Invite, time.Now())
		if err != nil || inv.Expiry.Unix() != cr.InviteExpires {
			t.Fatalf("invite claims %+v, %v", inv, err)
		}
		if _, err := token.VerifyInvite(testSecret, cr.Invite, time.Now().Add(6*time.Minute)); !errors.Is(err, token.ErrExpired) {
			t.Fatalf("invite 6 minutes later: %v, want token.ErrExpired", err)
		}
	})
}
