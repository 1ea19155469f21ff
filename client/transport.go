package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/pionlog"
	"github.com/sotto-voice/sotto/token"
)

// This file is the transport: signaling (HTTP and the event stream) and
// media (one pion PeerConnection). It moves opaque frames; Call sits on top
// of it. The seam is narrow on purpose so that end-to-end encryption can
// wrap it without the transport knowing: frames leave through
// conn.writeFrame and arrive through sink.frame, envelopes leave through
// conn.sendEnvelope and arrive through sink.envelope.

const (
	clockRate = 48000 // Opus RTP clock, whatever the sampling rate

	// identityWait bounds how long a remote track waits for the event that
	// names its publisher before its frames are delivered without identity.
	identityWait = 5 * time.Second

	wsReadLimit  = 1 << 20
	writeTimeout = 10 * time.Second
	leaveTimeout = 5 * time.Second

	// The event stream is reconnected for up to reconnectWindow, starting
	// after reconnectDelay and backing off to a second between attempts;
	// the server's default drop timeout is 10 s.
	reconnectWindow = 10 * time.Second
	reconnectDelay  = 100 * time.Millisecond

	// closedGrace is how long a call whose media the relay closed waits
	// for the server to say why before it ends anyway.
	closedGrace = 5 * time.Second

	// ICE liveness: the relay answers a consent check (RFC 7675) every
	// iceKeepalive; a path silent for iceDisconnected is disconnected, and
	// one still disconnected iceRestartGrace later is restarted (new ICE
	// credentials, same PeerConnection, DTLS session and keys), then again
	// every iceRestartRetry until it is back. A path not back within
	// iceGiveUp of the first restart ends the connection, and the call
	// rejoins.
	iceKeepalive    = 500 * time.Millisecond
	iceDisconnected = time.Second
	iceFailed       = 5 * time.Second
	iceRestartGrace = 500 * time.Millisecond
	iceRestartRetry = 2 * time.Second
	iceGiveUp       = 10 * time.Second
)

// sink receives what the transport delivers. Methods are called from the
// transport's goroutines and must not block for long: one goroutine reads
// each remote track and one reads the event stream.
type sink interface {
	// frame delivers one received RTP payload. payload is valid only until
	// frame returns.
	frame(from api.Participant, seq uint16, ts uint32, payload []byte, received time.Time)
	// joined reports a participant present; returning tells one the call
	// knew before it rejoined, under the same name.
	joined(p api.Participant, returning bool)
	left(p api.Participant, reason string)
	speaking(p api.Participant, speaking bool)
	envelope(from api.Participant, data []byte)
	serverError(e *api.Error)
	// admitted names the participants present when the join succeeded,
	// before any joined call; later arrivals join after the caller.
	admitted(present []api.Participant)
	// prekeysLow reports that the caller's one-time prekeys run low.
	prekeysLow()
	// reconnected reports the welcome of a new event stream after a lost
	// one, once the roster agrees with it again: messages sent or received
	// around the loss may be gone.
	reconnected()
	// doorChanged reports the call's door: in every welcome (by empty), and when
	// it changes.
	doorChanged(door, by string)
	// knocksWaiting reports the guests waiting at the door, for a participant who
	// may answer them, in every welcome.
	knocksWaiting(pending []api.Knock)
	// knockUpdate reports a guest knocking, or what became of its knock.
	knockUpdate(k api.Knock)
}

