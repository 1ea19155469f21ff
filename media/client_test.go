package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/impair"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/wait"
)

func testLogger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("MEDIA_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", NACKHistory: 64, Logger: testLogger()})
	if err != nil {
		t.Fatalf("NewEngine: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

// clientOptions shape a test client.
type clientOptions struct {
	tracks        int  // audio tracks to publish; the second one is not owned by the participant
	noReplayCheck bool // accept a retransmitted packet the client already has (NACK test)
	tcpOnly       bool // reach the server over ICE-TCP only
	holdOffers    bool // keep server offers until answerHeld (a slow client)
	listenOnly    bool // offer one recvonly audio m-line and publish nothing
	clearHeaders  bool // offer no cryptex (RFC 9335): header extensions in the clear
	codec         webrtc.RTPCodecCapability
	// uplink, if set, is the socket the client's media goes through (one
	// that loses packets); such a client reads the RTCP on its sender, so
	// that pion's NACK responder answers the relay's NACKs.
	uplink *impair.Conn
}

// received is one packet a client got from one publisher.
type received struct {
	seq     uint16
	payload []byte
	level   []byte
}

// remoteTrack is what a client knows about one incoming track.
type remoteTrack struct {
	track   *webrtc.TrackRemote
	packets []received
	ended   bool
}

// client is a real pion PeerConnection on loopback playing a participant:
// it publishes RTP with known payloads and records what it receives, keyed
// by the stream ID (the publisher's participant ID).
type client struct {
	t          testing.TB
	id         string
	pc         *webrtc.PeerConnection
	tracks     []*webrtc.TrackLocalStaticRTP
	raw        *capturingTrack // tracks[0], for writing arbitrary RTP
	peer       *Peer
	joinAnswer string // the relay's answer to the join
	joined     chan struct{}

	level     atomic.Uint32 // RFC 6464 level sent on each packet
	levelID   uint8
	stopSend  chan struct{}
	sendDone  chan struct{}
	sentCount atomic.Int64

	mu           sync.Mutex
	holdOffers   bool
	held         []string
	offerSDPs    []string
	remote       map[string]*remoteTrack // by stream ID
	offers       int
	failures     []string
	answerErrs   []error
	answers      int    // answers to the client's own offers
	connectivity []bool // Connectivity reports, in order
}

func clientAPI(t testing.TB, opts clientOptions) *webrtc.API {
	t.Helper()
	a, err := newClientAPI(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newClientAPI is a client's own pion stack: Opus (under another payload
// type than the server's, as payload types are per leg), the mid and audio
// level extensions, loopback only.
func newClientAPI(opts clientOptions) (*webrtc.API, error) {
	me := &webrtc.MediaEngine{}
	codec := opts.codec
	if codec.MimeType == "" {
		codec = webrtc.RTPCodecCapability{
			MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2,
			SDPFmtpLine:  "minptime=10;useinbandfec=1",
			RTCPFeedback: []webrtc.RTCPFeedback{{Type: "nack"}},
		}
	}
	pt := webrtc.PayloadType(109)
	if codec.MimeType == webrtc.MimeTypePCMU {
		pt = 0
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: codec, PayloadType: pt}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, err
	}
	for _, uri := range []string{sdp.SDESMidURI, sdp.AudioLevelURI} {
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: uri}, webrtc.RTPCodecTypeAudio); err != nil {
			return nil, err
		}
	}
	network := webrtc.NetworkTypeUDP4
	if opts.tcpOnly {
		network = webrtc.NetworkTypeTCP4
	}
	se := loopback.SettingEngine(network)
	if opts.noReplayCheck {
		se.DisableSRTPReplayProtection(true)
	}
	if opts.uplink != nil {
		se.SetICEUDPMux(webrtc.NewICEUDPMux(nil, opts.uplink))
	}
	// pion's default interceptors: RTCP reports, NACK generator and
	// responder among them.
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(se)), nil
}

