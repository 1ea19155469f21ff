package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/internal/floor"
	"github.com/sotto-voice/sotto/internal/impair"
	"github.com/sotto-voice/sotto/token"
)

// Defaults for Config's zero values.
const (
	DefaultURL      = "http://127.0.0.1:7880"
	DefaultRooms    = 1
	DefaultCallers  = 4
	DefaultDuration = 30 * time.Second
	DefaultRamp     = 10 // joins per second

	joinTimeout = 30 * time.Second
	// drain is how long receivers keep listening after the last frame is
	// sent, so frames in flight count as received.
	drain = time.Second
	// settle is how long a new pair may take (renegotiation, key exchange)
	// before frames it never delivered count as lost.
	settle = 3 * time.Second
	// tailGrace leaves out of the expected count the frames sent just
	// before a receiver left, which were in flight when it went.
	tailGrace = 200 * time.Millisecond
)

// Config describes a load run. Zero values take the defaults above.
type Config struct {
	URL      string // server base URL
	Secret   []byte // the server's token secret, to mint callers' tokens
	Rooms    int
	Callers  int // per room
	Duration time.Duration
	// Ramp is the joins started per second.
	Ramp float64
	// RelayOnly sends all media through the server's TURN relay.
	RelayOnly bool
	// LossUp and LossDown are the fractions of the packets each caller's
	// media socket drops on sending and on receiving (internal/impair),
	// for runs that measure how calls ride out a lossy path.
	LossUp, LossDown float64
	lossIP           net.IP // where the lossy sockets listen
	// Churn makes callers leave and rejoin during the run, one every
	// ChurnInterval (default 2 s), which makes every sender rekey.
	Churn         bool
	ChurnInterval time.Duration
	// StallAfter is how long a caller's incoming frames may stop, while
	// another publisher is in its room, before the caller counts as
	// interrupted (default DefaultStallAfter). A caller whose call ended
	// counts at once.
	StallAfter time.Duration
	// Rejoin makes the load tester join a caller again, with backoff,
	// when its call ends on its own, as an application would. Without it
	// such a call is lost for good. The SDK rejoins by itself first, for
	// up to ResumeWindow, when the server loses a call.
	Rejoin bool
	// ResumeWindow is the SDK's (client.Options.ResumeWindow): 0 its
	// default, negative for callers that never rejoin by themselves.
	ResumeWindow time.Duration
	// Audio is an Ogg Opus file of 20 ms packets; nil plays DefaultClip.
	Audio []byte

	// MetricsURL is the server's /metrics (default URL + "/metrics") and
	// MetricsToken its bearer token. Server figures are left out, with a
	// note in Report.ServerMetricsError, when it cannot be scraped.
	MetricsURL   string
	MetricsToken string

	// Progress receives a status line every second: rewritten in place
	// when Terminal is set, else printed every ProgressEvery (default 5 s).
	// Nil prints nothing.
	Progress      io.Writer
	Terminal      bool
	ProgressEvery time.Duration

	// IPFilter limits the local addresses callers gather ICE candidates on.
	// Nil keeps loopback addresses when the server's host is a loopback
	// address (see client.Options.IPFilter) and uses the SDK default
	// otherwise.
	IPFilter func(net.IP) bool
	Logger   *slog.Logger

	// Floor, if set, returns a command running floor.ServeRelay. After the
	// callers have left, the floor relay is measured with the run's
	// traffic shape (a packet per caller every 20 ms, fanned out to the
	// rest of its room) for Duration (at most FloorMax), and the report
	// compares the server's CPU per forwarded packet with it.
	Floor func() *exec.Cmd

	// ServerProfile, if set, receives a CPU profile of the server over the
	// steady part, fetched from its /debug/pprof/profile (sotto serve
	// --pprof) with MetricsToken.
	ServerProfile io.Writer
}

// FloorMax caps the floor measurement after a run.
const FloorMax = 30 * time.Second