// conn is one participant's connection to the server, one join: its event
// stream and its PeerConnection to the media relay. It names participants
// as the call does (see roster): the sink sees call names, and the server
// its own IDs.
type conn struct {
	log    *slog.Logger
	api    *apiClient
	sink   sink
	room   string
	self   api.Participant // as the server names the caller in this join
	me     api.Participant // as the call names the caller
	roster *roster

	session   string
	eventsURL string
	pc        *webrtc.PeerConnection
	sock      net.PacketConn              // from Options.ListenMedia, or nil
	track     *webrtc.TrackLocalStaticRTP // nil for a listen-only call

	ctx    context.Context // canceled on shutdown
	cancel context.CancelFunc

	mu      sync.Mutex
	closing bool            // no new goroutines once set
	ws      *websocket.Conn // the event stream's current connection
	err     error           // why the connection ended; set with closing
	wg      sync.WaitGroup  // transport goroutines; Add only under mu while !closing
	done    chan struct{}   // closed when shut down and all goroutines returned

	// resumed is set when the event stream was reconnected and its
	// welcome has not been read yet; readEvents only.
	resumed bool

	connected     chan struct{}
	connectedOnce sync.Once
	iceStates     chan webrtc.ICEConnectionState // to watchICE, latest last
	iceRestarts   atomic.Uint64

	// negMu orders the negotiations of the PeerConnection: the relay's
	// offers and the caller's own ICE restart offer. pendingOffer is the
	// restart offer sent and not yet answered; it is applied only with its
	// answer, so that an offer of the relay's crossing it can still be
	// answered (pion cannot roll back).
	negMu        sync.Mutex
	pendingOffer *webrtc.SessionDescription
	trickle      atomic.Bool // local candidates go over the event stream
	leaving      atomic.Bool // Leave has begun: whatever ends the call, it is ErrLeft

	tracksMu sync.Mutex
	tracks   map[string]int // live remote track readers per publisher ID

	// Sending state, guarded by wmu. pkt, ext and level are reused so that
	// writing a frame does not allocate.
	wmu     sync.Mutex
	pkt     rtp.Packet
	ext     [1]rtp.Extension
	level   [1]byte
	levelID uint8 // negotiated ID of the audio level extension, 0 if none

	envelopeID     atomic.Uint64
	invalidPackets atomic.Uint64
	framesSent     atomic.Uint64
}

// Errors that end a connection from the media side, and the one that says
// the server no longer knows it.
var (
	errICEFailed   = errors.New("media connection failed")
	errMediaClosed = errors.New("media connection closed by the relay")
	errSessionLost = errors.New("the server no longer knows this session")
)

// naming tells dial how the call names the caller and the others: me is
// the caller's call name (its ID empty: the join's own), claim as in
// roster. replaces is the server's ID of the caller's previous join, on a
// rejoin (api.JoinRequest.Replaces): if the server still holds it, it
// closes it as replaced, and the others do not take the rejoin for a
// switch of devices.
type naming struct {
	me       api.Participant
	claim    func(identity string) (api.Participant, bool)
	replaces string
}

