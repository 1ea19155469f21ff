package signaling

import (
	"encoding/json"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/token"
)

// knock redeems invite as name, which must make the guest knock (202).
func (s *testServer) knock(invite, name string) api.Knock {
	s.t.Helper()
	status, b := s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: invite, Name: name})
	if status != http.StatusAccepted {
		s.t.Fatalf("redeem: %d %s, want 202 and a knock", status, b)
	}
	var k api.Knock
	if err := json.Unmarshal(b, &k); err != nil {
		s.t.Fatal(err)
	}
	return k
}

// answer posts action (admit or refuse) for knock k with tok.
func (s *testServer) answer(k api.Knock, action, tok string) (int, []byte) {
	s.t.Helper()
	return s.do(http.MethodPost, "/v1/rooms/"+k.Room+"/knocks/"+k.ID+"/"+action, "Bearer "+tok, nil)
}

// waitKnock polls knock k as its guest, waiting up to secs seconds.
func (s *testServer) waitKnock(k api.Knock, secs int) api.Knock {
	s.t.Helper()
	status, b := s.do(http.MethodGet, k.WaitURL+"?wait="+strconv.Itoa(secs), "Knock "+k.Secret, nil)
	if status != http.StatusOK {
		s.t.Fatalf("wait for knock: %d %s", status, b)
	}
	var got api.Knock
	if err := json.Unmarshal(b, &got); err != nil {
		s.t.Fatal(err)
	}
	return got
}

// putJSON sends v as the body of a PUT.
func (s *testServer) putJSON(path, auth string, v any) (int, []byte) {
	s.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	return s.do(http.MethodPut, path, auth, b)
}

// letIn has name knock with cr's invite and cr's creator admit it, and
// returns what the guest gets: its room token.
func (s *testServer) letIn(cr api.CreateCallResponse, name string) api.RedeemInviteResponse {
	s.t.Helper()
	k := s.knock(cr.Invite, name)
	if status, b := s.answer(k, "admit", cr.Token); status != http.StatusOK {
		s.t.Fatalf("admit: %d %s", status, b)
	}
	got := s.waitKnock(k, 0)
	if got.State != api.KnockAdmitted || got.Token == "" {
		s.t.Fatalf("guest sees %+v after admission", got)
	}
	return api.RedeemInviteResponse{Room: got.Room, Identity: got.Identity, Token: got.Token, Inviter: got.Inviter}
}

// expectKnock waits for a knock event in state and returns its knock.
func (e *events) expectKnock(state string) api.Knock {
	e.t.Helper()
	var ev api.KnockEvent
	e.decode(e.expect(api.TypeKnock), &ev)
	if ev.Knock.State != state {
		e.t.Fatalf("knock %+v, want state %s", ev.Knock, state)
	}
	if ev.Knock.Token != "" || ev.Knock.Secret != "" {
		e.t.Fatalf("knock event %+v carries the guest's token or secret", ev.Knock)
	}
	return ev.Knock
}