// newClient creates the client's PeerConnection and its offer; join sends
// it. Split so tests can inspect or break the offer.
func newClient(t testing.TB, id string, opts clientOptions) (*client, string) {
	t.Helper()
	if opts.tracks == 0 && !opts.listenOnly {
		opts.tracks = 1
	}
	cfg := webrtc.Configuration{}
	if opts.clearHeaders {
		cfg.RTPHeaderEncryptionPolicy = webrtc.RTPHeaderEncryptionPolicyDisable
	}
	pc, err := clientAPI(t, opts).NewPeerConnection(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{
		t: t, id: id, pc: pc,
		joined:   make(chan struct{}),
		stopSend: make(chan struct{}),
		sendDone: make(chan struct{}),
		remote:   make(map[string]*remoteTrack),
	}
	c.level.Store(127)
	c.holdOffers = opts.holdOffers
	t.Cleanup(c.close)
	codec := opts.codec
	if codec.MimeType == "" {
		codec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
	}
	for i := range opts.tracks {
		tr, err := webrtc.NewTrackLocalStaticRTP(codec, fmt.Sprintf("mic%d", i), id)
		if err != nil {
			t.Fatal(err)
		}
		ct := &capturingTrack{TrackLocalStaticRTP: tr}
		trx, err := pc.AddTransceiverFromTrack(ct, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv})
		if err != nil {
			t.Fatal(err)
		}
		if opts.uplink != nil {
			// The NACK responder sees the relay's NACKs as they are read.
			go func() {
				buf := make([]byte, maxPacketSize)
				for {
					if _, _, err := trx.Sender().Read(buf); err != nil {
						return
					}
				}
			}()
		}
		c.tracks = append(c.tracks, tr)
		if i == 0 {
			c.raw = ct
		}
	}
	if opts.listenOnly {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(c.onTrack)
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	offer, err := loopback.Offer(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	return c, offer
}

// joinClient creates a client, joins it and starts publishing.
func joinClient(t testing.TB, r *Room, id string, opts clientOptions) *client {
	t.Helper()
	c, offer := newClient(t, id, opts)
	c.join(r, offer)
	return c
}

func (c *client) join(r *Room, offer string) {
	c.t.Helper()
	if err := c.tryJoin(r, offer); err != nil {
		c.t.Fatal(err)
	}
}

// tryJoin joins and starts publishing; safe off the test goroutine.
func (c *client) tryJoin(r *Room, offer string) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	p, answer, err := r.Join(ctx, c.id, offer, c)
	if err != nil {
		return fmt.Errorf("%s: Join: %w", c.id, err)
	}
	c.peer = p
	c.joinAnswer = answer
	// Like any client, apply the answer before the server's offers.
	if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		return fmt.Errorf("%s: set answer: %w", c.id, err)
	}
	close(c.joined)
	for _, s := range c.pc.GetSenders() {
		for _, ext := range s.GetParameters().HeaderExtensions {
			if ext.URI == sdp.AudioLevelURI {
				c.levelID = uint8(ext.ID)
			}
		}
	}
	go c.publish()
	return nil
}

// firstSeq is the sequence number of a client's first published packet.
const firstSeq = 1000

// nextSeq is the sequence number publish gives its next packet, give or
// take one it may be sending now.
func (c *client) nextSeq() uint16 { return uint16(firstSeq + c.sentCount.Load()) }

// publish sends one packet per track every 20 ms. The payload names the
// client, the track and the packet index, so receivers can check it byte
// for byte and in order.
func (c *client) publish() {
	defer close(c.sendDone)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-c.stopSend:
			return
		case <-tick.C:
		}
		for k, tr := range c.tracks {
			pkt := &rtp.Packet{
				Header: rtp.Header{
					Version: 2, SequenceNumber: uint16(firstSeq + i), Timestamp: uint32(960 * i),
					PayloadType: 109,
				},
				Payload: testPayload(c.id, k, i),
			}
			if c.levelID != 0 {
				_ = pkt.Header.SetExtension(c.levelID, []byte{byte(c.level.Load())})
			}
			if err := tr.WriteRTP(pkt); err != nil && !errors.Is(err, io.ErrClosedPipe) {
				c.t.Logf("%s: write: %v", c.id, err)
			}
		}
		c.sentCount.Add(1)
	}
}

func testPayload(id string, track, i int) []byte {
	return fmt.Appendf(nil, "opus|%s|track%d|%06d|", id, track, i)
}

// parsePayload returns the sender, track and index encoded by testPayload.
func parsePayload(b []byte) (id string, track, i int, ok bool) {
	parts := strings.Split(string(b), "|")
	if len(parts) != 5 || parts[0] != "opus" {
		return "", 0, 0, false
	}
	if _, err := fmt.Sscanf(parts[2]+" "+parts[3], "track%d %d", &track, &i); err != nil {
		return "", 0, 0, false
	}
	return parts[1], track, i, true
}