// dial joins the room named by claims and returns once the media
// connection is up, or fails and leaves no trace behind.
func dial(ctx context.Context, a *apiClient, tok string, claims token.Claims, opts *Options, s sink, names naming) (_ *conn, err error) {
	log := opts.logger().With("room", claims.Room, "identity", claims.Identity)
	var ice api.ICEServersResponse
	if err := a.do(ctx, http.MethodGet, api.Version+"/ice-servers", "Bearer "+tok, nil, &ice); err != nil {
		return nil, fmt.Errorf("fetch ICE servers: %w", err)
	}
	servers := append(ice.ICEServers[:len(ice.ICEServers):len(ice.ICEServers)], opts.ICEServers...)

	wapi, sock, err := newWebRTCAPI(opts)
	if err != nil {
		return nil, err
	}
	cfg := webrtc.Configuration{
		ICEServers:   webrtcICEServers(servers),
		BundlePolicy: webrtc.BundlePolicyMaxBundle,
	}
	if opts.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := wapi.NewPeerConnection(cfg)
	if err != nil {
		if sock != nil {
			sock.Close()
		}
		return nil, fmt.Errorf("create peer connection: %w", err)
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &conn{
		log:       log,
		api:       a,
		sink:      s,
		room:      claims.Room,
		self:      api.Participant{Identity: claims.Identity},
		roster:    newRoster(names.claim),
		pc:        pc,
		sock:      sock,
		ctx:       cctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		connected: make(chan struct{}),
		iceStates: make(chan webrtc.ICEConnectionState, 16),
		tracks:    make(map[string]int),
	}
	defer func() {
		if err != nil {
			c.shutdown(err)
			<-c.done
		}
	}()

	// Random initial sequence number and timestamp, as RFC 3550 asks.
	c.pkt.SequenceNumber = uint16(rand.Uint32())
	c.pkt.Timestamp = rand.Uint32()
	sender, err := c.addAudio(opts.ListenOnly)
	if err != nil {
		return nil, err
	}
	pc.OnTrack(c.onTrack)
	pc.OnConnectionStateChange(c.onConnectionState)
	pc.OnICEConnectionStateChange(c.onICEState)
	pc.OnICECandidate(c.onICECandidate)

	// The offer travels in an HTTP request, so it carries every host, srflx
	// and relay candidate: no trickle is needed for the initial connection.
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return nil, fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return nil, fmt.Errorf("set local offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return nil, fmt.Errorf("gather ICE candidates: %w", ctx.Err())
	}

	var jr api.JoinResponse
	path := api.Version + "/rooms/" + url.PathEscape(claims.Room) + "/join"
	join := api.JoinRequest{SDP: pc.LocalDescription().SDP, E2EE: api.E2EESotto1, Replaces: names.replaces}
	// In a cluster the join may be answered by another node than a's:
	// the one that runs the room, where the call then lives.
	if c.api, err = a.postJoin(ctx, path, "Bearer "+tok, join, &jr); err != nil {
		return nil, err
	}
	c.self = api.Participant{ID: jr.ParticipantID, Identity: jr.Identity}
	c.me = c.self
	if names.me.ID != "" {
		c.me = names.me
	}
	c.session = jr.Session
	if jr.Room != "" {
		c.room = jr.Room
	}
	// From here on a failure must tell the server, or the participant
	// would linger in the room until the drop timeout.
	defer func() {
		if err != nil {
			if lerr := c.deleteParticipant(); lerr != nil {
				log.Debug("leave after failed join", "err", lerr)
			}
		}
	}()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: jr.SDP}); err != nil {
		return nil, fmt.Errorf("apply answer: %w", err)
	}
	if sender != nil {
		c.levelID = audioLevelID(sender)
	}
	present := make([]api.Participant, 0, len(jr.Participants))
	var news []api.Participant
	var back []bool
	for _, p := range jr.Participants {
		if p.ID == "" || p.ID == c.self.ID {
			continue
		}
		named, added, returning := c.roster.add(p)
		present = append(present, named)
		if added {
			news, back = append(news, named), append(back, returning)
		}
	}
	s.admitted(present)
	for i, p := range news {
		s.joined(p, back[i])
	}

	c.eventsURL, err = c.api.eventsURL(jr.EventsURL, jr.Session)
	if err != nil {
		return nil, err
	}
	ws, _, err := websocket.Dial(ctx, c.eventsURL, &websocket.DialOptions{HTTPClient: a.http})
	if err != nil {
		return nil, fmt.Errorf("connect event stream: %w", err)
	}
	ws.SetReadLimit(wsReadLimit)
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		ws.CloseNow()
		return nil, c.endErr()
	}
	c.ws = ws
	c.mu.Unlock()
	c.trickle.Store(true)
	if !c.goRun(c.readEvents) || !c.goRun(c.watchICE) {
		return nil, c.endErr()
	}

	select {
	case <-c.connected:
		return c, nil
	case <-c.ctx.Done():
		return nil, c.endErr()
	case <-ctx.Done():
		return nil, fmt.Errorf("connect media: %w", ctx.Err())
	}
}

// addAudio adds the call's audio m-line: a sendonly one with the track
// frames are written to and returns its sender or, listen-only, a recvonly
// one without a track (and a nil sender), which the relay takes for a
// participant that publishes nothing.
func (c *conn) addAudio(listenOnly bool) (*webrtc.RTPSender, error) {
	if listenOnly {
		_, err := c.pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly})
		if err != nil {
			return nil, fmt.Errorf("add audio transceiver: %w", err)
		}
		return nil, nil
	}
	track, err := webrtc.NewTrackLocalStaticRTP(opusCodec, "audio", "sotto")
	if err != nil {
		return nil, fmt.Errorf("create audio track: %w", err)
	}
	tr, err := c.pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, fmt.Errorf("add audio transceiver: %w", err)
	}
	c.track = track
	c.goRun(func() { drainRTCP(tr.Sender()) })
	return tr.Sender(), nil
}

var opusCodec = webrtc.RTPCodecCapability{
	MimeType:    webrtc.MimeTypeOpus,
	ClockRate:   clockRate,
	Channels:    2,
	SDPFmtpLine: "minptime=10;useinbandfec=1",
}

