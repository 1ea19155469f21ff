package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sotto-voice/sotto/store"
)

// Defaults for Config's zero durations. A dead node's rooms are free again
// within DefaultLeaseTTL, and its record gone within DefaultNodeTTL; both
// survive two missed heartbeats.
const (
	DefaultHeartbeat = 2 * time.Second
	DefaultNodeTTL   = 6 * time.Second
	DefaultLeaseTTL  = 6 * time.Second
)

// storeTimeout bounds each store operation of the heartbeat, so that a
// store that hangs delays the next heartbeat by seconds, not minutes.
const storeTimeout = time.Second

// Errors of Place. Both mean "not now": the same join may succeed later.
var (
	// ErrOwnerGone: the room's lease is held by a node that no longer
	// publishes its record; the lease runs out within the lease TTL.
	ErrOwnerGone = errors.New("cluster: the node that ran the room is gone; its lease runs out shortly")
	// ErrNoNode: every live node is draining or full.
	ErrNoNode = errors.New("cluster: no live node can take a new room")
)

// Store is what the cluster keeps in the shared store: room leases and
// node records.
type Store interface {
	store.Leases
	store.Nodes
}

// Load is what a node runs now.
type Load struct {
	Rooms        int
	Participants int
}

// Config configures a node.
type Config struct {
	// Store is shared by every node (Redis).
	Store Store
	// ID names the node; "" makes one from the host name and a random
	// suffix. A restarted process is a new node.
	ID string
	// URL is the base URL clients use to reach this node, such as
	// "https://node1.sotto.example" (sotto serve --advertise-url).
	URL string
	// Media and TURN are the node's media and TURN addresses, published in
	// its record for operators.
	Media, TURN []string
	// MaxRooms is the node's room limit; a node at it takes no new room.
	MaxRooms int
	// Load returns what the node runs now.
	Load func() Load
	// Rooms lists the rooms the node runs now: their leases are renewed.
	Rooms func() []string
	// Lost is called with a room the node runs whose lease another node
	// holds now: the room must close here.
	Lost func(room string)

	Heartbeat time.Duration // how often the record and leases are refreshed
	NodeTTL   time.Duration // the life of a record not refreshed
	LeaseTTL  time.Duration // the life of a lease not renewed

	Logger *slog.Logger
}

// Node is the record a node publishes about itself (JSON, in the store).
type Node struct {
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Media        []string `json:"media,omitempty"`
	TURN         []string `json:"turn,omitempty"`
	Rooms        int      `json:"rooms"`
	Participants int      `json:"participants"`
	MaxRooms     int      `json:"max_rooms"`
	// CPU is the cores the process kept busy over its last heartbeat.
	CPU      float64 `json:"cpu"`
	Draining bool    `json:"draining,omitempty"`
}

// load is what placement compares: a room counts as a participant more,
// so that empty-looking nodes with rooms about to fill are not piled on.
func (n Node) load() int { return n.Rooms + n.Participants }

// takesRooms reports whether placement may choose n.
func (n Node) takesRooms() bool { return !n.Draining && (n.MaxRooms <= 0 || n.Rooms < n.MaxRooms) }

// Cluster is this node's part of the cluster. Its methods are safe for
// concurrent use.
type Cluster struct {
	cfg Config
	log *slog.Logger
	cpu cpuMeter

	mu       sync.Mutex
	view     map[string]Node // live nodes as last read, this one included
	placed   map[string]int  // rooms placed on each other node since its record was read
	draining bool
	owned    int  // leases renewed at the last heartbeat
	storeOK  bool // the last heartbeat reached the store

	storeErrors     atomic.Uint64
	roomsLost       atomic.Uint64
	placedHere      atomic.Uint64
	placedElsewhere atomic.Uint64

	startOnce, stopOnce sync.Once
	stop                chan struct{}
	done                chan struct{}
}