func (c *Config) setDefaults() error {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loadtest: server URL %q: want http(s)://host[:port]", c.URL)
	}
	if len(c.Secret) < token.MinSecretLen {
		return fmt.Errorf("loadtest: the server's secret is needed to mint tokens (at least %d bytes)", token.MinSecretLen)
	}
	if c.Rooms == 0 {
		c.Rooms = DefaultRooms
	}
	if c.Callers == 0 {
		c.Callers = DefaultCallers
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Ramp == 0 {
		c.Ramp = DefaultRamp
	}
	if c.ChurnInterval == 0 {
		c.ChurnInterval = 2 * time.Second
	}
	if c.StallAfter == 0 {
		c.StallAfter = DefaultStallAfter
	}
	if c.ProgressEvery == 0 {
		c.ProgressEvery = 5 * time.Second
	}
	switch {
	case c.Rooms < 0, c.Callers < 0, c.Duration < 0, c.Ramp < 0, c.ChurnInterval < 0, c.StallAfter < 0:
		return errors.New("loadtest: rooms, callers, duration, ramp, churn interval and stall time must be positive")
	case c.Callers < 2:
		return errors.New("loadtest: at least 2 callers per room, or nobody hears anybody")
	}
	if c.MetricsURL == "" {
		c.MetricsURL = strings.TrimSuffix(c.URL, "/") + "/metrics"
	}
	if c.IPFilter == nil {
		if ip := net.ParseIP(u.Hostname()); (ip != nil && ip.IsLoopback()) || u.Hostname() == "localhost" {
			c.IPFilter = func(ip net.IP) bool { return ip.IsLoopback() }
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c.checkLoss()
}

// loadRun is the state of one load run.
type loadRun struct {
	cfg     Config
	ctx     context.Context
	packets [][]byte
	hashes  []uint64
	runID   string

	shards []*shard

	sendersMu sync.RWMutex
	senders   map[string]*sender // by participant ID

	mu        sync.Mutex
	parts     []*participation // every join, finished or not
	joinTimes []time.Duration
	// The same joins, split by whether a cluster node answered with
	// another (joinWatch).
	joinsDirect, joinsRedirected []time.Duration
	joinErrs                     map[string]int

	// transport carries every caller's API requests and event stream.
	transport http.RoundTripper
	failed    map[*caller]bool // callers with a failed join, a rejoin included

	latency      histogram
	sent         atomic.Uint64
	received     atomic.Uint64
	writeErrors  atomic.Uint64
	unknownFrom  atomic.Uint64
	expectApprox atomic.Uint64 // for the live loss estimate only
	joined       atomic.Int64  // callers in a call now
	steadyEnd    atomic.Int64  // unix ns when the steady part ends; 0 = ramping
	roomActive   []atomic.Int64

	timeline []Sample

	lossSeed atomic.Uint64  // seeds of the lossy sockets
	lossy    []*impair.Conn // every lossy socket handed out, under mu
	// Interruptions of callers' calls, and the load tester's rejoins.
	interruptions  []*interruption // under mu
	interruptedNow atomic.Int64
	rejoins        atomic.Uint64
	rejoinFailures atomic.Uint64
	rejoinMu       sync.Mutex // orders startRejoin and stopRejoins
	rejoinCtx      context.Context
	stopRejoin     context.CancelFunc
	rejoinWG       sync.WaitGroup

	// From the callers' event streams.
	keyTimes        []time.Duration // later join of a pair to PeerEncrypted
	identityChanges atomic.Uint64
}

// participation is one join of one caller: the call, what it sent and what
// it received from each peer.
type participation struct {
	caller   *caller
	id       string
	call     *client.Call
	snd      *sender
	joinedAt int64 // unix ns
	// leaving is when it began to leave, or its call ended: peers'
	// frames are expected until then.
	leaving  int64
	pairs    map[string]*pair
	recvDone chan struct{}
	evDone   chan struct{}
	stats    client.Stats

	lastFrame   atomic.Int64 // when a frame was last received, unix ns
	expectSince atomic.Int64 // since when another publisher is in the room; 0 = none
	over        atomic.Bool  // the call has ended
}

// caller is one synthetic participant, who may join several times (churn).
type caller struct {
	r        *loadRun
	room     int
	identity string
	// key is the caller's long-term identity key, kept across rejoins as
	// a device keeps its own, so its peers see the same safety number.
	key   *e2ee.Identity
	shard *shard

	// Owned by the shard goroutine while the caller is in its list.
	part    *participation
	n       uint64    // frames sent in this participation: the next one's number
	due     uint64    // frames due by the last tick; 0 = not started
	start   time.Time // when frame 0 was due, moved on when frames are skipped
	clipPos int

	mu          sync.Mutex
	outage      *interruption // the open interruption, under mu
	interrupted atomic.Bool   // outage != nil, read on every received frame
}

// Run performs a load run and returns its report. The error is for runs
// that could not happen at all (bad configuration, unreadable audio); a
// run in which callers failed returns a Report saying so. Cancelling ctx
// ends the run early, with a report of what happened until then.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	audio := cfg.Audio
	if audio == nil {
		audio = DefaultClip
	}
	packets, err := OpusPackets(audio)
	if err != nil {
		return nil, fmt.Errorf("loadtest: audio: %w", err)
	}
	if len(packets) == 0 {
		return nil, errors.New("loadtest: audio has no packets")
	}
	var id [3]byte
	rand.Read(id[:])
	r := &loadRun{
		cfg:        cfg,
		ctx:        ctx,
		packets:    packets,
		runID:      hex.EncodeToString(id[:]),
		senders:    make(map[string]*sender),
		joinErrs:   make(map[string]int),
		failed:     make(map[*caller]bool),
		transport:  http.DefaultTransport,
		roomActive: make([]atomic.Int64, cfg.Rooms),
	}
	r.rejoinCtx, r.stopRejoin = context.WithCancel(ctx)
	for _, p := range packets {
		r.hashes = append(r.hashes, hashFrame(p))
	}
	return r.perform()
}

// perform joins the callers at the ramp's pace, keeps them talking through
// the steady part, makes them leave and reports what was measured.
func (r *loadRun) perform() (*Report, error) {
	ctx := r.ctx
	cfg := r.cfg
	callers := make([]*caller, 0, cfg.Rooms*cfg.Callers)
	for i := 0; i < cfg.Callers; i++ {
		for room := 0; room < cfg.Rooms; room++ {
			key, err := e2ee.NewIdentity(rand.Reader)
			if err != nil {
				return nil, fmt.Errorf("loadtest: identity key: %w", err)
			}
			callers = append(callers, &caller{r: r, room: room, identity: fmt.Sprintf("caller-%d-%d", room, i), key: key})
		}
	}
	startCPU := ownCPU()
	start := time.Now()

	tickCtx, stopTicks := context.WithCancel(context.Background())
	var tickWG sync.WaitGroup
	for i := 0; i < runtime.GOMAXPROCS(0); i++ {
		s := &shard{r: r}
		r.shards = append(r.shards, s)
		tickWG.Add(1)
		go func() { defer tickWG.Done(); s.run(tickCtx) }()
	}
	progress := r.startProgress(start)
	// The server is scraped from the start, so that TURN allocations,
	// which callers make while joining, are counted, and through the run,
	// so that a restart is seen.
	server := &serverWatch{r: r}
	server.poll()
	stopWatching := make(chan struct{})
	var watchWG sync.WaitGroup
	watchWG.Add(2)
	go func() { defer watchWG.Done(); server.run(stopWatching) }()
	go func() { defer watchWG.Done(); r.watchCalls(stopWatching) }()

	// Ramp: one join every 1/Ramp seconds, each in its own goroutine.
	var joinWG sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.Ramp)
	next := time.Now()
	for i, c := range callers {
		c.shard = r.shards[i%len(r.shards)]
	}
ramp:
	for _, c := range callers {
		joinWG.Add(1)
		go func() { defer joinWG.Done(); c.join(ctx) }()
		next = next.Add(interval)
		select {
		case <-time.After(time.Until(next)):
		case <-ctx.Done():
			break ramp
		}
	}
	joinWG.Wait()

	// Steady state: every caller that could join is in; the server's
	// counters are taken over exactly this window, except TURN
	// allocations.
	server.poll()
	before := server.totals()
	nodesBefore := server.nodes()
	cpuStart := time.Now()
	steadyEnd := time.After(cfg.Duration)
	r.steadyEnd.Store(cpuStart.Add(cfg.Duration).UnixNano())
	profiled := make(chan error, 1)
	if cfg.ServerProfile != nil {
		go func() { profiled <- r.profileServer(cfg.Duration) }()
	} else {
		profiled <- nil
	}
	var churnWG sync.WaitGroup
	churnStop := make(chan struct{})
	if cfg.Churn {
		churnWG.Add(1)
		go func() { defer churnWG.Done(); r.churn(callers, churnStop) }()
	}
	select {
	case <-steadyEnd:
	case <-ctx.Done():
	}
	close(churnStop)
	churnWG.Wait()
	r.stopRejoins()
	close(stopWatching)
	watchWG.Wait()
	server.poll()
	after := server.totals()
	steady := time.Since(cpuStart)
	profileErr := <-profiled
	loadAvg := loadAverage()

	// Stop sending, let frames in flight arrive, then leave.
	stopTicks()
	tickWG.Wait()
	sendEnd := time.Now().UnixNano()
	r.sendersMu.RLock()
	for _, s := range r.senders {
		s.mu.Lock()
		if s.left == 0 {
			s.left = sendEnd
		}
		s.mu.Unlock()
	}
	r.sendersMu.RUnlock()
	time.Sleep(drain)
	var leaveWG sync.WaitGroup
	for _, c := range callers {
		leaveWG.Add(1)
		go func() { defer leaveWG.Done(); c.leave() }()
	}
	leaveWG.Wait()
	// Calls that ended on their own were not left: wait for them too.
	r.mu.Lock()
	parts := r.parts
	r.mu.Unlock()
	for _, p := range parts {
		<-p.recvDone
		<-p.evDone
	}
	progress.stop()

	rep := r.report()
	r.serverFigures(rep, server, before, after)
	rep.Nodes = nodeReports(nodesBefore, server.nodes())
	r.mu.Lock()
	rep.JoinsRedirected = len(r.joinsRedirected)
	rep.JoinMSDirect, rep.JoinMSRedirected = percentilesOf(r.joinsDirect), percentilesOf(r.joinsRedirected)
	r.mu.Unlock()
	rep.DurationS = round3(steady.Seconds())
	rep.ElapsedS = round3(time.Since(start).Seconds())
	rep.LoadCPUSeconds = round3((ownCPU() - startCPU).Seconds())
	rep.Timeline = r.timeline
	rep.CPUs, rep.LoadAverage = runtime.NumCPU(), loadAvg
	if profileErr != nil {
		rep.ServerProfileErr = profileErr.Error()
	}
	if cfg.Floor != nil && ctx.Err() == nil {
		r.measureFloor(rep)
	}
	return rep, nil
}