// maxNACKsPerPacket bounds the requests for one lost packet. pion's
// generator asks every 100 ms for as long as the packet stays in its window
// (seconds of audio), by default without end; a packet the relay never had
// is never repaired, and after three requests a repair would come too late
// to be played anyway.
const maxNACKsPerPacket = 3

// responderSize is how many sent packets are kept to answer the relay's
// NACKs: 2.5 s of 20 ms frames, five times the relay's last request.
const responderSize = 128

// newWebRTCAPI builds a pion API that speaks Opus only, with the RFC 6464
// audio level extension, RTCP reports and NACK, and opens the media socket
// if Options.ListenMedia asks for one (the caller closes it after the
// PeerConnection).
func newWebRTCAPI(opts *Options) (*webrtc.API, net.PacketConn, error) {
	m := &webrtc.MediaEngine{}
	codec := opusCodec
	codec.RTCPFeedback = []webrtc.RTCPFeedback{{Type: webrtc.TypeRTCPFBNACK}}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: codec, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, nil, fmt.Errorf("register Opus: %w", err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.AudioLevelURI}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, nil, fmt.Errorf("register audio level extension: %w", err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, nil, fmt.Errorf("configure RTCP reports: %w", err)
	}
	// NACKs ask the relay to resend what the network lost on its way to
	// us, and the responder resends what the relay asks for, lost on its
	// way from us.
	gen, err := nack.NewGeneratorInterceptor(nack.GeneratorMaxNacksPerPacket(maxNACKsPerPacket))
	if err != nil {
		return nil, nil, fmt.Errorf("configure NACK: %w", err)
	}
	ir.Add(gen)
	resp, err := nack.NewResponderInterceptor(nack.ResponderSize(responderSize))
	if err != nil {
		return nil, nil, fmt.Errorf("configure NACK responder: %w", err)
	}
	ir.Add(resp)
	se := webrtc.SettingEngine{LoggerFactory: pionlog.Factory(opts.logger())}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICETimeouts(iceDisconnected, iceFailed, iceKeepalive)
	if opts.IPFilter != nil {
		se.SetIPFilter(opts.IPFilter)
		se.SetIncludeLoopbackCandidate(true)
	}
	var sock net.PacketConn
	if opts.ListenMedia != nil {
		if sock, err = opts.ListenMedia(); err != nil {
			return nil, nil, fmt.Errorf("open media socket: %w", err)
		}
		se.SetICEUDPMux(webrtc.NewICEUDPMux(pionlog.Factory(opts.logger()).NewLogger("ice-udp-mux"), sock))
	}
	if opts.settings != nil {
		opts.settings(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), sock, nil
}

func webrtcICEServers(in []api.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// audioLevelID returns the negotiated ID of the audio level extension on
// sender, or 0 if the server did not accept it.
func audioLevelID(sender *webrtc.RTPSender) uint8 {
	for _, h := range sender.GetParameters().HeaderExtensions {
		if h.URI == sdp.AudioLevelURI && h.ID > 0 && h.ID < 15 {
			return uint8(h.ID)
		}
	}
	return 0
}

// drainRTCP reads the RTCP the relay sends on a sender (about our stream:
// reports, NACKs) or a receiver (its sender reports), which runs it through
// the interceptors, until it stops.
func drainRTCP(r interface {
	Read([]byte) (int, interceptor.Attributes, error)
}) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := r.Read(buf); err != nil {
			return
		}
	}
}

// goRun runs fn as a transport goroutine unless shutdown has begun.
func (c *conn) goRun(fn func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fn()
	}()
	return true
}

// shutdown ends the connection for reason err (the first reason wins): it
// stops the event stream and the PeerConnection, and closes done once every
// transport goroutine has returned. It does not tell the server; see leave.
func (c *conn) shutdown(err error) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	if c.leaving.Load() {
		err = ErrLeft
	}
	c.err = err
	ws := c.ws
	c.mu.Unlock()
	c.cancel()
	// Closing may block on pion internals, and shutdown can be called from
	// pion callbacks and transport goroutines, so it finishes elsewhere.
	go func() {
		if ws != nil {
			ws.CloseNow()
		}
		if cerr := c.pc.Close(); cerr != nil {
			c.log.Debug("close peer connection", "err", cerr)
		}
		if c.sock != nil {
			c.sock.Close()
		}
		c.wg.Wait()
		close(c.done)
	}()
}

