package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/token"
)

// Buffer sizes of the channels a Call delivers on. When an application
// falls behind, further items are dropped and counted in Stats rather than
// stalling the connection.
const (
	FrameBuffer    = 512 // about 3 s of 20 ms frames from 3 participants
	EventBuffer    = 256
	EnvelopeBuffer = 256
)

// MaxFrameSize is the largest frame WriteFrame accepts, in bytes. It keeps
// an RTP packet with its header, audio level extension, SFrame header and
// tag and SRTP tag inside a 1500-byte MTU, over IPv6 too. Opus frames of
// ordinary voice are far smaller.
const MaxFrameSize = 1360

// sealOverhead bounds what SFrame adds to a frame: the longest header this
// SDK's key ids and counters produce (1 + 6 + 8 bytes) and the 16-byte tag.
const sealOverhead = 31

// MaxFrameDuration is the longest duration one frame may cover, the Opus
// maximum.
const MaxFrameDuration = 120 * time.Millisecond

var (
	// ErrClosed is returned by methods of a call that has ended.
	ErrClosed = errors.New("client: call has ended")
	// ErrLeft is Call.Err after Call.Leave.
	ErrLeft = errors.New("client: left the call")
	// ErrReconnecting is returned by methods that need the server while
	// the call rejoins (between Reconnecting and Reconnected).
	ErrReconnecting = errors.New("client: call is reconnecting")
	// ErrListenOnly is returned by WriteFrame on a call joined with
	// Options.ListenOnly.
	ErrListenOnly = errors.New("client: listen-only call: nothing is published")
)

// ClosedError is Call.Err when the server ended the call. Reason is one of
// the api.Reason* values, such as api.ReasonMovedToAnotherDevice when the
// same identity joined from another device (errors.Is(err,
// ErrMovedToAnotherDevice); final: the call does not rejoin) or
// api.ReasonRoomEnded. Reasons that a rejoin cures (api.ReasonShutdown,
// api.ReasonDropped and the other losses) end a call only when its resume
// window runs out; then Call.Err wraps it. RetryAfter is the server's hint
// of when to rejoin after a shutdown.
type ClosedError struct {
	Reason     string
	RetryAfter time.Duration
	// By and At say who ended the call for everyone, and when, with
	// api.ReasonRoomEnded.
	By string
	At time.Time
}

func (e *ClosedError) Error() string { return "client: call closed by server: " + e.Reason }

// Options configure Join. The zero value (or nil) is ready to use.
type Options struct {
	// ICEServers are STUN or TURN servers to use in addition to those the
	// server offers.
	ICEServers []api.ICEServer

	// ListenOnly joins without publishing: the call receives everyone's
	// audio and sends none (WriteFrame fails with ErrListenOnly), and the
	// others get no track of it. Recorders and monitors use it.
	ListenOnly bool

	// RelayOnly restricts media to TURN relays: no host or server-reflexive
	// path is tried. Use it behind firewalls that block direct UDP, or to
	// keep the caller's address from the relay.
	RelayOnly bool

	// IPFilter, if set, limits the local addresses ICE gathers candidates
	// on to those it keeps. Loopback addresses are gathered only when a
	// filter is set, which a call to a server on the same host needs:
	//
	//	IPFilter: func(ip net.IP) bool { return ip.IsLoopback() }
	IPFilter func(net.IP) bool

	// ListenMedia, if set, opens the UDP socket that carries the call's
	// media, in place of those ICE opens on each local address: the
	// call's host candidate is this socket's address (server-reflexive
	// and relay candidates keep sockets of their own, and a loopback
	// address needs IPFilter to keep it). The call closes the socket when
	// its media connection ends. The load tester hands out sockets that
	// lose packets on purpose.
	ListenMedia func() (net.PacketConn, error)

	// HTTPClient makes the API requests and the event-stream connection.
	// Nil means http.DefaultClient.
	HTTPClient *http.Client

	// Logger receives diagnostics. Nil means slog.Default().
	Logger *slog.Logger

	// ResumeWindow is how long a call that lost its place on the server
	// (the server crashed, restarted, was redeployed or dropped the
	// caller) keeps trying to rejoin the room, with its token, before it
	// ends. 0 means DefaultResumeWindow; a negative window never rejoins.
	ResumeWindow time.Duration

	// Identity is the device's long-term identity key, which the other
	// participants see as its safety number. Nil means a fresh identity
	// for every Join (kept across the call's rejoins), so that safety
	// numbers change from call to call;
	// applications persist theirs (Identity.MarshalBinary, e2ee.ParseIdentity)
	// and use one Identity in one call at a time.
	//
	// Every call is end-to-end encrypted; there is no option to turn it off.
	Identity *e2ee.Identity

	// TrustStore remembers the identity key first seen for each identity
	// name and whether the user verified it. Nil means an in-memory store
	// for this call only: a key that changed since an earlier call goes
	// unnoticed. Share one store between calls, and persist it
	// (NewFileTrustStore), so that a changed key is noticed across calls
	// and runs.
	TrustStore TrustStore

	// keyLog, if set, sees every frame key installed from another
	// participant (tests use it to play a participant that kept its keys).
	keyLog func(from api.Participant, key e2ee.FrameKey)

	// settings, if set, adjusts the pion settings; tests use it to own the
	// call's UDP socket.
	settings func(*webrtc.SettingEngine)
}