// token mints a token for the caller's room, valid for the run.
func (c *caller) token() (string, error) {
	room := fmt.Sprintf("load-%s-%d", c.r.runID, c.room)
	return token.Mint(c.r.cfg.Secret, token.Claims{Room: room, Identity: c.identity, Expiry: time.Now().Add(c.r.cfg.Duration + 10*time.Minute)})
}

// join joins the room and starts sending and receiving. Failures are
// counted, not returned.
func (c *caller) join(ctx context.Context) bool {
	if err := c.connect(ctx); err != nil {
		c.r.joinFailed(c, err)
		return false
	}
	return true
}

// connect joins the room and starts sending and receiving.
func (c *caller) connect(ctx context.Context) error {
	r := c.r
	tok, err := c.token()
	if err != nil {
		return err
	}
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	t0 := time.Now()
	watch := &joinWatch{base: r.transport}
	call, err := client.Join(jctx, r.cfg.URL, tok, &client.Options{
		RelayOnly:    r.cfg.RelayOnly,
		IPFilter:     r.cfg.IPFilter,
		ListenMedia:  r.listenMedia(),
		ResumeWindow: r.cfg.ResumeWindow,
		Logger:       r.cfg.Logger.With("caller", c.identity),
		Identity:     c.key,
		HTTPClient:   &http.Client{Transport: watch},
	})
	took := time.Since(t0)
	if err != nil {
		return err
	}
	now := time.Now().UnixNano()
	p := &participation{
		caller:   c,
		id:       call.ID(),
		call:     call,
		snd:      newSender(call.ID(), now),
		joinedAt: now,
		pairs:    make(map[string]*pair),
		recvDone: make(chan struct{}),
		evDone:   make(chan struct{}),
	}
	r.addSender(p.id, p.snd)
	r.mu.Lock()
	r.parts = append(r.parts, p)
	r.joinTimes = append(r.joinTimes, took)
	if watch.redirected.Load() {
		r.joinsRedirected = append(r.joinsRedirected, took)
	} else {
		r.joinsDirect = append(r.joinsDirect, took)
	}
	r.mu.Unlock()
	r.joined.Add(1)
	r.roomActive[c.room].Add(1)
	// In the shard before its call can be seen to end (see ended).
	c.shard.add(c, p)
	go p.receive()
	go p.watch()
	return nil
}

