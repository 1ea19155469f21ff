package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/redistest"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/metrics/scrape"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
)

// The tests of cluster mode run several "sotto serve" processes on
// loopback around one redis-server of their own (internal/redistest).

const clusterSecret = "cluster-test-secret-0123456789abcdef"

// clusterNode is one "sotto serve" of a test cluster.
type clusterNode struct {
	*served
	id string // from its /healthz
}

// startCluster runs n nodes sharing the Redis at redisURL, with args, and
// returns once each sees all n.
func startCluster(t *testing.T, ctx context.Context, redisURL string, n int, args ...string) []*clusterNode {
	t.Helper()
	nodes := make([]*clusterNode, n)
	for i := range nodes {
		nodes[i] = &clusterNode{served: startServe(t, ctx, nil,
			append([]string{"--tcp-port", "-1", "--secret", clusterSecret, "--redis", redisURL}, args...)...)}
	}
	for _, node := range nodes {
		wait.Until(ctx, t, "every node to see the whole cluster", func() bool {
			h, status := healthOf(node.url)
			node.id = h.Node
			return status == http.StatusOK && h.Nodes == n
		})
	}
	return nodes
}

// healthOf reads base's /healthz; status 0 if it does not answer.
func healthOf(base string) (api.Health, int) {
	var h api.Health
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h, resp.StatusCode
}

// ownerOf returns the node whose lease room is under, nil if none holds
// it.
func ownerOf(t *testing.T, ctx context.Context, redisURL, room string, nodes []*clusterNode) *clusterNode {
	t.Helper()
	rdb, err := store.OpenRedis(ctx, redisURL)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	holder, err := rdb.LeaseHolder(ctx, "room:"+room)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.id == holder {
			return n
		}
	}
	return nil
}

