package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
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
)

// ClosedError is Call.Err when the server ended the call. Reason is one of
// the api.Reason* values, such as api.ReasonMovedToAnotherDevice when the
// same identity joined from another device (errors.Is(err,
// ErrMovedToAnotherDevice)) or api.ReasonShutdown.
type ClosedError struct {
	Reason string
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

	// HTTPClient makes the API requests and the event-stream connection.
	// Nil means http.DefaultClient.
	HTTPClient *http.Client

	// Logger receives diagnostics. Nil means slog.Default().
	Logger *slog.Logger

	// Identity is the device's long-term identity key, which the other
	// participants see as its safety number. Nil means a fresh identity
	// for every Join, so that safety numbers change from call to call;
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
	// DropBeforeKey (audio from before this caller joined) and
	// DropIdentityUnverified (the application has not accepted the
	// publisher's changed identity) are expected states, not decryption
	// failures; DecryptFailures leaves them out.
	Dropped map[string]uint64
	// Rekeys counts changes of this caller's own sending key: one ratchet
	// step for every participant who joined after it and one fresh chain
	// for every participant who left.
	Rekeys uint64
	// KeysReceived counts frame keys installed from other participants,
	// which send one when a session starts, when their chain changes for
	// a leave, and when an accepted identity lets them in.
	KeysReceived uint64
}

// DecryptFailures is the number of received frames dropped as malformed,
// forged, tampered, replayed, sent under an expired key or re-sent by the
// wrong participant: every Dropped reason except DropAwaitingKey,
// DropBeforeKey and DropIdentityUnverified.
func (s Stats) DecryptFailures() uint64 {
	var n uint64
	for reason, v := range s.Dropped {
		switch reason {
		case DropAwaitingKey, DropBeforeKey, DropIdentityUnverified:
		default:
			n += v
		}
	}
	return n
}

// Call is one participant's presence in a room: it publishes frames and
// receives everyone else's. Its methods are safe for concurrent use.
type Call struct {
	conn      *conn
	e2e       *e2eeState
	frames    chan Frame
	events    chan Event
	envelopes chan Envelope
	done      chan struct{}
	err       error // set before done is closed

	framesReceived   atomic.Uint64
	framesDropped    atomic.Uint64
	eventsDropped    atomic.Uint64
	envelopesDropped atomic.Uint64

	sealMu  sync.Mutex
	sealBuf []byte // reused for every sealed frame

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
// its own (see Done).
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
		frames:    make(chan Frame, FrameBuffer),
		events:    make(chan Event, EventBuffer),
		envelopes: make(chan Envelope, EnvelopeBuffer),
		done:      make(chan struct{}),
		sealBuf:   make([]byte, 0, MaxFrameSize+sealOverhead),
	}
	log := opts.logger().With("room", claims.Room, "identity", claims.Identity)
	c.e2e, err = newE2EE(ctx, a, tok, opts, log)
	if err != nil {
		return nil, fmt.Errorf("join room %q: %w", claims.Room, err)
	}
	c.e2e.call = c
	c.conn, err = dial(ctx, a, tok, claims, opts, c)
	if err != nil {
		c.e2e.close()
		return nil, fmt.Errorf("join room %q: %w", claims.Room, err)
	}
	c.conn.goRun(func() { c.e2e.run(c.conn.ctx) })
	go c.finish()
	return c, nil
}

// finish closes the channels once the transport has stopped, so that no
// send can race with a close.
func (c *Call) finish() {
	<-c.conn.done
	c.e2e.close()
	c.err = c.conn.endErr()
	select {
	case c.events <- Closed{Err: c.err}:
	default:
		c.eventsDropped.Add(1)
	}
	close(c.frames)
	close(c.events)
	close(c.envelopes)
	close(c.done)
}

// ID returns the participant ID the server assigned to this call.
func (c *Call) ID() string { return c.conn.self.ID }

// Identity returns the caller's identity, as the token grants it.
func (c *Call) Identity() string { return c.conn.self.Identity }

// Room returns the room's name.
func (c *Call) Room() string { return c.conn.room }

// Participants returns the other participants now in the room, by ID.
func (c *Call) Participants() []api.Participant { return c.conn.roster.present() }