// TestKnockAdmit: a guest who redeems an invite gets no token, only a
// knock; the host sees its name and admits it; only then does the guest
// get a token, which joins the call.
func TestKnockAdmit(t *testing.T) {
	s := newTestServer(t, nil)
	cr := s.createCall("alice")
	aliceJoin := s.mustJoinWithToken(cr.Room, cr.Token)
	alice := s.connect(aliceJoin)

	k := s.knock(cr.Invite, " Bob ")
	if k.State != api.KnockPending || k.Token != "" || k.Secret == "" || k.Name != "Bob" || k.Room != cr.Room || k.Inviter != cr.Identity || !callIdentityPattern.MatchString(k.Identity) {
		t.Fatalf("knock = %+v", k)
	}
	if d := time.Until(time.Unix(k.Expires, 0)); d < DefaultKnockTimeout-5*time.Second || d > DefaultKnockTimeout+time.Second {
		t.Fatalf("knock expires in %v, want the default %v", d, DefaultKnockTimeout)
	}
	seen := alice.expectKnock(api.KnockPending)
	if seen.ID != k.ID || seen.Name != "Bob" || seen.Identity != k.Identity {
		t.Fatalf("host sees %+v, want %+v", seen, k)
	}

	// Pending: no token for the guest, and a wrong secret learns nothing.
	if got := s.waitKnock(k, 0); got.State != api.KnockPending || got.Token != "" || got.Secret != "" {
		t.Fatalf("pending knock as the guest sees it: %+v", got)
	}
	status, b := s.do(http.MethodGet, k.WaitURL, "Knock wrong", nil)
	s.expectError(status, b, http.StatusNotFound, api.CodeNotFound)
	status, b = s.do(http.MethodGet, k.WaitURL, "", nil)
	s.expectError(status, b, http.StatusNotFound, api.CodeNotFound)
	status, b = s.do(http.MethodPut, k.WaitURL, "Knock "+k.Secret, nil)
	s.expectError(status, b, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)

	// Only the host answers: neither another identity with a token for
	// the room, nor the guest itself with a token it minted.
	for _, who := range []string{"mallory", k.Identity} {
		status, b = s.answer(k, "admit", mintToken(t, cr.Room, who))
		s.expectError(status, b, http.StatusForbidden, api.CodeForbidden)
	}
	status, b = s.answer(k, "admit", mintToken(t, "elsewhere", cr.Identity))
	s.expectError(status, b, http.StatusUnauthorized, api.CodeWrongRoom)
	status, b = s.do(http.MethodPost, "/v1/rooms/"+cr.Room+"/knocks/k_nobody/admit", "Bearer "+cr.Token, nil)
	s.expectError(status, b, http.StatusNotFound, api.CodeNotFound)

	// The guest waits in a long poll; the host's admission ends it.
	polled := make(chan api.Knock, 1)
	start := time.Now()
	go func() { polled <- s.waitKnock(k, 20) }()
	time.Sleep(200 * time.Millisecond)
	status, b = s.answer(k, "admit", cr.Token)
	var answered api.Knock
	if status != http.StatusOK || json.Unmarshal(b, &answered) != nil || answered.State != api.KnockAdmitted || answered.By != cr.Identity || answered.Token != "" {
		t.Fatalf("admit: %d %s", status, b)
	}
	got := <-polled
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the long poll took %v to see the admission", took)
	}
	if got.State != api.KnockAdmitted || got.By != cr.Identity {
		t.Fatalf("guest sees %+v, want admitted by %s", got, cr.Identity)
	}
	c, err := token.Verify(testSecret, got.Token, cr.Room, time.Now())
	if err != nil || c.Identity != k.Identity {
		t.Fatalf("guest's token: %+v, %v", c, err)
	}
	if ev := alice.expectKnock(api.KnockAdmitted); ev.ID != k.ID || ev.By != cr.Identity {
		t.Fatalf("host told %+v", ev)
	}
	// Answered once: a second answer is refused, the guest keeps its token.
	status, b = s.answer(k, "refuse", cr.Token)
	s.expectError(status, b, http.StatusConflict, api.CodeKnockAnswered)
	bob := s.mustJoinWithToken(cr.Room, got.Token)
	alice.expectJoined(bob.ParticipantID)
}

// TestKnockRefusedWithdrawnExpired: the other ends of a knock: refused
// by the host, withdrawn by the guest, unanswered until the timeout. None
// gives a token, and the host hears of each.
func TestKnockRefusedWithdrawnExpired(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.KnockTimeout = time.Second })
	cr := s.createCall("alice")
	alice := s.connect(s.mustJoinWithToken(cr.Room, cr.Token))

	refused := s.knock(cr.Invite, "eve")
	alice.expectKnock(api.KnockPending)
	if status, b := s.answer(refused, "refuse", cr.Token); status != http.StatusOK {
		t.Fatalf("refuse: %d %s", status, b)
	}
	if ev := alice.expectKnock(api.KnockRefused); ev.By != cr.Identity {
		t.Fatalf("host told %+v", ev)
	}
	if got := s.waitKnock(refused, 5); got.State != api.KnockRefused || got.By != cr.Identity || got.Token != "" {
		t.Fatalf("refused guest sees %+v", got)
	}
	status, b := s.answer(refused, "admit", cr.Token)
	s.expectError(status, b, http.StatusConflict, api.CodeKnockAnswered)

	withdrawn := s.knock(cr.Invite, "dan")
	alice.expectKnock(api.KnockPending)
	status, b = s.do(http.MethodDelete, withdrawn.WaitURL, "Knock "+withdrawn.Secret, nil)
	var got api.Knock
	if status != http.StatusOK || json.Unmarshal(b, &got) != nil || got.State != api.KnockWithdrawn {
		t.Fatalf("withdraw: %d %s", status, b)
	}
	alice.expectKnock(api.KnockWithdrawn)

	expired := s.knock(cr.Invite, "carl")
	alice.expectKnock(api.KnockPending)
	if got := s.waitKnock(expired, 10); got.State != api.KnockExpired || got.Token != "" {
		t.Fatalf("unanswered guest sees %+v, want expired", got)
	}
	alice.expectKnock(api.KnockExpired)
	status, b = s.answer(expired, "admit", cr.Token)
	s.expectError(status, b, http.StatusConflict, api.CodeKnockAnswered)
}