// DefaultResumeWindow is the ResumeWindow of Options that leave it 0.
const DefaultResumeWindow = 60 * time.Second

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Frame is one Opus frame received from another participant.
type Frame struct {
	// From is the publisher. Its Identity is empty only if the server never
	// announced the publisher within a few seconds of its first frame.
	From      api.Participant
	Data      []byte    // the frame, owned by the receiver
	Seq       uint16    // RTP sequence number: gaps mean lost frames
	Timestamp uint32    // RTP timestamp at 48 kHz
	Received  time.Time // arrival time
}

// Envelope is opaque data another participant sent with SendEnvelope.
type Envelope struct {
	From api.Participant
	Data []byte
}

// AudioLevel is an RFC 6464 audio level, which lets the server tell who is
// speaking without decoding audio.
type AudioLevel struct {
	// Level is the frame's level in -dBov: 0 is the loudest a signal can
	// be, 127 is silence. Values above 127 are taken modulo 128.
	Level uint8
	// Voice reports whether the frame contains speech, as a voice activity
	// detector (such as Opus's own) decides.
	Voice bool
}

// Stats are a call's counters.
type Stats struct {
	FramesSent       uint64 // frames written
	FramesReceived   uint64 // frames delivered on Frames
	FramesDropped    uint64 // frames lost because Frames was full
	EventsDropped    uint64 // events lost because Events was full
	EnvelopesDropped uint64 // envelopes lost because Envelopes was full
	InvalidPackets   uint64 // received packets that were not valid RTP

	// FramesEncrypted counts frames sealed with SFrame and sent.
	FramesEncrypted uint64
	// FramesDecrypted counts received frames that authenticated and
	// decrypted (empty frames, which carry no audio, are not counted).
	FramesDecrypted uint64
	// Dropped counts received frames that were not delivered because they
	// could not be decrypted, by reason: the Drop* constants, every one
	// present. DropAwaitingKey (the publisher's key is still on its way),
	// DropBeforeKey (audio from before this caller joined),
	// DropIdentityUnverified (the application has not accepted the
	// publisher's changed identity) and DropNotEncrypted (the publisher
	// does not encrypt) are expected states, not decryption failures;
	// DecryptFailures leaves them out.
	Dropped map[string]uint64
	// Rekeys counts changes of this caller's own sending key: one ratchet
	// step for every participant who joined after it and one fresh chain
	// for every participant who left.
	Rekeys uint64
	// KeysReceived counts frame keys installed from other participants,
	// which send one when a session starts, when their chain changes for
	// a leave, and when an accepted identity lets them in.
	KeysReceived uint64

	// FramesUnsent counts frames written while the call was reconnecting,
	// which went nowhere.
	FramesUnsent uint64
	// ICERestarts counts the ICE restarts the call made when its media
	// path failed; Rejoins the times it joined the room again when the
	// server had lost it.
	ICERestarts uint64
	Rejoins     uint64
	// SessionsOneTimeKEM and SessionsLastResortKEM count the end-to-end
	// sessions set up with other participants, all of them PQXDH, by the
	// ML-KEM-768 prekey they used: a one-time one, or the responder's
	// last-resort one when the directory had no one-time prekey for the
	// initiator (none left, or one handed out to it a moment before).
	SessionsOneTimeKEM    uint64
	SessionsLastResortKEM uint64
	// MessagesDropped counts messages lost because Messages was full;
	// MessagesRefused those that did not parse, came out of their
	// sender's order or came from a participant whose changed identity key
	// was not accepted.
	MessagesDropped uint64
	MessagesRefused uint64
}