// idPattern keeps node ids usable in store keys.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// New checks cfg and returns a node that has not yet touched the store;
// Start makes it a member.
func New(cfg Config) (*Cluster, error) {
	if cfg.Store == nil || cfg.Load == nil || cfg.Rooms == nil || cfg.Lost == nil {
		return nil, errors.New("cluster: Store, Load, Rooms and Lost are required")
	}
	u, err := CheckURL(cfg.URL)
	if err != nil {
		return nil, err
	}
	cfg.URL = u
	if cfg.ID == "" {
		cfg.ID = newID()
	}
	if !idPattern.MatchString(cfg.ID) {
		return nil, fmt.Errorf("cluster: node id %q: want 1-64 of A-Z a-z 0-9 . _ -", cfg.ID)
	}
	setDefault(&cfg.Heartbeat, DefaultHeartbeat)
	setDefault(&cfg.NodeTTL, DefaultNodeTTL)
	setDefault(&cfg.LeaseTTL, DefaultLeaseTTL)
	if cfg.NodeTTL <= cfg.Heartbeat || cfg.LeaseTTL <= cfg.Heartbeat {
		return nil, fmt.Errorf("cluster: node TTL %v and lease TTL %v must exceed the heartbeat %v", cfg.NodeTTL, cfg.LeaseTTL, cfg.Heartbeat)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Cluster{
		cfg:    cfg,
		log:    cfg.Logger,
		view:   make(map[string]Node),
		placed: make(map[string]int),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}, nil
}

func setDefault(v *time.Duration, def time.Duration) {
	if *v <= 0 {
		*v = def
	}
}

// CheckURL returns rawURL as an advertised base URL (http or https, a
// host, no query or fragment, no trailing slash), or why it is not one.
func CheckURL(rawURL string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("cluster: advertised URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("cluster: advertised URL %q: want http(s)://host[:port][/path]", rawURL)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// newID is the host name, cut to the id alphabet, and a random suffix.
func newID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r < 128 && (r == '.' || r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return -1
	}, host)
	if len(host) > 48 {
		host = host[:48]
	}
	if host == "" {
		host = "node"
	}
	var b [5]byte
	rand.Read(b[:])
	return host + "-" + strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// leaseName is the lease of room in the store.
func leaseName(room string) string { return "room:" + room }

// ID is this node's id.
func (c *Cluster) ID() string { return c.cfg.ID }

// URL is this node's advertised base URL.
func (c *Cluster) URL() string { return c.cfg.URL }

// Start publishes the node's record and reads the others', then refreshes
// both, and renews the node's leases, every heartbeat until Stop. It fails
// if the record cannot be published.
func (c *Cluster) Start(ctx context.Context) error {
	var err error
	c.startOnce.Do(func() {
		if err = c.publish(ctx); err != nil {
			err = fmt.Errorf("cluster: publish this node: %w", err)
			close(c.done)
			return
		}
		c.mu.Lock()
		c.storeOK = true
		c.mu.Unlock()
		c.refresh(ctx)
		c.log.Info("cluster: node joined", "node", c.cfg.ID, "url", c.cfg.URL, "nodes", c.Stats().NodesAlive)
		go c.run()
	})
	return err
}

// storeRetry paces heartbeats while the store does not answer, so that
// the node is back in the cluster, and holds its rooms' leases again,
// within moments of the store's return.
const storeRetry = 250 * time.Millisecond

func (c *Cluster) run() {
	defer close(c.done)
	t := time.NewTimer(c.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			next := c.cfg.Heartbeat
			if !c.heartbeat() {
				next = min(next, storeRetry)
			}
			t.Reset(next)
		}
	}
}

// heartbeat publishes the record, reads the others' and renews the leases
// of the rooms the node runs, and reports whether the store answered.
func (c *Cluster) heartbeat() bool {
	ctx := context.Background()
	err := c.publish(ctx)
	if err == nil {
		c.refresh(ctx)
		// A draining node handed its leases back: it must not claim
		// them again while its callers move.
		if !c.isDraining() {
			err = c.renew(ctx)
		}
	}
	c.noteStore(err)
	return err == nil
}

// noteStore logs the store's outages once each, when they start and end.
func (c *Cluster) noteStore(err error) {
	c.mu.Lock()
	was := c.storeOK
	c.storeOK = err == nil
	c.mu.Unlock()
	switch {
	case err != nil:
		c.storeErrors.Add(1)
		if was {
			c.log.Warn("cluster: the state store does not answer; rooms here go on, new rooms wait for it", "err", err)
		}
	case !was:
		c.log.Info("cluster: the state store answers")
	}
}

// record is this node's record now.
func (c *Cluster) record() Node {
	load := c.cfg.Load()
	c.mu.Lock()
	draining := c.draining
	c.mu.Unlock()
	return Node{
		ID:           c.cfg.ID,
		URL:          c.cfg.URL,
		Media:        c.cfg.Media,
		TURN:         c.cfg.TURN,
		Rooms:        load.Rooms,
		Participants: load.Participants,
		MaxRooms:     c.cfg.MaxRooms,
		CPU:          c.cpu.load(),
		Draining:     draining,
	}
}

func (c *Cluster) publish(ctx context.Context) error {
	c.cpu.sample()
	rec := c.record()
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := c.cfg.Store.PutNode(ctx, c.cfg.ID, b, c.cfg.NodeTTL); err != nil {
		return err
	}
	c.mu.Lock()
	c.view[rec.ID] = rec
	c.mu.Unlock()
	return nil
}

// refresh reads every live node's record into the view.
func (c *Cluster) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	recs, err := c.cfg.Store.Nodes(ctx)
	if err != nil {
		c.log.Debug("cluster: read node records", "err", err)
		return
	}
	view := make(map[string]Node, len(recs))
	for id, b := range recs {
		var n Node
		if err := json.Unmarshal(b, &n); err != nil || n.ID != id {
			c.log.Warn("cluster: malformed node record", "node", id, "err", err)
			continue
		}
		view[id] = n
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if self, ok := c.view[c.cfg.ID]; ok {
		view[c.cfg.ID] = self
	}
	c.view = view
	clear(c.placed)
}

// renew extends the lease of every room the node runs. A lease found free
// (it ran out while the store was away, or the store lost its data) is
// claimed again; a lease another node holds loses the room here. It stops
// at the first error: the store is away.
func (c *Cluster) renew(ctx context.Context) error {
	owned := 0
	defer func() {
		c.mu.Lock()
		c.owned = owned
		c.mu.Unlock()
	}()
	for _, room := range c.cfg.Rooms() {
		holder, err := c.renewOne(ctx, room)
		if err != nil {
			return err
		}
		if holder == c.cfg.ID {
			owned++
			continue
		}
		c.roomsLost.Add(1)
		c.log.Warn("cluster: another node runs the room now; closing it here", "room", room, "holder", holder)
		c.cfg.Lost(room)
	}
	return nil
}

// renewOne renews room's lease, or claims it again if free, and returns
// its holder.
func (c *Cluster) renewOne(ctx context.Context, room string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	renewed, err := c.cfg.Store.RenewLease(ctx, leaseName(room), c.cfg.ID, c.cfg.LeaseTTL)
	if err != nil || renewed {
		return c.cfg.ID, err
	}
	holder, err := c.cfg.Store.ClaimLease(ctx, leaseName(room), c.cfg.ID, c.cfg.LeaseTTL)
	if err == nil && holder == c.cfg.ID {
		c.log.Info("cluster: the lease of a room here had run out; claimed it again", "room", room)
	}
	return holder, err
}

// Place decides where room runs: "" when on this node (which now holds
// its lease for the lease TTL), else the base URL of the node that does.
// A room nobody runs is claimed for the least-loaded live node. Errors
// wrap store.ErrUnavailable, ErrOwnerGone or ErrNoNode.
func (c *Cluster) Place(ctx context.Context, room string) (string, error) {
	name := leaseName(room)
	for attempt := 0; ; attempt++ {
		target, ok := c.pick()
		var holder string
		var err error
		if ok {
			// Claiming for the target is a no-op when another holds the
			// lease, and tells who does.
			holder, err = c.cfg.Store.ClaimLease(ctx, name, target.ID, c.cfg.LeaseTTL)
		} else {
			holder, err = c.cfg.Store.LeaseHolder(ctx, name)
		}
		if err == nil && holder == c.cfg.ID && target.ID != c.cfg.ID {
			// Already ours (placed here by another node, or a room that
			// emptied here moments ago): extend it, as a claim for us would.
			holder, err = c.cfg.Store.ClaimLease(ctx, name, c.cfg.ID, c.cfg.LeaseTTL)
		}
		if err != nil {
			return "", fmt.Errorf("cluster: place room %s: %w", room, err)
		}
		switch {
		case holder == "":
			return "", ErrNoNode
		case holder == c.cfg.ID && c.isDraining() && attempt == 0:
			// Placed here by a node that had not seen this one drain
			// yet: hand it back and place it again.
			if _, err := c.cfg.Store.ReleaseLease(ctx, name, c.cfg.ID); err != nil {
				return "", fmt.Errorf("cluster: place room %s: %w", room, err)
			}
			continue
		case holder == c.cfg.ID:
			c.placedHere.Add(1)
			return "", nil
		}
		n, ok := c.node(ctx, holder)
		if !ok {
			return "", ErrOwnerGone
		}
		if holder == target.ID {
			c.mu.Lock()
			c.placed[holder]++
			c.mu.Unlock()
		}
		c.placedElsewhere.Add(1)
		return n.URL, nil
	}
}

// Owner returns the base URL of the node that runs room when that is
// another live node, and "" when it is this one, nobody or a node that is
// gone.
func (c *Cluster) Owner(ctx context.Context, room string) (string, error) {
	holder, err := c.cfg.Store.LeaseHolder(ctx, leaseName(room))
	if err != nil {
		return "", fmt.Errorf("cluster: owner of room %s: %w", room, err)
	}
	if holder == "" || holder == c.cfg.ID {
		return "", nil
	}
	if n, ok := c.node(ctx, holder); ok {
		return n.URL, nil
	}
	return "", nil
}

// node returns the live node id, reading the records again if the view
// does not have it (a node that started since the last heartbeat).
func (c *Cluster) node(ctx context.Context, id string) (Node, bool) {
	c.mu.Lock()
	n, ok := c.view[id]
	c.mu.Unlock()
	if ok {
		return n, true
	}
	c.refresh(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok = c.view[id]
	return n, ok
}

// pick returns the least-loaded node that takes rooms: this node on a tie,
// else any of the tied. Other nodes' load is their last record's plus the
// rooms this node placed on them since, each with its first participant.
func (c *Cluster) pick() (Node, bool) {
	self := c.record()
	c.mu.Lock()
	defer c.mu.Unlock()
	var best []Node
	bestLoad := 0
	consider := func(n Node, load int) {
		if !n.takesRooms() {
			return
		}
		switch {
		case len(best) == 0 || load < bestLoad:
			best, bestLoad = append(best[:0], n), load
		case load == bestLoad:
			best = append(best, n)
		}
	}
	consider(self, self.load())
	for id, n := range c.view {
		if id != self.ID {
			// A room placed there comes with the participant whose join
			// placed it, as a room placed here does.
			n.Rooms += c.placed[id]
			n.Participants += c.placed[id]
			consider(n, n.load())
		}
	}
	if len(best) == 0 {
		return Node{}, false
	}
	if best[0].ID == self.ID {
		return self, true
	}
	return best[randIndex(len(best))], true
}

func randIndex(n int) int {
	var b [1]byte
	rand.Read(b[:])
	return int(b[0]) % n
}

func (c *Cluster) isDraining() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.draining
}

// Alive counts the live nodes as last read, this one included.
func (c *Cluster) Alive() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.view)
}

