package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
)

// Defaults for the zero values of Config's limits.
const (
	DefaultMaxParticipants  = 16
	DefaultMaxRooms         = 1000
	DefaultMaxMessageBytes  = 64 << 10
	DefaultMaxEnvelopeBytes = 16 << 10
	DefaultDropTimeout      = 10 * time.Second
	DefaultPingInterval     = 15 * time.Second
	DefaultProbeTimeout     = 2 * time.Second
	DefaultShutdownRetry    = time.Second
	DefaultQueueLength      = 1024
	DefaultMaxPrekeys       = 500
	// A sender's envelopes: ample for key agreement and rekeys in a full
	// room (a few per peer at a time) and for messages (one copy per peer,
	// at most a few KiB each; files go to the blob routes, not through
	// envelopes), far below what one connection can push (thousands per
	// second).
	DefaultEnvelopesPerSecond     = 100
	DefaultEnvelopeBytesPerSecond = 1 << 20
)

// Config configures a Server. Zero limits take the Default* values.
type Config struct {
	// Secret signs and verifies room tokens; at least token.MinSecretLen bytes.
	Secret []byte
	// Media is the relay that answers participants' offers.
	Media *media.Engine

	MaxParticipants  int // participants per room
	MaxRooms         int // rooms at once
	MaxMessageBytes  int // HTTP request body and event-stream message
	MaxEnvelopeBytes int // decoded Data of one envelope
	MaxPrekeys       int // one-time prekeys stored per identity
	QueueLength      int // events waiting for one participant; envelopes may use half

	// EnvelopesPerSecond and EnvelopeBytesPerSecond limit what one
	// participant may send as envelopes (messages, and bytes of Data),
	// with bursts of two seconds' worth; past either, an envelope is
	// refused with envelope_rate_limited.
	EnvelopesPerSecond     int
	EnvelopeBytesPerSecond int

	// MaxBlobBytes caps one stored file (its ciphertext, as uploaded),
	// RoomBlobBytes the files one room stores at once and BlobStoreBytes
	// those of all rooms together. BlobTTL deletes a file that long after
	// its upload; a room's files are deleted when the room ends. Blobs
	// keeps the bytes; nil keeps them in memory (MemoryBlobStore).
	MaxBlobBytes   int
	RoomBlobBytes  int
	BlobStoreBytes int
	BlobTTL        time.Duration
	Blobs          BlobStore

	// DropTimeout is how long a participant may be without an event stream
	// (before its first connection or after losing one) before it is dropped.
	DropTimeout time.Duration
	// PingInterval paces WebSocket keepalive pings; a missed pong within the
	// same interval closes the stream.
	PingInterval time.Duration
	// ProbeTimeout is how long a participant whose media fell silent
	// (media.PeerHandler.Connectivity) has to show that it is alive on its
	// event stream: its stream is pinged and must answer within it, or,
	// without a stream, must reconnect within it. Otherwise it is dropped,
	// with reason timeout or connection_lost: a frozen or vanished caller
	// goes after the media's disconnected timeout plus this.
	ProbeTimeout time.Duration
	// ShutdownRetry is the retry hint sent with server_shutdown: how long
	// clients wait before they rejoin, as a restarted server should be
	// back by then.
	ShutdownRetry time.Duration

	// OriginPatterns lists extra browser origins allowed to call the API
	// (CORS) and open event streams (path.Match patterns on the origin
	// host, or on scheme://host for a pattern with a scheme). The server's
	// own host is always allowed, and so are the pages of a Cluster's
	// nodes; clients that send no Origin (native apps) are not affected.
	OriginPatterns []string

	// ICEServers returns the STUN/TURN servers offered to identity in the
	// join response and by GET /v1/ice-servers. Nil offers none.
	ICEServers func(identity string) []api.ICEServer

	// InviteTTL is how long an invite to a private call (POST /v1/calls)
	// can be redeemed.
	InviteTTL time.Duration
	// CallsPerMinute limits call creations and invite redemptions (knocks
	// included) per client address.
	CallsPerMinute int
	// KnockTimeout is how long a guest's knock waits for an answer before
	// it expires.
	KnockTimeout time.Duration
	// MaxKnocks bounds the guests waiting at one call's door at once.
	MaxKnocks int

	// Store keeps what must outlive the process: private calls and their
	// end, the prekey directory and its one-time grants. Nil keeps them in
	// memory, lost when the process exits. The caller closes it, after
	// Shutdown.
	Store store.Store
	// StoreKind names Store for /healthz: "memory" (the default), "file"
	// or "redis".
	StoreKind string
	// Cluster, if set, places rooms across the nodes of a cluster: joins
	// and ends of rooms run elsewhere are answered with the node that
	// runs them (wrong_node). Nil runs every room here.
	Cluster Cluster

	Logger *slog.Logger
}