// endErr returns why the connection ended, or nil while it is up.
func (c *conn) endErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// leave tells the server the participant is leaving, then shuts down. It
// returns the error of telling the server, if the call was still up.
func (c *conn) leave() error {
	select {
	case <-c.ctx.Done():
		<-c.done
		return nil
	default:
	}
	c.leaving.Store(true)
	err := c.deleteParticipant()
	c.shutdown(ErrLeft)
	<-c.done
	if err != nil && !isAPIError(err, api.CodeNotFound) {
		return fmt.Errorf("leave room %q: %w", c.room, err)
	}
	return nil
}

func (c *conn) deleteParticipant() error {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	path := api.Version + "/rooms/" + url.PathEscape(c.room) + "/participants/" + url.PathEscape(c.self.ID)
	return c.api.do(ctx, http.MethodDelete, path, "Session "+c.session, nil, nil)
}

// closeAbruptly drops the connection the way a crashed process would: no
// leave, no WebSocket close handshake.
func (c *conn) closeAbruptly() {
	c.shutdown(errors.New("closed abruptly"))
	<-c.done
}

func (c *conn) onConnectionState(s webrtc.PeerConnectionState) {
	c.log.Debug("peer connection", "state", s.String())
	switch s {
	case webrtc.PeerConnectionStateConnected:
		c.connectedOnce.Do(func() { close(c.connected) })
	case webrtc.PeerConnectionStateFailed:
		// A failed ICE path is restarted (watchICE); DTLS failing over a
		// working path cannot be.
		if c.pc.ICEConnectionState() == webrtc.ICEConnectionStateConnected {
			c.shutdown(errICEFailed)
		}
	case webrtc.PeerConnectionStateClosed:
		// The relay closed DTLS (pion then closes the PeerConnection). The
		// server's "closed" message, which says why, is on its way; end
		// the call without it only if it does not come.
		c.goRun(func() {
			t := time.NewTimer(closedGrace)
			defer t.Stop()
			select {
			case <-c.ctx.Done():
			case <-t.C:
				c.shutdown(errMediaClosed)
			}
		})
	}
}

func (c *conn) onICEState(s webrtc.ICEConnectionState) {
	c.log.Debug("ICE", "state", s.String())
	select {
	case c.iceStates <- s:
	default:
		// watchICE is behind; it reads the PeerConnection's state anyway.
	}
}

// watchICE restarts ICE when the media path fails: disconnected for
// iceRestartGrace, or failed. It retries every iceRestartRetry and gives
// up, ending the connection so that the call rejoins, after iceGiveUp.
func (c *conn) watchICE() {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var down time.Time // when the path failed and restarts began; zero while up
	for {
		select {
		case <-c.ctx.Done():
			return
		case s := <-c.iceStates:
			switch s {
			case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
				if !down.IsZero() {
					c.log.Info("media path back", "after", time.Since(down).Round(time.Millisecond))
				}
				down = time.Time{}
				timer.Stop()
			case webrtc.ICEConnectionStateDisconnected:
				if down.IsZero() {
					timer.Reset(iceRestartGrace)
				}
			case webrtc.ICEConnectionStateFailed:
				if down.IsZero() {
					timer.Reset(0)
				}
			}
			continue
		case <-timer.C:
		}
		switch c.pc.ICEConnectionState() {
		case webrtc.ICEConnectionStateConnected, webrtc.ICEConnectionStateCompleted:
			down = time.Time{}
			continue
		}
		if down.IsZero() {
			down = time.Now()
		} else if time.Since(down) > iceGiveUp {
			c.shutdown(errICEFailed)
			return
		}
		c.restartICE()
		timer.Reset(iceRestartRetry)
	}
}

// restartICE sends the relay an offer with new ICE credentials. The offer
// is applied when its answer comes (handle); until then the connection
// stays stable.
func (c *conn) restartICE() {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	if c.pc.SignalingState() != webrtc.SignalingStateStable {
		return
	}
	offer, err := c.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		c.log.Debug("ICE restart offer", "err", err)
		return
	}
	c.pendingOffer = &offer
	c.iceRestarts.Add(1)
	c.log.Info("media path lost; restarting ICE")
	if err := c.send(c.ctx, api.SDP{Type: api.TypeOffer, SDP: offer.SDP}); err != nil {
		// The event stream is down: the next try goes once it is back.
		c.log.Debug("send ICE restart offer", "err", err)
		c.pendingOffer = nil
	}
}

