package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/redistest"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/store"
)

// TestEndedCallStaysEndedAcrossRestart: two servers in turn over one
// bbolt file, as one node with --data-dir before and after a restart. The
// call the first ended stays ended for the second (issue 12: it came back
// to life), and the prekey directory, one-time grants included, survives.
func TestEndedCallStaysEndedAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), store.DataFile)
	openStore := func() *store.Bolt {
		st, err := store.OpenBolt(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	st := openStore()
	before := newTestServer(t, func(c *Config) { c.Store = st })
	ended := before.createCall("alice")
	alice := before.connect(before.mustJoinWithToken(ended.Room, ended.Token))
	guest := before.letIn(ended, "bob")
	if status, b := before.do(http.MethodPost, "/v1/rooms/"+ended.Room+"/end", "Bearer "+ended.Token, nil); status != http.StatusNoContent {
		t.Fatalf("end: %d %s", status, b)
	}
	alice.expectClosed(api.ReasonRoomEnded, api.TypeKnock)
	running := before.createCall("carol")
	// Dave's directory entry: three one-time prekeys, the first handed
	// out to erin.
	before.join("r1", "dave")
	before.join("r1", "erin")
	if status, b := before.putPrekeys("dave", upload(3, 1, 10)); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, b)
	}
	if k := before.fetchBundle("r1", "erin", "dave").OneTimePrekey; k == nil || k.ID != 1 {
		t.Fatalf("erin got %+v, want one-time prekey 1", k)
	}

	// The restart: the first server goes, its file is closed and opened
	// again by the next.
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	if err := before.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore()
	t.Cleanup(func() { _ = st.Close() })
	after := newTestServer(t, func(c *Config) { c.Store = st })

	for _, tok := range []string{ended.Token, guest.Token} {
		status, b := after.joinWithToken(ended.Room, tok)
		after.expectError(status, b, http.StatusGone, api.CodeCallEnded)
	}
	status, b := after.postJSON("/v1/invites/inspect", "", api.InviteRequest{Invite: ended.Invite})
	after.expectError(status, b, http.StatusGone, api.CodeCallEnded)
	status, b = after.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: ended.Invite, Name: "eve"})
	after.expectError(status, b, http.StatusGone, api.CodeCallEnded)

	// A call that was not ended still runs, and its creator can still end
	// it: the record of who created it survived too.
	carol := after.connect(after.mustJoinWithToken(running.Room, running.Token))
	if status, b := after.do(http.MethodPost, "/v1/rooms/"+running.Room+"/end", "Bearer "+running.Token, nil); status != http.StatusNoContent {
		t.Fatalf("end after the restart: %d %s", status, b)
	}
	carol.expectClosed(api.ReasonRoomEnded)

	// Dave's bundle is there with the two one-time prekeys left; erin's
	// grant holds (no second one within the window), frank gets the next.
	after.join("r1", "dave")
	after.join("r1", "erin")
	after.join("r1", "frank")
	if k := after.fetchBundle("r1", "erin", "dave").OneTimePrekey; k != nil {
		t.Fatalf("erin got one-time prekey %d again within her window", k.ID)
	}
	bundle := after.fetchBundle("r1", "frank", "dave")
	if bundle.OneTimePrekey == nil || bundle.OneTimePrekey.ID != 2 || !bytes.Equal(bundle.IdentityKey, bytes.Repeat([]byte{10}, 128)) {
		t.Fatalf("frank got %+v, want dave's bundle with one-time prekey 2", bundle)
	}
	if status, b := after.putPrekeys("dave", upload(0, 100, 10)); status != http.StatusOK || string(bytes.TrimSpace(b)) != `{"remaining":1,"remaining_kem":1}` {
		t.Fatalf("dave's status after the restart: %d %s, want 1 remaining", status, b)
	}
}

// TestStoreUnavailable: with Redis gone, what needs the store answers 503
// store_unavailable, the call in progress goes on, and once Redis is back
// the same server works again.
func TestStoreUnavailable(t *testing.T) {
	rs := redistest.Start(t)
	st, err := store.OpenRedis(context.Background(), rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	s := newTestServer(t, func(c *Config) { c.Store = st; c.CallsPerMinute = 1000 })
	c := s.startCallOfTwo()
	cr, rr, alice, bob, ea, eb := c.cr, c.rr, c.aliceJoin, c.bobJoin, c.alice, c.bob
	if status, b := s.putPrekeys(cr.Identity, upload(2, 1, 10)); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, b)
	}

	rs.Stop()
	unavailable := func(what string, status int, b []byte) {
		t.Helper()
		var e api.ErrorBody
		if err := json.Unmarshal(b, &e); err != nil || e.Error == nil || status != http.StatusServiceUnavailable || e.Error.Code != api.CodeStoreUnavailable {
			t.Fatalf("%s with Redis down: %d %s, want 503 store_unavailable", what, status, b)
		}
	}
	status, b := s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: "carol"})
	unavailable("create call", status, b)
	status, b = s.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: cr.Invite, Name: "dave"})
	unavailable("redeem", status, b)
	status, b = s.joinWithToken("plain", mintToken(t, "plain", "erin"))
	unavailable("join", status, b)
	status, b = s.fetch(cr.Room, rr.Identity, cr.Identity)
	unavailable("prekey fetch", status, b)
	status, b = s.putPrekeys(rr.Identity, upload(1, 1, 20))
	unavailable("prekey upload", status, b)
	status, b = s.do(http.MethodPost, "/v1/rooms/"+cr.Room+"/end", "Bearer "+cr.Token, nil)
	unavailable("end", status, b)
	if got := s.srv.Stats().JoinFailures[string(api.CodeStoreUnavailable)]; got != 1 {
		t.Fatalf("%d joins refused for the store counted, want 1", got)
	}

	// The call in progress does not need the store.
	ea.send(envelope(bob.ParticipantID, 1, []byte("still here")))
	var env api.Envelope
	eb.decode(eb.expect(api.TypeEnvelope), &env)
	if string(env.Data) != "still here" || env.From != alice.ParticipantID {
		t.Fatalf("envelope during the outage: %+v", env)
	}

	// Redis is back (empty: it kept nothing); the server serves again
	// without a restart.
	rs.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, b = s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: "carol"})
		if status == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("create call after Redis returned: %d %s", status, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.join("plain", "erin")
}