// TestKnockWaitsForHost: a guest who knocks before the host is in the call
// is shown to the host when it connects, in its welcome.
func TestKnockWaitsForHost(t *testing.T) {
	s := newTestServer(t, nil)
	cr := s.createCall("alice")
	k := s.knock(cr.Invite, "bob")
	jr := s.mustJoinWithToken(cr.Room, cr.Token)
	ev := s.connectRaw(jr)
	var w api.Welcome
	ev.decode(ev.expect(api.TypeWelcome), &w)
	if w.Door != api.DoorHost || len(w.Knocks) != 1 || w.Knocks[0].ID != k.ID || w.Knocks[0].Secret != "" {
		t.Fatalf("host's welcome: door %q, knocks %+v", w.Door, w.Knocks)
	}
	// The guest who has been let in sees no knock in its own welcome.
	if status, b := s.answer(k, "admit", cr.Token); status != http.StatusOK {
		t.Fatalf("admit: %d %s", status, b)
	}
	bob := s.connectRaw(s.mustJoinWithToken(cr.Room, s.waitKnock(k, 0).Token))
	var bw api.Welcome
	bob.decode(bob.expect(api.TypeWelcome), &bw)
	if len(bw.Knocks) != 0 {
		t.Fatalf("guest's welcome lists knocks %+v", bw.Knocks)
	}
}

// TestDoor: the creator opens the door (the link admits at once) or lets
// everyone in the call answer; nobody else changes it.
func TestDoor(t *testing.T) {
	s := newTestServer(t, nil)
	c := s.startCallOfTwo()
	door := "/v1/rooms/" + c.cr.Room + "/door"
	setDoor := func(tok, d string) (int, []byte) {
		t.Helper()
		return s.putJSON(door, "Bearer "+tok, api.DoorRequest{Door: d})
	}
	status, b := setDoor(c.rr.Token, api.DoorOpen)
	s.expectError(status, b, http.StatusForbidden, api.CodeForbidden)
	status, b = setDoor(c.cr.Token, "ajar")
	s.expectError(status, b, http.StatusBadRequest, api.CodeBadRequest)
	status, b = s.do(http.MethodPost, door, "Bearer "+c.cr.Token, nil)
	s.expectError(status, b, http.StatusMethodNotAllowed, api.CodeMethodNotAllowed)

	// Anyone in the call answers: bob learns of the guest and admits it.
	if status, b := setDoor(c.cr.Token, api.DoorCall); status != http.StatusOK {
		t.Fatalf("door call: %d %s", status, b)
	}
	for _, ev := range []*events{c.alice, c.bob} {
		var d api.DoorEvent
		ev.decode(ev.expect(api.TypeDoor), &d)
		if d.Door != api.DoorCall || d.By != c.cr.Identity {
			t.Fatalf("door event %+v", d)
		}
	}
	k := s.knock(c.cr.Invite, "carol")
	c.alice.expectKnock(api.KnockPending)
	c.bob.expectKnock(api.KnockPending)
	if status, b := s.answer(k, "admit", c.rr.Token); status != http.StatusOK {
		t.Fatalf("bob admits: %d %s", status, b)
	}
	if got := s.waitKnock(k, 0); got.State != api.KnockAdmitted || got.By != c.rr.Identity {
		t.Fatalf("carol sees %+v, want admitted by bob", got)
	}
	c.alice.expectKnock(api.KnockAdmitted)
	c.bob.expectKnock(api.KnockAdmitted)

	// Back to the host alone: bob may not answer any more.
	if status, b := setDoor(c.cr.Token, api.DoorHost); status != http.StatusOK {
		t.Fatalf("door host: %d %s", status, b)
	}
	c.alice.expect(api.TypeDoor)
	c.bob.expect(api.TypeDoor)
	k = s.knock(c.cr.Invite, "dave")
	c.alice.expectKnock(api.KnockPending)
	status, b = s.answer(k, "admit", c.rr.Token)
	s.expectError(status, b, http.StatusForbidden, api.CodeForbidden)

	// Open: a redemption is a token at once, as before there were doors.
	if status, b := setDoor(c.cr.Token, api.DoorOpen); status != http.StatusOK {
		t.Fatalf("door open: %d %s", status, b)
	}
	status, b = s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: c.cr.Invite, Name: "erin"})
	var rr api.RedeemInviteResponse
	if status != http.StatusOK || json.Unmarshal(b, &rr) != nil || rr.Token == "" || rr.Room != c.cr.Room {
		t.Fatalf("redeem at an open door: %d %s", status, b)
	}
	// Dave, who knocked before, still waits for an answer.
	if got := s.waitKnock(k, 0); got.State != api.KnockPending {
		t.Fatalf("dave's knock became %+v when the door opened", got)
	}
	erin := s.connectRaw(s.mustJoinWithToken(c.cr.Room, rr.Token))
	var w api.Welcome
	erin.decode(erin.expect(api.TypeWelcome), &w)
	if w.Door != api.DoorOpen {
		t.Fatalf("welcome door %q, want open", w.Door)
	}
}