// addSender makes the frames of participant id known as those of s.
func (r *loadRun) addSender(id string, s *sender) {
	r.sendersMu.Lock()
	r.senders[id] = s
	r.sendersMu.Unlock()
}

func (r *loadRun) joinFailed(c *caller, err error) {
	reason := "error"
	var apiErr *api.Error
	switch {
	case errors.As(err, &apiErr):
		reason = string(apiErr.Code)
	case errors.Is(err, context.DeadlineExceeded):
		reason = "timeout"
	}
	r.cfg.Logger.Warn("loadtest: join failed", "err", err)
	r.mu.Lock()
	r.failed[c] = true
	r.joinErrs[reason]++
	r.mu.Unlock()
}

// leave ends the caller's current participation, if it has one.
func (c *caller) leave() bool {
	leaving := time.Now().UnixNano()
	p := c.shard.remove(c)
	if p == nil {
		return false
	}
	p.leaving = leaving
	p.stats = p.call.Stats()
	if err := p.call.Leave(); err != nil {
		c.r.cfg.Logger.Debug("loadtest: leave", "caller", c.identity, "err", err)
	}
	<-p.recvDone
	<-p.evDone
	return true
}

// receive accounts every frame the participation gets until its call ends.
func (p *participation) receive() {
	defer close(p.recvDone)
	r := p.caller.r
	for f := range p.call.Frames() {
		now := time.Now().UnixNano()
		r.received.Add(1)
		p.lastFrame.Store(now)
		if p.caller.interrupted.Load() {
			p.caller.resume(now)
		}
		pr := p.pairs[f.From.ID]
		if pr == nil {
			r.sendersMu.RLock()
			s := r.senders[f.From.ID]
			r.sendersMu.RUnlock()
			if s == nil {
				r.unknownFrom.Add(1)
				continue
			}
			pr = &pair{from: s, joinedAt: p.joinedAt}
			p.pairs[f.From.ID] = pr
		}
		if d, ok := pr.frame(f.Seq, f.Timestamp, hashFrame(f.Data), f.Received.UnixNano(), now); ok {
			r.latency.add(d)
		}
	}
	p.ended()
}