// WriteFrame publishes one Opus frame covering duration of audio (such as
// 20 ms). The frame is encrypted end to end (SFrame) before it leaves; the
// relay only ever sees the ciphertext. Each frame goes out as one RTP
// packet; its timestamp advances by
// duration at 48 kHz and its sequence number by one, so write frames in
// order and at the pace they are produced. frame is not retained.
//
// A frame written before the relay forwards to a participant is not
// delivered to that participant; frames are never queued. While the call
// is muted (SetMuted), frames are discarded and WriteFrame returns nil.
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
	if len(frame) == 0 || len(frame) > MaxFrameSize {
		return fmt.Errorf("client: frame of %d bytes, want 1 to %d", len(frame), MaxFrameSize)
	}
	samples := duration * clockRate / time.Second
	if samples < 1 || duration > MaxFrameDuration {
		return fmt.Errorf("client: frame duration %v, want up to %v", duration, MaxFrameDuration)
	}
	if c.e2e.muted.Load() {
		return nil // muted, as the others are told: nothing leaves
	}
	c.sealMu.Lock()
	defer c.sealMu.Unlock()
	sealed, err := c.e2e.seal(c.sealBuf[:0], frame, time.Now())
	if err != nil {
		return err
	}
	c.sealBuf = sealed[:0]
	if err := c.conn.writeFrame(sealed, uint32(samples), level, hasLevel); err != nil {
		return err
	}
	c.e2e.encrypted.Add(1)
	return nil
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
func (c *Call) SendEnvelope(ctx context.Context, to string, data []byte) error {
	if e2ee.IsPayload(data) {
		return ErrReservedEnvelope
	}
	return c.conn.sendEnvelope(ctx, to, data)
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
	err := c.conn.leave()
	<-c.done
	return err
}

// Done is closed when the call has ended and its channels are closed.
func (c *Call) Done() <-chan struct{} { return c.done }

// Err returns nil while the call is up and why it ended afterwards: ErrLeft
// after Leave, a *ClosedError when the server ended it, or the error that
// broke the connection.
func (c *Call) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Stats returns the call's counters.
func (c *Call) Stats() Stats {
	return Stats{
		FramesSent:       c.conn.framesSent.Load(),
		FramesReceived:   c.framesReceived.Load(),
		FramesDropped:    c.framesDropped.Load(),
		EventsDropped:    c.eventsDropped.Load(),
		EnvelopesDropped: c.envelopesDropped.Load(),
		InvalidPackets:   c.conn.invalidPackets.Load(),
		FramesEncrypted:  c.e2e.encrypted.Load(),
		FramesDecrypted:  c.e2e.decrypted.Load(),
		Dropped:          c.e2e.droppedByReason(),
		Rekeys:           c.e2e.rekeys.Load(),
		KeysReceived:     c.e2e.keysReceived.Load(),
	}
}

// The methods below receive from the transport (they implement sink). This
// is where received frames and envelopes enter the public API.

func (c *Call) frame(from api.Participant, seq uint16, ts uint32, payload []byte, received time.Time) {
	data, ok := c.e2e.open(from, payload, received)
	if !ok {
		return
	}
	f := Frame{From: from, Data: data, Seq: seq, Timestamp: ts, Received: received}
	select {
	case c.frames <- f:
		c.framesReceived.Add(1)
	default:
		c.framesDropped.Add(1)
	}
}

func (c *Call) envelope(from api.Participant, data []byte) {
	if e2ee.IsPayload(data) {
		c.e2e.envelopeReceived(from, data)
		return
	}
	select {
	case c.envelopes <- Envelope{From: from, Data: data}:
	default:
		c.envelopesDropped.Add(1)
	}
}

func (c *Call) admitted(present []api.Participant) { c.e2e.noteAdmitted(present) }

// The application hears of a participant before any encryption event
// about it, which the worker may emit as soon as the work is queued.
func (c *Call) joined(p api.Participant) {
	c.event(ParticipantJoined{Participant: p})
	if prev, ok := c.switches.joined(p); ok {
		c.event(DeviceSwitched{Participant: p, Previous: prev})
	}
	c.e2e.participantJoined(p)
}

func (c *Call) left(p api.Participant, reason string) {
	c.event(ParticipantLeft{Participant: p, Reason: reason})
	c.switches.left(p, reason)
	c.e2e.participantLeft(p)
}

func (c *Call) prekeysLow() { c.e2e.prekeysLow() }

func (c *Call) reconnected() { c.e2e.resendKeys() }

func (c *Call) speaking(p api.Participant, on bool) {
	c.event(Speaking{Participant: p, Speaking: on})
}

func (c *Call) serverError(e *api.Error) { c.event(ServerError{Err: e}) }

func (c *Call) event(e Event) {
	select {
	case c.events <- e:
	default:
		c.eventsDropped.Add(1)
	}
}
