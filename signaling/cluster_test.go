package signaling

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/cluster"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/store"
)

// clusterOf starts n signaling servers as the nodes of one cluster over
// one memory store, named a, b, ...
func clusterOf(t *testing.T, n int) (store.Store, []*testServer) {
	t.Helper()
	st := store.NewMemory(nil)
	nodes := make([]*testServer, n)
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var node *testServer
		cl, err := cluster.New(cluster.Config{
			Store:     st,
			ID:        string(rune('a' + i)),
			URL:       "http://" + ln.Addr().String(),
			Load:      func() cluster.Load { return cluster.Load{Rooms: len(node.srv.Rooms())} },
			Rooms:     func() []string { return node.srv.Rooms() },
			Lost:      func(room string) { node.srv.CloseRoom(room, api.ReasonMoved) },
			Heartbeat: 50 * time.Millisecond,
			NodeTTL:   300 * time.Millisecond,
			LeaseTTL:  300 * time.Millisecond,
			Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		node = newTestServerOn(t, ln, media.Config{}, func(c *Config) { c.Store, c.Cluster = st, cl })
		if err := cl.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Stop(context.Background()) })
		nodes[i] = node
	}
	return st, nodes
}

// expectWrongNode checks a wrong_node answer naming owner.
func (s *testServer) expectWrongNode(status int, body []byte, owner *testServer) {
	s.t.Helper()
	s.expectError(status, body, http.StatusConflict, api.CodeWrongNode)
	var e api.ErrorBody
	_ = json.Unmarshal(body, &e)
	if e.Error.NodeURL != owner.ts.URL {
		s.t.Fatalf("wrong_node names %q, want %q", e.Error.NodeURL, owner.ts.URL)
	}
}