// add returns the sum of two calls' counters.
func (s Stats) add(o Stats) Stats {
	dropped := make(map[string]uint64, len(dropReasons))
	for _, d := range dropReasons {
		dropped[d.name] = s.Dropped[d.name] + o.Dropped[d.name]
	}
	return Stats{
		FramesSent:       s.FramesSent + o.FramesSent,
		FramesReceived:   s.FramesReceived + o.FramesReceived,
		FramesDropped:    s.FramesDropped + o.FramesDropped,
		EventsDropped:    s.EventsDropped + o.EventsDropped,
		EnvelopesDropped: s.EnvelopesDropped + o.EnvelopesDropped,
		InvalidPackets:   s.InvalidPackets + o.InvalidPackets,
		FramesEncrypted:  s.FramesEncrypted + o.FramesEncrypted,
		FramesDecrypted:  s.FramesDecrypted + o.FramesDecrypted,
		Dropped:          dropped,
		Rekeys:           s.Rekeys + o.Rekeys,
		KeysReceived:     s.KeysReceived + o.KeysReceived,
		FramesUnsent:     s.FramesUnsent + o.FramesUnsent,
		ICERestarts:      s.ICERestarts + o.ICERestarts,
		Rejoins:          s.Rejoins + o.Rejoins,

		SessionsOneTimeKEM:    s.SessionsOneTimeKEM + o.SessionsOneTimeKEM,
		SessionsLastResortKEM: s.SessionsLastResortKEM + o.SessionsLastResortKEM,
		MessagesDropped:       s.MessagesDropped + o.MessagesDropped,
		MessagesRefused:       s.MessagesRefused + o.MessagesRefused,
	}
}

// DecryptFailures is the number of received frames dropped as malformed,
// forged, tampered, replayed, sent under an expired key or re-sent by the
// wrong participant: every Dropped reason except DropAwaitingKey,
// DropBeforeKey, DropIdentityUnverified and DropNotEncrypted.
func (s Stats) DecryptFailures() uint64 {
	var n uint64
	for reason, v := range s.Dropped {
		switch reason {
		case DropAwaitingKey, DropBeforeKey, DropIdentityUnverified, DropNotEncrypted:
		default:
			n += v
		}
	}
	return n
}

// Call is one participant's presence in a room: it publishes frames and
// receives everyone else's. Its methods are safe for concurrent use.
//
// A call outlives the server's knowledge of it: when the server crashes,
// restarts, is redeployed or drops the caller, the call joins the room
// again by itself (a Reconnecting event, then Reconnected), with new media
// and new end-to-end sessions with everyone, for up to
// Options.ResumeWindow. The application keeps one Call throughout; see
// Call.ID for how participants are named across rejoins.
type Call struct {
	log    *slog.Logger
	api    *apiClient
	token  string
	claims token.Claims
	opts   Options            // Identity and TrustStore set: the same for every join
	store  *e2ee.PrekeyStore  // one key-exchange worker at a time uses it
	self   api.Participant    // the caller as the call names it
	back   *returning         // participants expected back after a rejoin
	chat   *chat              // the messages of all its joins
	ctx    context.Context    // canceled by Leave
	cancel context.CancelFunc // stops a rejoin under way

	mu      sync.Mutex
	sess    *session // the current join; nil while reconnecting
	leaving bool
	retired Stats // counters of the joins that ended

	frames    chan Frame
	events    chan Event
	envelopes chan Envelope
	done      chan struct{}
	err       error // set before done is closed

	framesReceived   atomic.Uint64
	framesDropped    atomic.Uint64
	eventsDropped    atomic.Uint64
	envelopesDropped atomic.Uint64
	framesUnsent     atomic.Uint64
	rejoins          atomic.Uint64

	sealMu  sync.Mutex
	sealBuf []byte // reused for every sealed frame

	muted    atomic.Bool    // the caller is muted (mute.go)
	door     doorState      // the call's door and who waits at it (knock.go)
	switches deviceSwitches // participants that moved to another device (device.go)
}