// scrapeNode reads a node's /metrics.
func scrapeNode(t *testing.T, ctx context.Context, base string) scrape.Snapshot {
	t.Helper()
	snap, err := scrape.Fetch(ctx, nil, base+"/metrics", "")
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// clusterToken mints a token for room and identity.
func clusterToken(t *testing.T, room, identity string) string {
	t.Helper()
	tok, err := token.Mint([]byte(clusterSecret), token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Callers joining one room through three different nodes all land on the
// node that runs it and hear each other; the other two answered each
// with the owner (wrong_node).
func TestClusterCallersMeetOnTheOwner(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	rs := redistest.Start(t)
	nodes := startCluster(t, ctx, rs.URL(), 3)
	callers := []*caller{newCaller(t, "alice"), newCaller(t, "bob"), newCaller(t, "carol")}
	for i, c := range callers {
		if err := c.join(ctx, nodes[i].url, clusterToken(t, "r", c.name)); err != nil {
			t.Fatalf("%s joins through node %d: %v", c.name, i, err)
		}
	}
	waitHearsAll(t, ctx, callers, time.Time{})
	checkNoDecryptFailures(t, callers)

	// The first join, through an idle cluster, placed the room on the node
	// it reached; the media of all three run there.
	owner := ownerOf(t, ctx, rs.URL(), "r", nodes)
	if owner != nodes[0] {
		t.Fatalf("room runs on %v, want the node of the first join (%s)", owner, nodes[0].id)
	}
	redirects := 0.0
	for _, n := range nodes {
		snap := scrapeNode(t, ctx, n.url)
		want := 0.0
		if n == owner {
			want = 3
		}
		if got := snap.Sum("sotto_participants"); got != want {
			t.Errorf("node %s relays %v participants, want %v", n.id, got, want)
		}
		redirects += snap.Sum("sotto_join_redirects_total")
	}
	if redirects != 2 {
		t.Errorf("%v joins answered wrong_node, want 2", redirects)
	}
}

// joinAnswer is one answer to a raw join.
type joinAnswer struct {
	node   string // base URL asked
	status int
	body   []byte
}

// postJoin sends a join with a fresh loopback offer to base.
func postJoin(t *testing.T, ctx context.Context, base, room, tok string) joinAnswer {
	t.Helper()
	_, sdp := newOffer(t)
	return postJoinSDP(t, ctx, base, room, tok, sdp)
}

func postJoinSDP(t *testing.T, ctx context.Context, base, room, tok, sdp string) joinAnswer {
	t.Helper()
	body, _ := json.Marshal(api.JoinRequest{SDP: sdp})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/rooms/"+room+"/join", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return joinAnswer{node: base, status: resp.StatusCode, body: b}
}

// nodeURL is the node a wrong_node answer names, "" for another answer.
func (a joinAnswer) nodeURL() string {
	var e api.ErrorBody
	if a.status != http.StatusConflict || json.Unmarshal(a.body, &e) != nil || e.Error == nil || e.Error.Code != api.CodeWrongNode {
		return ""
	}
	return e.Error.NodeURL
}

// 20 concurrent first joins of one room through three nodes make exactly
// one owner: every join is admitted there or answered with it.
func TestClusterConcurrentFirstJoins(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	rs := redistest.Start(t)
	nodes := startCluster(t, ctx, rs.URL(), 3, "--max-participants", "32", "--drop-timeout", "1m")
	const joins = 20
	offers := make([]string, joins)
	for i := range offers {
		_, offers[i] = newOffer(t)
	}
	answers := make([]joinAnswer, joins)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range joins {
		wg.Go(func() {
			<-start
			answers[i] = postJoinSDP(t, ctx, nodes[i%3].url, "contested", clusterToken(t, "contested", fmt.Sprint("user-", i)), offers[i])
		})
	}
	close(start)
	wg.Wait()
	admittedBy := map[string]int{}
	named := map[string]int{}
	for _, a := range answers {
		switch {
		case a.status == http.StatusOK:
			admittedBy[a.node]++
		case a.nodeURL() != "":
			named[a.nodeURL()]++
		default:
			t.Fatalf("join through %s: %d %s", a.node, a.status, a.body)
		}
	}
	owner := ownerOf(t, ctx, rs.URL(), "contested", nodes)
	if owner == nil || len(admittedBy) != 1 || admittedBy[owner.url] == 0 || (len(named) > 0 && (len(named) != 1 || named[owner.url] == 0)) {
		t.Fatalf("admitted by %v, answered with %v; the lease is %v's", admittedBy, named, owner)
	}
	t.Logf("owner %s admitted %d joins; %d were answered with it", owner.id, admittedBy[owner.url], named[owner.url])
}

// joinRoom joins room through base with a loopback peer, following one
// wrong_node answer, and opens its event stream; it returns the node that
// runs the room.
func joinRoom(t *testing.T, ctx context.Context, base, room, tok string) string {
	t.Helper()
	pc := audioPeer(t)
	sdp, err := loopback.Offer(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	a := postJoinSDP(t, ctx, base, room, tok, sdp)
	if u := a.nodeURL(); u != "" {
		base = u
		a = postJoinSDP(t, ctx, base, room, tok, sdp)
	}
	var jr api.JoinResponse
	if a.status != http.StatusOK || json.Unmarshal(a.body, &jr) != nil {
		t.Fatalf("join %s: %d %s", room, a.status, a.body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: jr.SDP}); err != nil {
		t.Fatal(err)
	}
	conn, err := loopback.Events(ctx, base, jr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	// Read what comes, so that the stream closes cleanly when the server
	// stops.
	go func() {
		for {
			if _, _, err := conn.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	return base
}

// One identity in three rooms, each on another node: requesters in all
// three fetch its bundle at once, each through the node of its room, and
// every one-time prekey is handed out once.
func TestClusterOneTimePrekeysOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	rs := redistest.Start(t)
	nodes := startCluster(t, ctx, rs.URL(), 3, "--drop-timeout", "1m")
	const perRoom, oneTime = 4, 6
	type requester struct{ node, token string }
	var requesters []requester
	served := map[string]bool{}
	for i, n := range nodes {
		room := fmt.Sprint("pk-", i)
		node := joinRoom(t, ctx, n.url, room, clusterToken(t, room, "target"))
		served[node] = true
		for j := range perRoom {
			tok := clusterToken(t, room, fmt.Sprintf("req-%d-%d", i, j))
			if got := joinRoom(t, ctx, node, room, tok); got != node {
				t.Fatalf("%s runs on %s and on %s", room, node, got)
			}
			requesters = append(requesters, requester{node, tok})
		}
	}
	if len(served) != 3 {
		t.Fatalf("the three rooms run on %d nodes, want 3", len(served))
	}
	if n := putPrekeys(t, ctx, nodes[1].url, clusterToken(t, "pk-0", "target"), oneTime); n != oneTime {
		t.Fatalf("target holds %d one-time prekeys, want %d", n, oneTime)
	}
	got := make([]fetchAnswer, len(requesters))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, r := range requesters {
		wg.Go(func() {
			<-start
			got[i] = fetchPrekeys(t, ctx, r.node, r.token, "target")
		})
	}
	close(start)
	wg.Wait()
	handed := map[uint32]int{}
	for i, a := range got {
		var b api.PrekeyBundle
		if a.status != http.StatusOK || json.Unmarshal(a.body, &b) != nil || b.Identity != "target" {
			t.Fatalf("fetch %d through %s: %d %s", i, requesters[i].node, a.status, a.body)
		}
		if b.OneTimePrekey != nil {
			handed[b.OneTimePrekey.ID]++
		}
	}
	if len(handed) != oneTime {
		t.Errorf("%d distinct one-time prekeys handed out to %d requesters, want all %d", len(handed), len(requesters), oneTime)
	}
	for id, n := range handed {
		if n != 1 {
			t.Errorf("one-time prekey %d handed out %d times", id, n)
		}
	}
}

// balancer spreads requests over the nodes in turn, passing over nodes
// that refuse connections: the single address in front of a cluster.
// Clients reach a call's event stream at the node that runs it
// (JoinResponse.NodeURL), so WebSockets never come through here.
type balancer struct {
	nodes []string
	next  atomic.Uint32
}

func (b *balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	first := int(b.next.Add(1))
	for i := range b.nodes {
		target := b.nodes[(first+i)%len(b.nodes)]
		req, err := http.NewRequestWithContext(r.Context(), r.Method, target+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		req.Header = r.Header.Clone()
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			continue // that node is down
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "no node answers", http.StatusBadGateway)
}

func startBalancer(t *testing.T, nodes []*clusterNode) string {
	t.Helper()
	b := &balancer{}
	for _, n := range nodes {
		b.nodes = append(b.nodes, n.url)
	}
	lb := httptest.NewServer(b)
	t.Cleanup(lb.Close)
	return lb.URL
}

// callThroughBalancer starts n nodes behind a balancer and a call of the
// named callers joined through it, and returns once they hear each other,
// with the node that runs the call.
func callThroughBalancer(t *testing.T, ctx context.Context, n int, names ...string) (lb string, callers []*caller, nodes []*clusterNode, owner *clusterNode, redisURL string) {
	t.Helper()
	rs := redistest.Start(t)
	nodes = startCluster(t, ctx, rs.URL(), n)
	lb = startBalancer(t, nodes)
	for _, name := range names {
		c := newCaller(t, name)
		if err := c.join(ctx, lb, clusterToken(t, "r", c.name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		callers = append(callers, c)
	}
	waitHearsAll(t, ctx, callers, time.Time{})
	if owner = ownerOf(t, ctx, rs.URL(), "r", nodes); owner == nil {
		t.Fatal("nobody holds the room's lease")
	}
	return lb, callers, nodes, owner, rs.URL()
}

// waitRejoined waits until every caller's call rejoined by itself (it
// is still the call the caller joined) and returns when the last did.
func waitRejoined(t *testing.T, ctx context.Context, callers []*caller) time.Time {
	t.Helper()
	for _, c := range callers {
		wait.Until(ctx, t, c.name+"'s call to rejoin", func() bool { return c.current().Stats().Rejoins > 0 })
		if err := c.current().Err(); err != nil {
			t.Fatalf("%s: the call ended: %v", c.name, err)
		}
	}
	return time.Now()
}

// The node that runs a call is killed (kill -9): its lease runs out, and
// the callers' calls, rejoining by themselves through the cluster's one
// address, meet on another node and hear each other again within 15 s,
// with fresh keys and no frame that fails to decrypt.
func TestClusterOwnerKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	_, callers, nodes, owner, redisURL := callThroughBalancer(t, ctx, 3, "alice", "bob", "carol")

	killed := time.Now()
	if err := owner.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	waitHearsAll(t, ctx, callers, waitRejoined(t, ctx, callers))
	recovered := time.Since(killed)
	t.Logf("every caller hears every other again %v after the owner was killed", recovered.Round(time.Millisecond))
	if recovered > 15*time.Second {
		t.Errorf("recovery took %v, want at most 15 s", recovered)
	}
	if next := ownerOf(t, ctx, redisURL, "r", nodes); next == nil || next == owner {
		t.Errorf("the room runs on %v after its node died", next)
	}
	// A moment more of audio under the new keys, then not one failure.
	time.Sleep(time.Second)
	checkNoDecryptFailures(t, callers)
}

// SIGTERM drains the node that runs a call: it hands the room back and
// tells its callers (server_shutdown), who meet again on another node at
// once, without waiting for a lease to run out; the node exits.
func TestClusterDrainOnSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	_, callers, _, owner, _ := callThroughBalancer(t, ctx, 2, "alice", "bob")
	stopAt := owner.sigterm(t)
	waitHearsAll(t, ctx, callers, waitRejoined(t, ctx, callers))
	t.Logf("callers hear each other again %v after SIGTERM", time.Since(stopAt).Round(time.Millisecond))
	if d := time.Since(stopAt); d > 5*time.Second {
		t.Errorf("moving the call took %v; the drained room should be free at once", d)
	}
	owner.waitExit(t, stopAt)
	checkNoDecryptFailures(t, callers)
}

// Redis stops mid-call: the call goes on, new joins are refused with
// 503 store_unavailable and /healthz says degraded; once Redis is back
// (empty) the nodes claim their rooms again and joins work, without a
// restart.
func TestClusterRedisOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	rs := redistest.Start(t)
	nodes := startCluster(t, ctx, rs.URL(), 2)
	alice, bob := newCaller(t, "alice"), newCaller(t, "bob")
	for i, c := range []*caller{alice, bob} {
		if err := c.join(ctx, nodes[i].url, clusterToken(t, "r", c.name)); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
	}
	waitHearsAll(t, ctx, []*caller{alice, bob}, time.Time{})
	owner := ownerOf(t, ctx, rs.URL(), "r", nodes)

	rs.Stop()
	stopped := time.Now()
	for _, n := range nodes {
		if h, status := healthOf(n.url); status != http.StatusOK || h.Status != "degraded" || h.StoreStatus != "unavailable" {
			t.Errorf("healthz of %s with Redis down: %d %+v", n.id, status, h)
		}
	}
	carol := newCaller(t, "carol")
	for _, n := range nodes {
		err := carol.join(ctx, n.url, clusterToken(t, "r", carol.name))
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Code != api.CodeStoreUnavailable {
			t.Errorf("join through %s with Redis down: %v, want %s", n.id, err, api.CodeStoreUnavailable)
		}
	}
	// The call goes on: audio keeps coming, well past the lease's life.
	time.Sleep(8 * time.Second)
	waitHearsAll(t, ctx, []*caller{alice, bob}, stopped.Add(7*time.Second))

	rs.Restart()
	for _, n := range nodes {
		wait.Until(ctx, t, "healthz to recover", func() bool {
			h, status := healthOf(n.url)
			return status == http.StatusOK && h.Status == "ok" && h.Nodes == 2
		})
	}
	wait.Until(ctx, t, "the owner to claim its room again", func() bool { return ownerOf(t, ctx, rs.URL(), "r", nodes) == owner })
	other := nodes[0]
	if other == owner {
		other = nodes[1]
	}
	if err := carol.join(ctx, other.url, clusterToken(t, "r", carol.name)); err != nil {
		t.Fatalf("join after Redis returned: %v", err)
	}
	all := []*caller{alice, bob, carol}
	waitHearsAll(t, ctx, all, time.Now())
	for _, c := range []*caller{alice, bob} {
		select {
		case <-c.current().Done():
			t.Errorf("%s's call ended: %v", c.name, c.current().Err())
		default:
		}
	}
	checkNoDecryptFailures(t, all)
}

// A single node with --data-dir: a call ended before a restart stays
// ended after it (its invite and tokens are refused), and the prekey
// directory survives, one-time prekeys handed out before the restart
// included.
func TestServeDataDirSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	dir := t.TempDir()
	args := []string{"--tcp-port", "-1", "--secret", clusterSecret, "--data-dir", dir}
	first := startServe(t, ctx, nil, args...)

	call := createCall(t, first.url, "alice")
	end := func(base string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/rooms/"+call.Room+"/end", nil)
		req.Header.Set("Authorization", "Bearer "+call.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := end(first.url); status != http.StatusNoContent {
		t.Fatalf("end: %d", status)
	}
	joinRoom(t, ctx, first.url, "r1", clusterToken(t, "r1", "dave"))
	joinRoom(t, ctx, first.url, "r1", clusterToken(t, "r1", "erin"))
	if n := putPrekeys(t, ctx, first.url, clusterToken(t, "r1", "dave"), 3); n != 3 {
		t.Fatalf("dave holds %d one-time prekeys", n)
	}
	var b api.PrekeyBundle
	if a := fetchPrekeys(t, ctx, first.url, clusterToken(t, "r1", "erin"), "dave"); a.status != http.StatusOK || json.Unmarshal(a.body, &b) != nil || b.OneTimePrekey == nil {
		t.Fatalf("erin's fetch: %d %s", a.status, a.body)
	}
	handed := b.OneTimePrekey.ID

	first.waitExit(t, first.sigterm(t))
	second := startServe(t, ctx, nil, args...)
	if h, status := healthOf(second.url); status != http.StatusOK || h.Store != "file" {
		t.Errorf("healthz: %d %+v", status, h)
	}
	if a := postJoin(t, ctx, second.url, call.Room, call.Token); a.status != http.StatusGone || !bytes.Contains(a.body, []byte(api.CodeCallEnded)) {
		t.Errorf("join of the ended call after the restart: %d %s", a.status, a.body)
	}
	body, _ := json.Marshal(api.RedeemInviteRequest{Invite: call.Invite, Name: "mallory"})
	resp, err := http.Post(second.url+"/v1/invites/redeem", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusGone {
		t.Errorf("redeem of the ended call's invite after the restart: %d", resp.StatusCode)
	}
	joinRoom(t, ctx, second.url, "r1", clusterToken(t, "r1", "dave"))
	joinRoom(t, ctx, second.url, "r1", clusterToken(t, "r1", "frank"))
	b = api.PrekeyBundle{}
	if a := fetchPrekeys(t, ctx, second.url, clusterToken(t, "r1", "frank"), "dave"); a.status != http.StatusOK || json.Unmarshal(a.body, &b) != nil {
		t.Fatalf("frank's fetch after the restart: %d %s", a.status, a.body)
	}
	if b.OneTimePrekey == nil || b.OneTimePrekey.ID == handed {
		t.Errorf("after the restart frank got one-time prekey %+v; %d was handed out before", b.OneTimePrekey, handed)
	}
	// Erin's grant survived too: no second one-time prekey for her.
	joinRoom(t, ctx, second.url, "r1", clusterToken(t, "r1", "erin"))
	b = api.PrekeyBundle{}
	if a := fetchPrekeys(t, ctx, second.url, clusterToken(t, "r1", "erin"), "dave"); a.status != http.StatusOK || json.Unmarshal(a.body, &b) != nil || b.OneTimePrekey != nil {
		t.Errorf("erin's second fetch after the restart: %d %s", a.status, a.body)
	}
}

// "sotto load" given one node of a cluster spreads its rooms over the
// nodes (its callers follow wrong_node) and reports every node's rooms,
// forwarded packets and CPU, whose sums are the server figures.
func TestLoadAgainstCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*wait.Timeout)
	defer cancel()
	rs := redistest.Start(t)
	nodes := startCluster(t, ctx, rs.URL(), 3)
	rep, status := runLoadCmd(t, ctx, nodes[0].url, "--secret", clusterSecret, "--rooms", "3", "--callers", "3", "--duration", "4s")
	if status != 0 || *rep.CallersFailed != 0 || *rep.DecryptFailures != 0 {
		t.Fatalf("exit %d, %d callers failed, %d decrypt failures", status, *rep.CallersFailed, *rep.DecryptFailures)
	}
	if len(rep.Nodes) != 3 {
		t.Fatalf("report names %d nodes, want 3", len(rep.Nodes))
	}
	rooms, busy := 0, 0
	var forwarded uint64
	for _, n := range rep.Nodes {
		rooms += n.Rooms
		forwarded += n.ForwardedPackets
		if n.Rooms > 0 {
			busy++
			if n.ForwardedPackets == 0 || n.CPUSeconds <= 0 {
				t.Errorf("node %s ran %d rooms but reports %d forwarded packets, %.3f s CPU", n.URL, n.Rooms, n.ForwardedPackets, n.CPUSeconds)
			}
		}
	}
	if rooms != 3 || busy < 2 {
		t.Errorf("%d rooms on %d nodes, want 3 spread over at least 2", rooms, busy)
	}
	if forwarded != *rep.Forwarded {
		t.Errorf("nodes forwarded %d packets in all, the report says %d", forwarded, *rep.Forwarded)
	}
	if rep.JoinsRedirected == 0 {
		t.Error("no join went through a node that does not run its room")
	}
}