func (c *client) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	c.mu.Lock()
	rt := &remoteTrack{track: track}
	c.remote[track.StreamID()] = rt
	c.mu.Unlock()
	// Reading the relay's RTCP runs it through the interceptors: the
	// client echoes the relay's sender reports in its receiver reports,
	// from which the relay takes the round-trip time.
	go func() {
		buf := make([]byte, maxPacketSize)
		for {
			if _, _, err := receiver.Read(buf); err != nil {
				return
			}
		}
	}()
	go func() {
		levelID := uint8(0)
		for {
			pkt, _, err := track.ReadRTP()
			if err != nil {
				c.mu.Lock()
				rt.ended = true
				c.mu.Unlock()
				return
			}
			if levelID == 0 {
				for _, ext := range c.pc.GetReceivers() {
					for _, h := range ext.GetParameters().HeaderExtensions {
						if h.URI == sdp.AudioLevelURI {
							levelID = uint8(h.ID)
						}
					}
				}
			}
			var level []byte
			if levelID != 0 {
				level = pkt.Header.GetExtension(levelID)
			}
			c.mu.Lock()
			rt.packets = append(rt.packets, received{seq: pkt.SequenceNumber, payload: pkt.Payload, level: level})
			c.mu.Unlock()
		}
	}()
}

// Offer answers the server's renegotiation, as a browser would, or keeps
// it for answerHeld.
func (c *client) Offer(offer string) {
	<-c.joined
	c.mu.Lock()
	c.offers++
	c.offerSDPs = append(c.offerSDPs, offer)
	if c.holdOffers {
		c.held = append(c.held, offer)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.answer(offer)
}

// answerHeld answers the offers held so far.
func (c *client) answerHeld() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.holdOffers = false
	c.mu.Unlock()
	for _, o := range held {
		c.answer(o)
	}
}

func (c *client) answer(offer string) {
	err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer})
	var answer webrtc.SessionDescription
	if err == nil {
		answer, err = c.pc.CreateAnswer(nil)
	}
	if err == nil {
		err = c.pc.SetLocalDescription(answer)
	}
	if err == nil {
		err = c.peer.SetAnswer(c.pc.LocalDescription().SDP)
	}
	if err != nil {
		c.mu.Lock()
		c.answerErrs = append(c.answerErrs, err)
		c.mu.Unlock()
	}
}

func (c *client) Candidate(api.ICECandidate) {}

// Answer applies the server's answer to the client's own offer.
func (c *client) Answer(answer string) {
	err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.answers++
	if err != nil {
		c.answerErrs = append(c.answerErrs, err)
	}
}

func (c *client) Connectivity(connected bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connectivity = append(c.connectivity, connected)
}

func (c *client) Failed(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failures = append(c.failures, reason)
}

func (c *client) stopPublishing() {
	select {
	case <-c.stopSend:
		return
	default:
	}
	close(c.stopSend)
	if c.peer != nil {
		<-c.sendDone
	}
}

func (c *client) close() {
	c.stopPublishing()
	_ = c.pc.Close()
}

// leave stops publishing and leaves through the media API.
func (c *client) leave() {
	c.stopPublishing()
	if err := c.peer.Close(); err != nil {
		c.t.Errorf("%s: leave: %v", c.id, err)
	}
	_ = c.pc.Close()
}

// snapshot returns a copy of what the client got from publisher id.
func (c *client) snapshot(id string) (packets []received, ended, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.remote[id]
	if !ok {
		return nil, false, false
	}
	return append([]received(nil), rt.packets...), rt.ended, true
}

// waitReceiving waits until c got at least n packets from each publisher.
func (c *client) waitReceiving(t testing.TB, n int, publishers ...string) {
	t.Helper()
	for _, id := range publishers {
		wait.For(t, fmt.Sprintf("%s to receive %d packets from %s", c.id, n, id), func() bool {
			pk, ended, ok := c.snapshot(id)
			return ok && !ended && len(pk) >= n
		})
	}
}

// capturingTrack is a TrackLocalStaticRTP that keeps its binding, so a test
// can write RTP the static track would have corrected (a foreign payload
// type, say) on the negotiated stream.
type capturingTrack struct {
	*webrtc.TrackLocalStaticRTP
	mu  sync.Mutex
	ctx webrtc.TrackLocalContext
}

func (t *capturingTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	t.mu.Lock()
	t.ctx = ctx
	t.mu.Unlock()
	return t.TrackLocalStaticRTP.Bind(ctx)
}

// writeRaw sends h and payload as they are, with the stream's SSRC.
func (t *capturingTrack) writeRaw(h rtp.Header, payload []byte) error {
	t.mu.Lock()
	ctx := t.ctx
	t.mu.Unlock()
	if ctx == nil {
		return errors.New("track not bound")
	}
	h.SSRC = uint32(ctx.SSRC())
	_, err := ctx.WriteStream().WriteRTP(&h, payload)
	return err
}