// Join joins the room that tok admits to, on the Sotto server at
// serverURL (such as "https://sotto.example"; a path prefix is kept), and
// returns once the media connection is up. The room and identity are read from
// the token's claims; the server verifies the token. A string that is not a
// room token fails at once with an error wrapping token.ErrInvalid.
//
// The call is end-to-end encrypted (docs/PROTOCOL.md §9): Join publishes
// the device's prekeys, then starts a session with every participant
// present and sends it the caller's frame key; participants who join later
// start theirs. A participant's frames are delivered once its key has
// arrived (a PeerEncrypted event); before that they are dropped and counted
// as DropAwaitingKey. Keys change by themselves when participants join and
// leave.
//
// Join fetches the server's ICE servers first, so that TURN relays are
// available from the start. It returns an error wrapping *api.Error when the
// server refuses the join (errors.As gives the code, such as
// api.CodeRoomFull or api.CodeTokenExpired).
//
// ctx bounds joining only; the call lasts until Leave or until it ends on
// its own (see Done), rejoining by itself on the way if it must.
func Join(ctx context.Context, serverURL, tok string, opts *Options) (*Call, error) {
	if opts == nil {
		opts = &Options{}
	}
	claims, err := token.ParseUnverified(tok)
	if err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	a, err := newAPIClient(serverURL, opts.HTTPClient)
	if err != nil {
		return nil, fmt.Errorf("join room %q: %w", claims.Room, err)
	}
	c := &Call{
		log:       opts.logger().With("room", claims.Room, "identity", claims.Identity),
		api:       a,
		token:     tok,
		claims:    claims,
		opts:      *opts,
		self:      api.Participant{Identity: claims.Identity},
		back:      newReturning(),
		chat:      newChat(),
		frames:    make(chan Frame, FrameBuffer),
		events:    make(chan Event, EventBuffer),
		envelopes: make(chan Envelope, EnvelopeBuffer),
		done:      make(chan struct{}),
		sealBuf:   make([]byte, 0, MaxFrameSize+sealOverhead),
	}
	if c.opts.Identity == nil {
		if c.opts.Identity, err = e2ee.NewIdentity(nil); err != nil {
			return nil, fmt.Errorf("join room %q: create identity: %w", claims.Room, err)
		}
	}
	if c.opts.TrustStore == nil {
		c.opts.TrustStore = NewMemoryTrustStore()
	}
	if c.store, err = e2ee.NewPrekeyStore(c.opts.Identity, nil); err != nil {
		return nil, fmt.Errorf("join room %q: create prekeys: %w", claims.Room, err)
	}
	s, err := c.join(ctx, "")
	if err != nil {
		c.store.Destroy()
		return nil, fmt.Errorf("join room %q: %w", claims.Room, err)
	}
	c.self = s.conn.me
	c.sess = s
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run(s)
	return c, nil
}

// session returns the current join, nil while the call reconnects.
func (c *Call) session() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// ID returns the participant ID the server assigned to the caller's first
// join of this call.
//
// Participants keep the ID this call first knew them by for as long as it
// knows them: when the call rejoins, the server assigns everyone new IDs,
// and the call goes on naming those it knew before by their old ones, in
// Events, Frames, Envelopes and Participants and in the methods that take
// an ID. They are not reported as joining again. A participant who joins
// for the first time after a rejoin has the ID the server gave it; another
// caller may know it by another one. Identity names a participant the same
// way for everyone.
func (c *Call) ID() string { return c.self.ID }

// Identity returns the caller's identity, as the token grants it.
func (c *Call) Identity() string { return c.self.Identity }

// Room returns the room's name.
func (c *Call) Room() string { return c.claims.Room }