// TestKnockLimits: a call's door holds MaxKnocks guests at once, and one
// address at most three, whatever the rooms.
func TestKnockLimits(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxKnocks = 2; c.CallsPerMinute = 1000 })
	a := s.createCall("a")
	s.knock(a.Invite, "g1")
	s.knock(a.Invite, "g2")
	status, b := s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: a.Invite, Name: "g3"})
	s.expectError(status, b, http.StatusTooManyRequests, api.CodeTooManyKnocks)
	// Another room, the same address: one more, then the address is full.
	other := s.createCall("b")
	k := s.knock(other.Invite, "g4")
	status, b = s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: other.Invite, Name: "g5"})
	s.expectError(status, b, http.StatusTooManyRequests, api.CodeTooManyKnocks)
	// An answered knock frees its place.
	if status, b := s.answer(k, "refuse", other.Token); status != http.StatusOK {
		t.Fatalf("refuse: %d %s", status, b)
	}
	s.knock(other.Invite, "g5")

	// Knocks share the redemption rate per address.
	r := newTestServer(t, func(c *Config) { c.CallsPerMinute = 2 })
	cr := r.createCall("c")
	r.knock(cr.Invite, "g6")
	status, b = r.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: cr.Invite, Name: "g7"})
	r.expectError(status, b, http.StatusTooManyRequests, api.CodeRateLimited)
}

// TestEndCallTurnsKnocksAway: ending the call answers whoever waits at
// its door, and the closed message names who ended it and when.
func TestEndCallTurnsKnocksAway(t *testing.T) {
	s := newTestServer(t, nil)
	cr := s.createCall("alice")
	alice := s.connect(s.mustJoinWithToken(cr.Room, cr.Token))
	k := s.knock(cr.Invite, "bob")
	alice.expectKnock(api.KnockPending)
	polled := make(chan api.Knock, 1)
	go func() { polled <- s.waitKnock(k, 20) }()
	before := time.Now().Unix()
	if status, b := s.do(http.MethodPost, "/v1/rooms/"+cr.Room+"/end", "Bearer "+cr.Token, nil); status != http.StatusNoContent {
		t.Fatalf("end: %d %s", status, b)
	}
	var got api.Knock
	select {
	case got = <-polled:
	case <-time.After(wait.Timeout):
		t.Fatal("the guest's long poll did not end with the call")
	}
	if got.State != api.KnockEnded || got.Token != "" {
		t.Fatalf("guest sees %+v, want ended", got)
	}
	alice.expectKnock(api.KnockEnded)
	var closed api.Closed
	alice.decode(alice.expect(api.TypeClosed), &closed)
	if closed.Reason != api.ReasonRoomEnded || closed.By != cr.Identity || closed.At < before || closed.At > time.Now().Unix() {
		t.Fatalf("closed %+v, want room_ended by %s now", closed, cr.Identity)
	}
	// The ended call's invite knocks no more.
	status, b := s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: cr.Invite, Name: "carol"})
	s.expectError(status, b, http.StatusGone, api.CodeCallEnded)
}