// Joins and ends through a node that does not run the room are answered
// with the node that does; there they succeed, and the page of any node
// may call the owner across origins.
func TestClusterAnswersWithTheOwner(t *testing.T) {
	st, nodes := clusterOf(t, 2)
	a, b := nodes[0], nodes[1]
	for _, n := range nodes {
		wait.For(t, "every node to see the other", func() bool { return n.srv.cluster.Alive() == 2 })
	}

	// The first join through a, idle like b, places the room on a.
	alice, _ := a.join("r", "alice")
	ea := a.connect(alice)
	status, body := b.joinWithToken("r", mintToken(t, "r", "bob"))
	b.expectWrongNode(status, body, a)
	bob := a.mustJoinWithToken("r", mintToken(t, "r", "bob"))
	if bob.NodeURL != a.ts.URL {
		t.Errorf("join answer names node %q, want a's %q", bob.NodeURL, a.ts.URL)
	}
	ea.expectJoined(bob.ParticipantID)
	// Who is in r only a knows: prekey fetches go there too.
	status, body = b.do(http.MethodGet, "/v1/prekeys/alice", "Bearer "+mintToken(t, "r", "bob"), nil)
	b.expectWrongNode(status, body, a)
	if got := b.srv.Stats().JoinRedirects; got != 1 {
		t.Errorf("b counted %d redirects, want 1", got)
	}

	// /healthz names the store, the node and the nodes it sees.
	status, body = b.do(http.MethodGet, "/healthz", "", nil)
	var h api.Health
	if err := json.Unmarshal(body, &h); err != nil || status != http.StatusOK ||
		h != (api.Health{Status: "ok", Store: "memory", StoreStatus: "ok", Node: "b", Nodes: 2}) {
		t.Errorf("healthz: %d %s", status, body)
	}

	// The page of b may call a (CORS), and open an event stream there;
	// another origin may not.
	preflight := func(origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, a.ts.URL+"/v1/rooms/r/join", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := preflight(b.ts.URL); resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != b.ts.URL ||
		resp.Header.Get("Access-Control-Allow-Headers") != "Authorization, Content-Type" {
		t.Errorf("preflight from b: %d %v", resp.StatusCode, resp.Header)
	}
	if resp := preflight("http://evil.example"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin allowed: %v", resp.Header)
	}
	carolJoin, _ := a.join("r", "carol")
	for origin, ok := range map[string]bool{b.ts.URL: true, "http://evil.example": false} {
		ctx, cancel := contextWithWait()
		u := "ws" + a.ts.URL[len("http"):] + carolJoin.EventsURL + "?session=" + carolJoin.Session
		conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {origin}}})
		cancel()
		if (err == nil) != ok {
			t.Errorf("event stream from %s: %v", origin, err)
		}
		if err == nil {
			conn.CloseNow()
		}
	}

	// A private call joined through b runs on b: ending it through a is
	// answered with b, where it ends; redeeming its invite through a is
	// answered with b too, where the guest knocks at the host's door.
	call := b.createCall("dave")
	dave := b.connect(b.mustJoinWithToken(call.Room, call.Token))
	status, body = a.postJSON("/v1/invites/redeem", "", api.RedeemInviteRequest{Invite: call.Invite, Name: "erin"})
	a.expectWrongNode(status, body, b)
	if k := b.knock(call.Invite, "erin"); k.Room != call.Room {
		t.Errorf("erin knocks at %q on b, want %q", k.Room, call.Room)
	}
	dave.expect(api.TypeKnock)
	status, body = a.do(http.MethodPost, "/v1/rooms/"+call.Room+"/end", "Bearer "+call.Token, nil)
	a.expectWrongNode(status, body, b)
	if status, body = b.do(http.MethodPost, "/v1/rooms/"+call.Room+"/end", "Bearer "+call.Token, nil); status != http.StatusNoContent {
		t.Fatalf("end on the owner: %d %s", status, body)
	}
	dave.expect(api.TypeKnock) // erin's knock ends with the call
	dave.expectClosed(api.ReasonRoomEnded)

	// Should another node take the lease of a room a runs, a closes it:
	// its callers rejoin where it runs now.
	if _, err := st.ReleaseLease(context.Background(), "room:r", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.ClaimLease(context.Background(), "room:r", "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	ea.expectClosed(api.ReasonMoved, api.TypeJoined, api.TypeLeft)
	ctx, cancel := contextWithWait()
	defer cancel()
	_, err := loopback.Join(ctx, newPeer(t, "audio/opus").pc, a.ts.URL, "r", mintToken(t, "r", "frank"))
	if err == nil {
		t.Fatal("a took a join of the room b runs now")
	}
}

// A participant whose bundle the directory lost (a Redis restarted without
// persistence) is asked to upload again when a co-participant asks for it.
func TestLostBundleAsksForUpload(t *testing.T) {
	s := newTestServer(t, nil)
	alice, _ := s.join("r", "alice")
	ea := s.connect(alice)
	s.join("r", "bob")
	ea.expect(api.TypeJoined)
	status, body := s.fetch("r", "bob", "alice")
	s.expectNoBundle(status, body)
	var low api.PrekeysLow
	ea.decode(ea.expect(api.TypePrekeysLow), &low)
	if low.Remaining != 0 {
		t.Errorf("prekeys_low with %d remaining, want 0", low.Remaining)
	}
}

// Pages of the allowed origins may call the API (CORS); others get no
// CORS headers, and requests without an Origin are not concerned.
func TestCORSForAllowedOrigins(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.OriginPatterns = []string{"app.example.com"} })
	for origin, allowed := range map[string]bool{"https://app.example.com": true, "https://evil.example": false, "": false} {
		req, _ := http.NewRequest(http.MethodOptions, s.ts.URL+"/v1/calls", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.Header.Set("Access-Control-Request-Method", "POST")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Access-Control-Allow-Origin"); (got == origin && origin != "") != allowed || (allowed && resp.StatusCode != http.StatusNoContent) {
			t.Errorf("preflight from %q: %d, allow-origin %q", origin, resp.StatusCode, got)
		}
	}
	status, body := s.postJSON("/v1/calls", "", api.CreateCallRequest{Name: "alice"})
	if status != http.StatusCreated {
		t.Errorf("create call without an Origin: %d %s", status, body)
	}
}