// Participants returns the other participants in the call, by ID: those in
// the room now and, after a rejoin, those the call expects back.
func (c *Call) Participants() []api.Participant {
	var out []api.Participant
	if s := c.session(); s != nil {
		out = s.conn.roster.present()
	}
	out = append(out, c.back.list()...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// WriteFrame publishes one Opus frame covering duration of audio (such as
// 20 ms). The frame is encrypted end to end (SFrame) before it leaves; the
// relay only ever sees the ciphertext. Each frame goes out as one RTP
// packet; its timestamp advances by
// duration at 48 kHz and its sequence number by one, so write frames in
// order and at the pace they are produced. frame is not retained.
//
// A frame written before the relay forwards to a participant is not
// delivered to that participant; frames are never queued. While the call
// reconnects, frames go nowhere: WriteFrame counts them (FramesUnsent) and
// returns nil. While the call is muted (SetMuted), frames are discarded and
// WriteFrame returns nil.
func (c *Call) WriteFrame(frame []byte, duration time.Duration) error {
	return c.writeFrame(frame, duration, AudioLevel{}, false)
}

// WriteFrameLevel is WriteFrame with the frame's audio level attached
// (RFC 6464). The server turns levels into Speaking events for everyone in
// the room; frames written with WriteFrame count as silence.
func (c *Call) WriteFrameLevel(frame []byte, duration time.Duration, level AudioLevel) error {
	return c.writeFrame(frame, duration, level, true)
}

func (c *Call) writeFrame(frame []byte, duration time.Duration, level AudioLevel, hasLevel bool) error {
	if c.opts.ListenOnly {
		return ErrListenOnly
	}
	if len(frame) == 0 || len(frame) > MaxFrameSize {
		return fmt.Errorf("client: frame of %d bytes, want 1 to %d", len(frame), MaxFrameSize)
	}
	samples := duration * clockRate / time.Second
	if samples < 1 || duration > MaxFrameDuration {
		return fmt.Errorf("client: frame duration %v, want up to %v", duration, MaxFrameDuration)
	}
	if c.muted.Load() && !c.ended() {
		return nil // muted, as the others are told: nothing leaves
	}
	s := c.session()
	if s == nil {
		return c.unsent()
	}
	c.sealMu.Lock()
	defer c.sealMu.Unlock()
	sealed, err := s.e2e.seal(c.sealBuf[:0], frame, time.Now())
	if err == nil {
		c.sealBuf = sealed[:0]
		err = s.conn.writeFrame(sealed, uint32(samples), level, hasLevel)
	}
	if errors.Is(err, ErrClosed) {
		return c.unsent()
	}
	if err != nil {
		return err
	}
	s.e2e.encrypted.Add(1)
	return nil
}

// unsent counts a frame written while no join carries it, or returns
// ErrClosed once the call has ended.
func (c *Call) unsent() error {
	if c.ended() {
		return ErrClosed
	}
	c.framesUnsent.Add(1)
	return nil
}

// ended reports whether the call has ended.
func (c *Call) ended() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Frames delivers the frames of every other participant, decrypted, each
// participant's in the order they arrived. Frames that do not decrypt are
// never delivered; Stats counts them. It is closed when the call ends.
func (c *Call) Frames() <-chan Frame { return c.frames }

// Events delivers what happens in the room. It is closed when the call
// ends, after a final Closed event.
func (c *Call) Events() <-chan Event { return c.events }

// SendEnvelope sends data to the participant with ID to, through the
// server, which relays it without reading it (and without encrypting it:
// encrypt what must stay private). Delivery is not confirmed: a refusal
// (unknown recipient, full queue) arrives later as a ServerError event.
// Data starting with the bytes 0x01 0x01 or 0x01 0x02 is reserved for the
// call's own key exchange and refused with ErrReservedEnvelope.
//
// While the call reconnects it fails with ErrReconnecting.
func (c *Call) SendEnvelope(ctx context.Context, to string, data []byte) error {
	if e2ee.IsPayload(data) {
		return ErrReservedEnvelope
	}
	s := c.session()
	if s == nil {
		return c.reconnecting()
	}
	err := s.conn.sendEnvelope(ctx, to, data)
	if errors.Is(err, ErrClosed) {
		return c.reconnecting()
	}
	return err
}

// reconnecting is the error of a call without a join: ErrReconnecting, or
// ErrClosed once the call has ended.
func (c *Call) reconnecting() error {
	if c.ended() {
		return ErrClosed
	}
	return ErrReconnecting
}

// Envelopes delivers the envelopes other participants send to this call
// with SendEnvelope; the call's own key-exchange messages are not among
// them. It is closed when the call ends.
func (c *Call) Envelopes() <-chan Envelope { return c.envelopes }

// Leave tells the server the caller is leaving and ends the call. It waits
// until the call's resources are released and its channels are closed. It
// is safe to call more than once and after the call has ended; only the
// call that ended a live call can return an error.
func (c *Call) Leave() error {
	c.mu.Lock()
	c.leaving = true
	s := c.sess
	c.mu.Unlock()
	c.cancel()
	var err error
	if s != nil {
		err = s.conn.leave()
	}
	<-c.done
	return err
}

// Done is closed when the call has ended and its channels are closed.
func (c *Call) Done() <-chan struct{} { return c.done }

// Err returns nil while the call is up and why it ended afterwards: ErrLeft
// after Leave, a *ClosedError when the server ended it, or the error that
// broke the connection and that rejoining did not cure (wrapping the
// server's refusal, such as an *api.Error with api.CodeCallEnded or
// api.CodeTokenExpired, when there was one).
func (c *Call) Err() error {
	if c.ended() {
		return c.err
	}
	return nil
}

// Stats returns the call's counters, summed over its joins.
func (c *Call) Stats() Stats {
	own := Stats{
		FramesReceived:   c.framesReceived.Load(),
		FramesDropped:    c.framesDropped.Load(),
		EventsDropped:    c.eventsDropped.Load(),
		EnvelopesDropped: c.envelopesDropped.Load(),
		FramesUnsent:     c.framesUnsent.Load(),
		Rejoins:          c.rejoins.Load(),
		MessagesDropped:  c.chat.dropped.Load(),
		MessagesRefused:  c.chat.refused.Load(),
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	own = own.add(c.retired)
	if c.sess != nil {
		own = own.add(c.sess.stats())
	}
	return own
}

func (c *Call) event(e Event) {
	select {
	case c.events <- e:
	default:
		c.eventsDropped.Add(1)
	}
}