// Origins lists the base URLs of the live nodes, this one included: pages
// served by any of them may call this node's API.
func (c *Cluster) Origins() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.view))
	for _, n := range c.view {
		out = append(out, n.URL)
	}
	slices.Sort(out)
	return out
}

// Drain stops the node taking rooms: its record says so at once, and it
// hands back the leases of the rooms it runs, so that their callers, told
// to rejoin, land on another node straight away.
func (c *Cluster) Drain(ctx context.Context) error {
	c.mu.Lock()
	c.draining = true
	c.mu.Unlock()
	var errs []error
	if err := c.publish(ctx); err != nil {
		errs = append(errs, err)
	}
	released := 0
	for _, room := range c.cfg.Rooms() {
		if ok, err := c.cfg.Store.ReleaseLease(ctx, leaseName(room), c.cfg.ID); err != nil {
			errs = append(errs, err)
			break
		} else if ok {
			released++
		}
	}
	c.log.Info("cluster: draining; rooms handed back", "rooms", released)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cluster: drain: %w", err)
	}
	return nil
}

// Stop ends the heartbeat and removes the node's record: the others stop
// counting it at once.
func (c *Cluster) Stop(ctx context.Context) error {
	var err error
	c.stopOnce.Do(func() {
		// A node never started has no heartbeat to wait for.
		c.startOnce.Do(func() { close(c.done) })
		close(c.stop)
		<-c.done
		if err = c.cfg.Store.DeleteNode(ctx, c.cfg.ID); err != nil {
			err = fmt.Errorf("cluster: remove this node's record: %w", err)
		}
	})
	return err
}