// Server is the signaling HTTP API (see docs/API.md). It is an http.Handler
// for the /v1/ routes and /healthz; anything else is answered 404.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	store   store.Store
	cluster Cluster
	handler http.Handler // mux behind the CORS check
	access  *prekeyAccess
	now     func() time.Time
	calls   *calls // guarded by mu, except its limiter
	blobs   *blobIndex

	mu       sync.Mutex
	rooms    map[string]*room
	closing  bool
	stopping chan struct{} // closed when closing is set: long polls return
	streams  map[*stream]struct{}
	wg       sync.WaitGroup // live event streams; Add only under mu while !closing

	counters counters
}

// New checks cfg and returns a Server ready to serve.
func New(cfg Config) (*Server, error) {
	if len(cfg.Secret) < token.MinSecretLen {
		return nil, fmt.Errorf("signaling: secret shorter than %d bytes", token.MinSecretLen)
	}
	if cfg.Media == nil {
		return nil, errors.New("signaling: no media engine")
	}
	setDefault(&cfg.MaxParticipants, DefaultMaxParticipants)
	setDefault(&cfg.MaxRooms, DefaultMaxRooms)
	setDefault(&cfg.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&cfg.MaxEnvelopeBytes, DefaultMaxEnvelopeBytes)
	setDefault(&cfg.MaxPrekeys, DefaultMaxPrekeys)
	setDefault(&cfg.QueueLength, DefaultQueueLength)
	setDefault(&cfg.EnvelopesPerSecond, DefaultEnvelopesPerSecond)
	setDefault(&cfg.EnvelopeBytesPerSecond, DefaultEnvelopeBytesPerSecond)
	setDefault(&cfg.DropTimeout, DefaultDropTimeout)
	setDefault(&cfg.PingInterval, DefaultPingInterval)
	setDefault(&cfg.ProbeTimeout, DefaultProbeTimeout)
	setDefault(&cfg.ShutdownRetry, DefaultShutdownRetry)
	setDefault(&cfg.InviteTTL, DefaultInviteTTL)
	setDefault(&cfg.CallsPerMinute, DefaultCallsPerMinute)
	setDefault(&cfg.KnockTimeout, DefaultKnockTimeout)
	setDefault(&cfg.MaxKnocks, DefaultMaxKnocks)
	setDefault(&cfg.MaxBlobBytes, DefaultMaxBlobBytes)
	setDefault(&cfg.RoomBlobBytes, max(DefaultRoomBlobBytes, cfg.MaxBlobBytes))
	setDefault(&cfg.BlobStoreBytes, max(DefaultBlobStoreBytes, cfg.RoomBlobBytes))
	setDefault(&cfg.BlobTTL, DefaultBlobTTL)
	if err := checkBlobLimits(&cfg); err != nil {
		return nil, err
	}
	if cfg.Blobs == nil {
		cfg.Blobs = &MemoryBlobStore{}
	}
	if cfg.QueueLength < 2 {
		return nil, errors.New("signaling: queue length must be at least 2")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StoreKind == "" {
		cfg.StoreKind = "memory"
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		store:    cfg.Store,
		cluster:  cfg.Cluster,
		access:   newPrekeyAccess(cfg.MaxParticipants),
		calls:    newCalls(cfg.InviteTTL, cfg.CallsPerMinute),
		now:      time.Now,
		rooms:    make(map[string]*room),
		streams:  make(map[*stream]struct{}),
		stopping: make(chan struct{}),
	}
	if s.store == nil {
		// Its expiries follow s.now, which tests move.
		s.store = store.NewMemory(func() time.Time { return s.now() })
	}
	s.blobs = newBlobIndex(cfg.Blobs, s.log.Warn)
	s.routes()
	s.handler = s.withCORS(s.mux)
	return s, nil
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/healthz", allow(http.MethodGet, s.handleHealth))
	s.mux.HandleFunc("/v1/rooms/{room}/join", allow(http.MethodPost, s.refuseEnded(s.handleJoin)))
	s.mux.HandleFunc("/v1/rooms/{room}/end", allow(http.MethodPost, s.handleEndCall))
	s.mux.HandleFunc("/v1/calls", allow(http.MethodPost, s.handleCreateCall))
	s.mux.HandleFunc("/v1/invites/inspect", allow(http.MethodPost, s.handleInspectInvite))
	s.mux.HandleFunc("/v1/invites/redeem", allow(http.MethodPost, s.handleRedeemInvite))
	s.mux.HandleFunc("/v1/knocks/{id}", allowEach(map[string]http.HandlerFunc{
		http.MethodGet:    s.handleKnockWait,
		http.MethodDelete: s.handleKnockWithdraw,
	}))
	s.mux.HandleFunc("/v1/rooms/{room}/knocks/{id}/admit", allow(http.MethodPost, s.handleKnockAnswer(true)))
	s.mux.HandleFunc("/v1/rooms/{room}/knocks/{id}/refuse", allow(http.MethodPost, s.handleKnockAnswer(false)))
	s.mux.HandleFunc("/v1/rooms/{room}/door", allow(http.MethodPut, s.handleDoor))
	s.mux.HandleFunc("/v1/rooms/{room}/participants/{id}", allow(http.MethodDelete, s.handleLeave))
	s.mux.HandleFunc("/v1/rooms/{room}/participants/{id}/events", allow(http.MethodGet, s.handleEvents))
	s.mux.HandleFunc("/v1/rooms/{room}/blobs", allow(http.MethodPost, s.handleBlobUpload))
	s.mux.HandleFunc("/v1/rooms/{room}/blobs/{id}", allow(http.MethodGet, s.handleBlobDownload))
	s.mux.HandleFunc("/v1/ice-servers", allow(http.MethodGet, s.handleICEServers))
	s.mux.HandleFunc("/v1/prekeys", allow(http.MethodPut, s.handlePrekeyUpload))
	s.mux.HandleFunc("/v1/prekeys/{identity}", allow(http.MethodGet, s.handlePrekeyFetch))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errorf(api.CodeNotFound, "no route %s", r.URL.Path))
	})
}

