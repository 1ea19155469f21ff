package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/redistest"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/store"
)

// Short times, so that expiries happen within a test.
const (
	testHeartbeat = 50 * time.Millisecond
	testTTL       = 250 * time.Millisecond
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// node is a stand-in for a server: the rooms it runs, with their
// participants, and the rooms it was told it lost.
type node struct {
	*Cluster
	mu    sync.Mutex
	rooms map[string]int
	lost  []string
}

func (n *node) run(room string, participants int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rooms[room] = participants
}

func (n *node) lostRooms() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.lost)
}

// startNode starts a node named id on st, stopped when the test ends.
func startNode(t *testing.T, st Store, id string) *node {
	t.Helper()
	n := &node{rooms: make(map[string]int)}
	c, err := New(Config{
		Store: st,
		ID:    id,
		URL:   "http://" + id + ".test:7880/",
		Load: func() Load {
			n.mu.Lock()
			defer n.mu.Unlock()
			l := Load{Rooms: len(n.rooms)}
			for _, p := range n.rooms {
				l.Participants += p
			}
			return l
		},
		Rooms: func() []string {
			n.mu.Lock()
			defer n.mu.Unlock()
			var out []string
			for r := range n.rooms {
				out = append(out, r)
			}
			return out
		},
		Lost: func(room string) {
			n.mu.Lock()
			defer n.mu.Unlock()
			delete(n.rooms, room)
			n.lost = append(n.lost, room)
		},
		Heartbeat: testHeartbeat,
		NodeTTL:   testTTL,
		LeaseTTL:  testTTL,
		Logger:    discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.Cluster = c
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return n
}

// crash stops n's heartbeat without a word to the store, as kill -9 would.
func (n *node) crash() {
	n.stopOnce.Do(func() {
		close(n.stop)
		<-n.done
	})
}

func threeNodes(t *testing.T) (store.Store, []*node) {
	st := store.NewMemory(nil)
	nodes := []*node{startNode(t, st, "a"), startNode(t, st, "b"), startNode(t, st, "c")}
	for _, n := range nodes {
		n.refresh(context.Background())
	}
	return st, nodes
}

func TestNewChecksConfig(t *testing.T) {
	ok := Config{Store: store.NewMemory(nil), URL: "https://n1.example", Load: func() Load { return Load{} },
		Rooms: func() []string { return nil }, Lost: func(string) {}}
	c, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if !idPattern.MatchString(c.ID()) || c.URL() != "https://n1.example" {
		t.Errorf("id %q, url %q", c.ID(), c.URL())
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Errorf("stop of a node never started: %v", err)
	}
	for _, bad := range []func(*Config){
		func(c *Config) { c.URL = "" },
		func(c *Config) { c.URL = "ftp://n1.example" },
		func(c *Config) { c.URL = "https://n1.example/?x=1" },
		func(c *Config) { c.ID = "a:b" },
		func(c *Config) { c.Lost = nil },
		func(c *Config) { c.Heartbeat, c.LeaseTTL = time.Second, time.Second },
	} {
		cfg := ok
		bad(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// The first join of a room places it on the least-loaded node: the node
// asked when it is among them, else another, which then runs it; every
// node then answers with the same owner.
func TestPlaceLeastLoaded(t *testing.T) {
	ctx := context.Background()
	_, nodes := threeNodes(t)
	a := nodes[0]
	if url, err := a.Place(ctx, "r1"); err != nil || url != "" {
		t.Fatalf("first room through an idle cluster: %q, %v; want this node", url, err)
	}
	a.run("r1", 3)
	url, err := a.Place(ctx, "r2")
	if err != nil || (url != nodes[1].URL() && url != nodes[2].URL()) {
		t.Fatalf("second room through a loaded node: %q, %v; want b or c", url, err)
	}
	owner := nodes[1]
	if url == nodes[2].URL() {
		owner = nodes[2]
	}
	// The node it was placed on takes it without a word to the others.
	if got, err := owner.Place(ctx, "r2"); err != nil || got != "" {
		t.Fatalf("the chosen node: %q, %v; want itself", got, err)
	}
	owner.run("r2", 1)
	// A third room goes to the one node left idle, as a just-placed room
	// counts although the node's record does not show it yet.
	third, err := a.Place(ctx, "r3")
	if err != nil || third == url || third == "" {
		t.Fatalf("third room: %q, %v; want the idle node, not %q", third, err, url)
	}
	for _, n := range nodes {
		for room, want := range map[string]*node{"r1": a, "r2": owner} {
			got, err := n.Place(ctx, room)
			if err != nil {
				t.Fatal(err)
			}
			if (n == want && got != "") || (n != want && got != want.URL()) {
				t.Errorf("%s asked for %s: %q, want %s", n.ID(), room, got, want.ID())
			}
			if o, err := n.Owner(ctx, room); err != nil || (n == want) != (o == "") {
				t.Errorf("%s: owner of %s %q, %v", n.ID(), room, o, err)
			}
		}
	}
	if o, err := a.Owner(ctx, "nobody"); err != nil || o != "" {
		t.Errorf("owner of an unplaced room: %q, %v", o, err)
	}
	st := a.Stats()
	if st.NodesAlive != 3 || st.PlacedHere == 0 || st.PlacedElsewhere == 0 {
		t.Errorf("stats %+v", st)
	}
}

// 20 concurrent first joins of one room through three nodes: one owner,
// and every answer names it.
func TestConcurrentFirstJoinsMakeOneOwner(t *testing.T) {
	_, nodes := threeNodes(t)
	const joins = 20
	answers := make([]string, joins)
	errs := make([]error, joins)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range joins {
		wg.Go(func() {
			<-start
			answers[i], errs[i] = nodes[i%3].Place(context.Background(), "contested")
		})
	}
	close(start)
	wg.Wait()
	owners := map[string]bool{}
	for i, url := range answers {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if url == "" {
			url = nodes[i%3].URL()
		}
		owners[url] = true
	}
	if len(owners) != 1 {
		t.Fatalf("owners %v, want one", owners)
	}
}

// A node that finds another holding the lease of a room it runs loses the
// room; a lease that merely ran out is claimed again.
func TestLostAndReclaimedLeases(t *testing.T) {
	ctx := context.Background()
	st, nodes := threeNodes(t)
	a := nodes[0]
	for _, room := range []string{"kept", "taken"} {
		if _, err := st.ClaimLease(ctx, leaseName(room), "a", time.Hour); err != nil {
			t.Fatal(err)
		}
		a.run(room, 2)
	}
	for _, room := range []string{"kept", "taken"} {
		if ok, err := st.ReleaseLease(ctx, leaseName(room), "a"); err != nil || !ok {
			t.Fatal(err)
		}
	}
	if _, err := st.ClaimLease(ctx, leaseName("taken"), "b", time.Hour); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the taken room to be lost", func() bool { return slices.Equal(a.lostRooms(), []string{"taken"}) })
	wait.For(t, "the free lease to be claimed again", func() bool {
		h, err := st.LeaseHolder(ctx, leaseName("kept"))
		return err == nil && h == "a"
	})
	if a.Stats().RoomsLost != 1 {
		t.Errorf("stats %+v", a.Stats())
	}
}

// A node that dies holding a room: joins are refused (or sent to it)
// until its record and lease run out, then the room is placed anew.
func TestDeadOwnerIsReplaced(t *testing.T) {
	ctx := context.Background()
	_, nodes := threeNodes(t)
	a, b := nodes[0], nodes[1]
	if url, err := a.Place(ctx, "r"); err != nil || url != "" {
		t.Fatalf("place: %q, %v", url, err)
	}
	a.run("r", 2)
	died := time.Now()
	a.crash()
	wait.For(t, "the room to be placed elsewhere", func() bool {
		url, err := b.Place(ctx, "r")
		switch {
		case errors.Is(err, ErrOwnerGone):
			return false
		case err != nil:
			t.Fatal(err)
		}
		return url != a.URL()
	})
	if d := time.Since(died); d > 2*testTTL+4*testHeartbeat {
		t.Errorf("the room moved %v after its node died; its lease lives %v", d, testTTL)
	}
	wait.For(t, "b to see two nodes", func() bool { return b.Stats().NodesAlive == 2 })
}

// A draining node hands its leases back and is chosen no more.
func TestDrain(t *testing.T) {
	ctx := context.Background()
	st, nodes := threeNodes(t)
	a, b := nodes[0], nodes[1]
	for _, n := range nodes[1:] {
		n.run("busy-"+n.ID(), 5)
	}
	if url, err := a.Place(ctx, "r"); err != nil || url != "" {
		t.Fatalf("place: %q, %v", url, err)
	}
	a.run("r", 1)
	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err := st.LeaseHolder(ctx, leaseName("r")); err != nil || h != "" {
		t.Fatalf("after drain the lease is held by %q, %v", h, err)
	}
	// Its heartbeat goes on, but it does not claim its rooms again.
	time.Sleep(4 * testHeartbeat)
	if h, err := st.LeaseHolder(ctx, leaseName("r")); err != nil || h != "" {
		t.Fatalf("the draining node's room is held by %q, %v", h, err)
	}
	b.refresh(ctx)
	for i := range 5 {
		room := fmt.Sprint("new-", i)
		url, err := b.Place(ctx, room)
		if err != nil || url == a.URL() {
			t.Fatalf("place %s through b: %q, %v; a is draining", room, url, err)
		}
		if url, err := a.Place(ctx, room); err != nil || url == "" {
			t.Fatalf("place %s through the draining node: %q, %v", room, url, err)
		}
	}
	if url, err := a.Place(ctx, "r"); err != nil || url == "" {
		t.Fatalf("the drained room through the draining node: %q, %v; want another node", url, err)
	}
}

// While Redis is away the node keeps its rooms and Place fails with
// store.ErrUnavailable; once Redis is back (empty) the node publishes
// itself and claims its rooms again, without a restart.
func TestRedisOutage(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	r, err := store.OpenRedis(ctx, rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := startNode(t, r, "a")
	if url, err := a.Place(ctx, "r"); err != nil || url != "" {
		t.Fatalf("place: %q, %v", url, err)
	}
	a.run("r", 2)
	rs.Stop()
	wait.For(t, "the outage to be noticed", func() bool { return !a.Stats().StoreOK })
	if _, err := a.Place(ctx, "other"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("place during the outage: %v", err)
	}
	time.Sleep(2 * testTTL)
	if lost := a.lostRooms(); len(lost) != 0 {
		t.Fatalf("rooms lost during the outage: %v", lost)
	}
	rs.Restart()
	wait.For(t, "the lease claimed again", func() bool {
		h, err := r.LeaseHolder(ctx, leaseName("r"))
		return err == nil && h == "a"
	})
	wait.For(t, "the record published again", func() bool {
		nodes, err := r.Nodes(ctx)
		return err == nil && nodes["a"] != nil
	})
	if url, err := a.Place(ctx, "other"); err != nil || url != "" {
		t.Fatalf("place after the outage: %q, %v", url, err)
	}
	if lost := a.lostRooms(); len(lost) != 0 {
		t.Fatalf("rooms lost: %v", lost)
	}
}