// watch follows the participation's events: how long each peer's frame
// key takes to arrive, identity changes (which a caller keeping its key
// across rejoins should never cause), and the rejoins the SDK makes by
// itself when the server loses the call: Reconnecting interrupts the
// caller, Reconnected counts the rejoin. The call keeps its participant ID
// across them, and names the others as before, so senders stay as they
// are.
func (p *participation) watch() {
	defer close(p.evDone)
	r := p.caller.r
	for ev := range p.call.Events() {
		switch e := ev.(type) {
		case client.Reconnecting:
			start, needFrames := p.outageStart(time.Now().UnixNano())
			p.caller.interrupt(start, false, needFrames)
		case client.Reconnected:
			p.caller.rejoined()
		case client.PeerEncrypted:
			from := p.joinedAt
			r.sendersMu.RLock()
			if s := r.senders[e.Participant.ID]; s != nil {
				from = max(from, s.joinedAt)
			}
			r.sendersMu.RUnlock()
			d := time.Duration(max(0, time.Now().UnixNano()-from))
			r.mu.Lock()
			r.keyTimes = append(r.keyTimes, d)
			r.mu.Unlock()
		case client.IdentityChanged:
			r.identityChanges.Add(1)
		}
	}
}

// churn makes one caller at a time leave and rejoin, rooms in turn.
func (r *loadRun) churn(callers []*caller, stop <-chan struct{}) {
	t := time.NewTicker(r.cfg.ChurnInterval)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		room := i % r.cfg.Rooms
		member := (i / r.cfg.Rooms) % r.cfg.Callers
		c := callers[member*r.cfg.Rooms+room]
		if !c.leave() {
			continue // not in a call: its join failed, or it is being rejoined
		}
		select {
		case <-stop:
			return
		case <-time.After(r.cfg.ChurnInterval / 4):
		}
		c.join(r.ctx)
	}
}