// allow answers methods other than method with 405 and a JSON body.
func allow(method string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method {
			w.Header().Set("Allow", method)
			writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: errorf(api.CodeMethodNotAllowed, "%s does not accept %s", r.URL.Path, r.Method)})
			return
		}
		h(w, r)
	}
}

// allowEach is allow for a route with a handler per method.
func allowEach(handlers map[string]http.HandlerFunc) http.HandlerFunc {
	methods := slices.Sorted(maps.Keys(handlers))
	return func(w http.ResponseWriter, r *http.Request) {
		if h := handlers[r.Method]; h != nil {
			h(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(methods, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, api.ErrorBody{Error: errorf(api.CodeMethodNotAllowed, "%s does not accept %s", r.URL.Path, r.Method)})
	}
}

// ServeHTTP routes a request of the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// healthTimeout bounds the store's answer to a health check.
const healthTimeout = time.Second

// handleHealth answers 200 while the server serves, with the state of its
// store: "degraded" while the store does not answer, still 200, because
// calls in progress go on (a 503 would have orchestrators restart every
// node of a cluster whose Redis is down, cutting every call).
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		writeError(w, errorf(api.CodeShuttingDown, "server is shutting down"))
		return
	}
	h := api.Health{Status: "ok", Store: s.cfg.StoreKind, StoreStatus: "ok"}
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		h.Status, h.StoreStatus = "degraded", "unavailable"
	}
	if s.cluster != nil {
		h.Node, h.Nodes = s.cluster.ID(), s.cluster.Alive()
	}
	writeJSON(w, http.StatusOK, h)
}

// bearer returns the claims of the request's bearer token, which must admit
// to room.
func (s *Server) bearer(r *http.Request, room string) (token.Claims, *api.Error) {
	return s.verifyBearer(r, func(tok string) (token.Claims, error) {
		return token.Verify(s.cfg.Secret, tok, room, s.now())
	})
}

// bearerAnyRoom returns the claims of the request's bearer token, for a
// route where a token for any room proves the identity.
func (s *Server) bearerAnyRoom(r *http.Request) (token.Claims, *api.Error) {
	return s.verifyBearer(r, func(tok string) (token.Claims, error) {
		return token.VerifyAnyRoom(s.cfg.Secret, tok, s.now())
	})
}

func (s *Server) verifyBearer(r *http.Request, verify func(string) (token.Claims, error)) (token.Claims, *api.Error) {
	tok, ok := authValue(r, "Bearer")
	if !ok {
		return token.Claims{}, errorf(api.CodeUnauthorized, "missing bearer token")
	}
	c, err := verify(tok)
	if err != nil {
		return token.Claims{}, tokenError(err)
	}
	return c, nil
}

// authValue returns the credentials of an Authorization header with scheme.
func authValue(r *http.Request, scheme string) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) <= len(scheme)+1 || !strings.EqualFold(h[:len(scheme)], scheme) || h[len(scheme)] != ' ' {
		return "", false
	}
	v := strings.TrimSpace(h[len(scheme)+1:])
	return v, v != ""
}

func (s *Server) iceServers(identity string) []api.ICEServer {
	if s.cfg.ICEServers == nil {
		return []api.ICEServer{}
	}
	if l := s.cfg.ICEServers(identity); l != nil {
		return l
	}
	return []api.ICEServer{}
}

func (s *Server) handleICEServers(w http.ResponseWriter, r *http.Request) {
	c, apiErr := s.bearerAnyRoom(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, api.ICEServersResponse{ICEServers: s.iceServers(c.Identity)})
}

// Shutdown tells every participant the server is stopping, closes their
// peer connections and waits for their event streams to flush and close.
// When ctx ends first the remaining streams are cut. Joins are refused from
// the moment Shutdown is called. The HTTP server itself is the caller's.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closing {
		close(s.stopping)
	}
	s.closing = true
	var c cleanup
	for _, rm := range s.rooms {
		for _, p := range rm.participants {
			// Joins still inside media finish on their own and see closing.
			if p.active {
				c.add(s.removeLocked(p, api.ReasonShutdown))
			}
		}
	}
	s.mu.Unlock()
	c.run(s.log)

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for st := range s.streams {
			_ = st.conn.CloseNow()
		}
		s.mu.Unlock()
		<-done
		return fmt.Errorf("signaling shutdown: %w", ctx.Err())
	}
}