// restartAnswered applies the relay's answer to the pending restart offer.
func (c *conn) restartAnswered(answer string) error {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	offer := c.pendingOffer
	c.pendingOffer = nil
	if offer == nil {
		c.log.Debug("answer without an offer")
		return nil
	}
	if err := c.pc.SetLocalDescription(*offer); err != nil {
		return fmt.Errorf("apply ICE restart offer: %w", err)
	}
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("apply ICE restart answer: %w", err)
	}
	return nil
}

// restartRefused forgets a restart offer the relay did not take; watchICE
// tries again if the path is still down.
func (c *conn) restartRefused() {
	c.negMu.Lock()
	defer c.negMu.Unlock()
	c.pendingOffer = nil
}

func (c *conn) onICECandidate(cand *webrtc.ICECandidate) {
	if cand == nil || !c.trickle.Load() {
		return
	}
	init := cand.ToJSON()
	msg := api.Candidate{Type: api.TypeCandidate, Candidate: api.ICECandidate{
		Candidate:        init.Candidate,
		SDPMid:           init.SDPMid,
		SDPMLineIndex:    init.SDPMLineIndex,
		UsernameFragment: init.UsernameFragment,
	}}
	if err := c.send(c.ctx, msg); err != nil {
		c.log.Debug("trickle candidate", "err", err)
	}
}

// onTrack starts reading a publisher's audio. The relay names the stream
// after the publisher's participant ID.
func (c *conn) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	id := t.StreamID()
	c.goRun(func() { c.readTrack(id, t) })
	// The relay's sender reports, echoed in our receiver reports, give it
	// the round-trip time it paces its NACKs to us with.
	c.goRun(func() { drainRTCP(r) })
}

func (c *conn) readTrack(id string, t *webrtc.TrackRemote) {
	c.tracksMu.Lock()
	c.tracks[id]++
	c.tracksMu.Unlock()
	defer func() {
		c.tracksMu.Lock()
		if c.tracks[id]--; c.tracks[id] <= 0 {
			delete(c.tracks, id)
		}
		c.tracksMu.Unlock()
	}()
	c.log.Debug("remote track", "from", id)
	from := c.roster.await(c.ctx, id, identityWait)
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			c.log.Debug("remote track ended", "from", id, "err", err)
			return
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			c.invalidPackets.Add(1)
			continue
		}
		if from.Identity == "" {
			from = c.roster.lookup(id)
		}
		c.sink.frame(from, pkt.SequenceNumber, pkt.Timestamp, pkt.Payload, time.Now())
	}
}

// remoteTracks returns how many track readers are running for publisher id.
func (c *conn) remoteTracks(id string) int {
	c.tracksMu.Lock()
	defer c.tracksMu.Unlock()
	return c.tracks[id]
}

// readEvents runs the event stream until the call ends, reconnecting it
// when the connection drops.
func (c *conn) readEvents() {
	ws := c.currentWS()
	for {
		_, data, err := ws.Read(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return
			}
			if ws = c.reconnect(err); ws == nil {
				return
			}
			continue
		}
		var m api.Message
		if err := json.Unmarshal(data, &m); err != nil {
			c.log.Warn("invalid event", "err", err)
			continue
		}
		if err := c.handle(m); err != nil {
			c.shutdown(err)
			return
		}
	}
}