// Stats is the node's view of the cluster, for metrics and /healthz.
type Stats struct {
	Self string // this node's id
	// Nodes are the live nodes as last read, this one included, by id.
	Nodes      []Node
	NodesAlive int
	// RoomsOwned are the rooms whose lease this node renewed at its last
	// heartbeat.
	RoomsOwned int
	Draining   bool
	StoreOK    bool // the last heartbeat reached the store
	// Counters, which only grow.
	StoreErrors     uint64 // heartbeats the store did not answer
	RoomsLost       uint64 // rooms closed here because another node held their lease
	PlacedHere      uint64 // joins placed on this node
	PlacedElsewhere uint64 // joins answered with another node
}

// Stats returns a snapshot of the node's view.
func (c *Cluster) Stats() Stats {
	c.mu.Lock()
	st := Stats{
		Self:       c.cfg.ID,
		Nodes:      make([]Node, 0, len(c.view)),
		RoomsOwned: c.owned,
		Draining:   c.draining,
		StoreOK:    c.storeOK,
	}
	for _, n := range c.view {
		st.Nodes = append(st.Nodes, n)
	}
	c.mu.Unlock()
	slices.SortFunc(st.Nodes, func(a, b Node) int { return strings.Compare(a.ID, b.ID) })
	st.NodesAlive = len(st.Nodes)
	st.StoreErrors = c.storeErrors.Load()
	st.RoomsLost = c.roomsLost.Load()
	st.PlacedHere = c.placedHere.Load()
	st.PlacedElsewhere = c.placedElsewhere.Load()
	return st
}