// measureFloor runs the floor relay with the run's traffic shape and
// records its cost and the server's ratio to it.
func (r *loadRun) measureFloor(rep *Report) {
	var size int
	for _, p := range r.packets {
		size += len(p)
	}
	spec := floor.Spec{
		Publishers: r.cfg.Rooms * r.cfg.Callers,
		FanOut:     r.cfg.Callers - 1,
		// The mean Opus packet of the clip plus SFrame's header and tag.
		PayloadSize: size/len(r.packets) + sframeOverhead,
		Duration:    min(r.cfg.Duration, FloorMax),
	}
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "measuring the floor relay for %v (%d publishers, fan-out %d)\n", spec.Duration, spec.Publishers, spec.FanOut)
	}
	res, err := floor.Measure(r.ctx, r.cfg.Floor(), spec)
	if err != nil {
		rep.FloorError = err.Error()
		return
	}
	rep.FloorUsPerForwardedPacket = round3(res.CPUPerForwarded())
	if rep.FloorUsPerForwardedPacket > 0 && rep.ServerCPUUsPerForwardedPacket > 0 {
		rep.RatioToFloor = round3(rep.ServerCPUUsPerForwardedPacket / rep.FloorUsPerForwardedPacket)
	}
}

// sframeOverhead is about what SFrame adds to an Opus frame: a header of
// a few bytes (key id and counter) and a 16-byte AES-GCM tag. A few bytes
// more or less change AES-GCM's cost by nothing measurable.
const sframeOverhead = 8 + 16

// profileServer copies a CPU profile of the server, taken over d (less a
// margin so that it ends within the steady part), to Config.ServerProfile.
func (r *loadRun) profileServer(d time.Duration) error {
	secs := max(1, int((d-time.Second)/time.Second))
	u := strings.TrimSuffix(r.cfg.URL, "/") + fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)
	ctx, cancel := context.WithTimeout(r.ctx, d+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if r.cfg.MetricsToken != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.MetricsToken)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("server profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("server profile: %s (is the server running with --pprof?)", resp.Status)
	}
	if _, err := io.Copy(r.cfg.ServerProfile, resp.Body); err != nil {
		return fmt.Errorf("server profile: %w", err)
	}
	return nil
}

// loadAverage is the machine's 1-minute load average, 0 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var avg float64
	fmt.Sscanf(string(b), "%f", &avg)
	return avg
}

// ownCPU is the CPU time this process has used: the load tester's own
// cost, reported next to the server's.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