// reconnect opens a new event stream after the current one failed with
// cause. The server keeps the participant, and queues its messages, for
// its drop timeout; reconnecting within it continues the call. It returns
// nil, and ends the call, if the stream cannot be restored.
func (c *conn) reconnect(cause error) *websocket.Conn {
	if s := websocket.CloseStatus(cause); s == websocket.StatusNormalClosure || s == websocket.StatusPolicyViolation {
		// The server ended the stream on purpose.
		c.shutdown(fmt.Errorf("event stream: %w", cause))
		return nil
	}
	c.log.Info("event stream lost; reconnecting", "err", cause)
	deadline := time.Now().Add(reconnectWindow)
	delay := reconnectDelay
	for {
		t := time.NewTimer(delay)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
		ws, resp, err := websocket.Dial(ctx, c.eventsURL, &websocket.DialOptions{HTTPClient: c.api.http})
		cancel()
		if err == nil {
			ws.SetReadLimit(wsReadLimit)
			c.mu.Lock()
			if c.closing {
				c.mu.Unlock()
				ws.CloseNow()
				return nil
			}
			old := c.ws
			c.ws = ws
			c.mu.Unlock()
			old.CloseNow()
			c.log.Info("event stream reconnected")
			c.resumed = true
			return ws
		}
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			// Unknown participant or session: the server has dropped us,
			// or is a new process that never knew us.
			c.shutdown(fmt.Errorf("%w: event stream lost (%v); reconnect refused: %w", errSessionLost, cause, err))
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Nothing listens where the server was: it is gone, and with
			// it the session.
			c.shutdown(fmt.Errorf("%w: event stream lost (%v); server unreachable: %w", errSessionLost, cause, err))
			return nil
		}
		if time.Now().Add(delay).After(deadline) {
			c.shutdown(fmt.Errorf("event stream lost: %w", cause))
			return nil
		}
		delay = min(2*delay, time.Second)
	}
}

// currentWS returns the event stream's current connection.
func (c *conn) currentWS() *websocket.Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws
}

// handle acts on one server message. An error ends the call.
func (c *conn) handle(m api.Message) error {
	switch m.Type {
	case api.TypeWelcome:
		var w api.Welcome
		if !c.decode(m, &w) {
			return nil
		}
		resumed := c.resumed
		c.resumed = false
		if resumed {
			// A "left" written to the lost stream may never have arrived:
			// whoever the welcome no longer lists has left.
			for _, p := range c.roster.retain(w.Participants) {
				c.sink.left(p, ReasonUnknown)
			}
		}
		for _, p := range w.Participants {
			c.addParticipant(p)
		}
		if resumed {
			c.sink.reconnected()
		}
		c.sink.doorChanged(w.Door, "")
		c.sink.knocksWaiting(w.Knocks)
	case api.TypeDoor:
		var d api.DoorEvent
		if c.decode(m, &d) {
			c.sink.doorChanged(d.Door, d.By)
		}
	case api.TypeKnock:
		var k api.KnockEvent
		if c.decode(m, &k) {
			c.sink.knockUpdate(k.Knock)
		}
	case api.TypeJoined:
		var j api.Joined
		if c.decode(m, &j) {
			c.addParticipant(j.Participant)
		}
	case api.TypeAnswer:
		var a api.SDP
		if c.decode(m, &a) {
			if err := c.restartAnswered(a.SDP); err != nil {
				return err
			}
		}
	case api.TypeLeft:
		var l api.Left
		if c.decode(m, &l) && l.Participant.ID != c.self.ID {
			// A participant that came and went before our stream opened
			// was never announced; its departure is not news either.
			if p, ok := c.roster.remove(l.Participant); ok {
				c.sink.left(p, l.Reason)
			}
		}
	case api.TypeSpeaking:
		var s api.Speaking
		if c.decode(m, &s) {
			c.sink.speaking(c.participant(s.ParticipantID), s.Speaking)
		}
	case api.TypeOffer:
		var o api.SDP
		if c.decode(m, &o) {
			c.negMu.Lock()
			err := c.renegotiate(o.SDP)
			c.negMu.Unlock()
			if err != nil {
				if errors.Is(err, webrtc.ErrConnectionClosed) {
					// An offer overtaken by the relay closing us; the
					// reason follows.
					c.log.Debug("offer after media closed", "err", err)
					return nil
				}
				return fmt.Errorf("renegotiate: %w", err)
			}
		}
	case api.TypeCandidate:
		var cm api.Candidate
		if c.decode(m, &cm) && cm.Candidate.Candidate != "" {
			err := c.pc.AddICECandidate(webrtc.ICECandidateInit{
				Candidate:        cm.Candidate.Candidate,
				SDPMid:           cm.Candidate.SDPMid,
				SDPMLineIndex:    cm.Candidate.SDPMLineIndex,
				UsernameFragment: cm.Candidate.UsernameFragment,
			})
			if err != nil {
				c.log.Warn("add remote candidate", "err", err)
			}
		}
	case api.TypeEnvelope:
		var e api.Envelope
		if c.decode(m, &e) {
			c.sink.envelope(c.participant(e.From), e.Data)
		}
	case api.TypeError:
		var e api.ErrorEvent
		if c.decode(m, &e) {
			c.log.Debug("server error", "code", e.Error.Code, "message", e.Error.Message, "ref", e.Ref)
			if e.Error.Code == api.CodeOfferCollision {
				// The relay's offer crossed our ICE restart: it is answered
				// as any other, and the restart tried again.
				c.restartRefused()
				return nil
			}
			c.sink.serverError(&e.Error)
		}
	case api.TypePrekeysLow:
		c.sink.prekeysLow()
	case api.TypeClosed:
		var cl api.Closed
		c.decode(m, &cl)
		e := &ClosedError{Reason: cl.Reason, RetryAfter: time.Duration(max(0, cl.RetryAfterMs)) * time.Millisecond, By: cl.By}
		if cl.At != 0 {
			e.At = time.Unix(cl.At, 0)
		}
		return e
	default:
		c.log.Debug("ignored event", "type", m.Type)
	}
	return nil
}

func (c *conn) decode(m api.Message, v any) bool {
	if err := json.Unmarshal(m.Raw, v); err != nil {
		c.log.Warn("invalid event", "type", m.Type, "err", err)
		return false
	}
	return true
}

func (c *conn) addParticipant(p api.Participant) {
	if p.ID == "" || p.ID == c.self.ID {
		return
	}
	if named, added, returning := c.roster.add(p); added {
		c.sink.joined(named, returning)
	}
}

// participant returns the call's name of server ID id, which may be the
// caller itself.
func (c *conn) participant(id string) api.Participant {
	if id == c.self.ID {
		return c.me
	}
	return c.roster.lookup(id)
}

// serverID returns the server's ID of the participant the call names
// callID, the caller included; an unknown name goes as it is, for the
// server to refuse.
func (c *conn) serverID(callID string) string {
	if callID == c.me.ID {
		return c.self.ID
	}
	if id, ok := c.roster.serverID(callID); ok {
		return id
	}
	return callID
}

// renegotiate answers the relay's offer, which adds or removes the tracks
// of other participants.
func (c *conn) renegotiate(offer string) error {
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return fmt.Errorf("apply offer: %w", err)
	}
	answer, err := c.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	if err := c.pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set local answer: %w", err)
	}
	return c.send(c.ctx, api.SDP{Type: api.TypeAnswer, SDP: c.pc.LocalDescription().SDP})
}

// send writes one message on the event stream.
func (c *conn) send(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.currentWS().Write(ctx, websocket.MessageText, b)
}

// sendEnvelope sends opaque data to participant id through the server.
func (c *conn) sendEnvelope(ctx context.Context, to string, data []byte) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	// Writing with a context that ends closes a WebSocket, so tie the write
	// to the connection's lifetime as well as to the caller's ctx.
	unlink := context.AfterFunc(c.ctx, stop)
	defer unlink()
	msg := api.Envelope{Type: api.TypeEnvelope, To: c.serverID(to), Data: data, ID: c.envelopeID.Add(1)}
	if err := c.send(ctx, msg); err != nil {
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return fmt.Errorf("send envelope to %s: %w", to, err)
	}
	return nil
}

// writeFrame sends payload as one RTP packet covering samples at 48 kHz,
// with an audio level extension if hasLevel and the relay accepted it.
func (c *conn) writeFrame(payload []byte, samples uint32, level AudioLevel, hasLevel bool) error {
	if c.ctx.Err() != nil {
		return ErrClosed
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	h := &c.pkt.Header
	h.Version = 2
	h.Extension = false
	h.Extensions = nil
	if hasLevel && c.levelID != 0 {
		c.level[0] = level.Level & 0x7f
		if level.Voice {
			c.level[0] |= 0x80
		}
		h.Extensions = c.ext[:0] // reuse the array: no allocation
		if err := h.SetExtension(c.levelID, c.level[:]); err != nil {
			return fmt.Errorf("write frame: audio level: %w", err)
		}
	}
	c.pkt.Payload = payload
	err := c.track.WriteRTP(&c.pkt)
	h.SequenceNumber++
	h.Timestamp += samples
	c.pkt.Payload = nil
	if err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	c.framesSent.Add(1)
	return nil
}
