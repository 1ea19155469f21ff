package media

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
)

// PeerHandler receives what media has to tell one participant. Media calls
// it from its own goroutine, one call at a time per peer and never before
// Join has returned, so a handler may call back into the Peer.
type PeerHandler interface {
	// Offer is a server-initiated renegotiation: deliver it to the client,
	// whose answer comes back through Peer.SetAnswer.
	Offer(sdp string)
	// Answer is the answer to a client's offer (Peer.AnswerOffer), such
	// as an ICE restart: deliver it to the client.
	Answer(sdp string)
	// Candidate is a local ICE candidate gathered after the answer was made
	// (the answer and offers already carry the candidates known then).
	Candidate(c api.ICECandidate)
	// Connectivity reports that the client fell silent (false: nothing,
	// not even an ICE consent check, arrived for
	// Config.ICEDisconnectedTimeout) or is heard again (true, also after
	// an ICE restart).
	Connectivity(connected bool)
	// Failed reports that ICE or the peer connection failed or closed
	// unexpectedly ("ICE failed", "peer connection failed", "peer
	// connection closed", "renegotiation failed"; for logs). It is the last
	// call; media has already closed the peer and the signaling layer drops
	// the participant.
	Failed(reason string)
}

// Peer is one participant's PeerConnection. Its audio m-line from the
// initial offer is answered recvonly; every other participant's audio
// reaches it on server-added sendonly transceivers through server-initiated
// renegotiation.
//
// Renegotiation rules: one server offer in flight at a time. Subscription
// changes (a publisher joined or left) queue while an offer awaits its
// answer and all go out together in one more offer after the answer. A
// leaving publisher's transceiver becomes inactive, and is reused for the
// next publisher once the client has answered the offer that freed it.
type Peer struct {
	id       string
	room     *Room
	e        *Engine
	pc       *webrtc.PeerConnection
	log      *slog.Logger
	pub      *publisher
	pubMid   string // mid of the m-line carrying the participant's audio; "" = listen-only
	rtcpSSRC uint32 // sender SSRC of our receiver reports and NACKs
	events   *eventQueue
	// rtt is the smoothed round-trip time to the client in nanoseconds,
	// from its receiver reports on our streams; 0 until one arrives.
	rtt atomic.Int64

	mu            sync.Mutex
	answered      bool // the initial answer exists; later candidates trickle
	offerInFlight bool
	answering     bool // a client offer is being answered; its answer carries the candidates
	silent        bool // Connectivity(false) was the last report
	ops           []subOp
	subs          map[*publisher]*leg
	legs          []*leg       // every leg ever added, to stop their senders on close
	pendingDowns  []*downTrack // tracks in the offer in flight; forwarded once answered
	free          []*leg       // inactive legs, negotiated, ready for reuse
	freeing       []*leg       // legs going inactive in the offer in flight
	trackTaken    bool
	closed        bool
}

// subOp is a queued subscription change: start (add) or stop receiving pub.
type subOp struct {
	pub *publisher
	add bool
}

// ID is the participant ID given to Join.
func (p *Peer) ID() string { return p.id }

func (p *Peer) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *Peer) wire() {
	p.pc.OnTrack(p.onTrack)
	p.pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		p.mu.Lock()
		trickle := p.answered && !p.closed && !p.answering
		p.mu.Unlock()
		if !trickle {
			return
		}
		init := c.ToJSON()
		p.events.push(func(h PeerHandler) {
			h.Candidate(api.ICECandidate{
				Candidate:        init.Candidate,
				SDPMid:           init.SDPMid,
				SDPMLineIndex:    init.SDPMLineIndex,
				UsernameFragment: init.UsernameFragment,
			})
		})
	})
	p.pc.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		switch s {
		case webrtc.ICEConnectionStateFailed:
			p.fail("ICE failed")
		case webrtc.ICEConnectionStateDisconnected:
			p.reportConnectivity(false)
		case webrtc.ICEConnectionStateConnected:
			p.reportConnectivity(true)
		}
	})
	p.pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateFailed:
			p.fail("peer connection failed")
		case webrtc.PeerConnectionStateClosed:
			p.fail("peer connection closed")
		}
	})
}

// reportConnectivity tells the handler when the client falls silent or is
// heard again; the first connection is not news.
func (p *Peer) reportConnectivity(connected bool) {
	p.mu.Lock()
	changed := !p.closed && p.silent == connected
	p.silent = !connected
	p.mu.Unlock()
	if changed {
		p.events.push(func(h PeerHandler) { h.Connectivity(connected) })
	}
}

// fail closes the peer and reports reason to its handler. Pion calls it from
// its own callbacks, where closing the PeerConnection inline could deadlock.
func (p *Peer) fail(reason string) {
	if p.isClosed() {
		return
	}
	p.e.goTracked(func() { _ = p.closeWith(reason) })
}

// onTrack accepts the participant's one audio stream: the first track on the
// m-line of its publication. Anything else is read and dropped as
// unknown_ssrc.
func (p *Peer) onTrack(track *webrtc.TrackRemote, receiver *webrtc.RTPReceiver) {
	mid := ""
	for _, t := range p.pc.GetTransceivers() {
		if t.Receiver() == receiver {
			mid = t.Mid()
			break
		}
	}
	p.mu.Lock()
	take := !p.closed && !p.trackTaken && p.pubMid != "" && mid == p.pubMid && track.Kind() == webrtc.RTPCodecTypeAudio
	if take {
		p.trackTaken = true
	}
	p.mu.Unlock()
	if !take {
		p.log.Warn("dropping media on a stream the participant does not own",
			"ssrc", track.SSRC(), "mid", mid)
		p.e.goTracked(func() { p.drainUnowned(track) })
		return
	}
	for _, ext := range receiver.GetParameters().HeaderExtensions {
		if ext.URI == sdp.AudioLevelURI && ext.ID > 0 && ext.ID < 256 {
			p.pub.levelID.Store(uint32(ext.ID))
		}
	}
	p.e.goTracked(func() {
		p.e.counters.tracks.Add(1)
		defer p.e.counters.tracks.Add(-1)
		p.pub.forward(track)
	})
	p.e.goTracked(func() { p.readPublisherRTCP(receiver) })
}

func (p *Peer) drainUnowned(track *webrtc.TrackRemote) {
	buf := make([]byte, maxPacketSize)
	for failures := 0; failures < maxReadFailures; {
		_, _, err := track.Read(buf)
		switch {
		case err == nil:
			failures = 0
			p.e.counters.drop(dropUnknownSSRC)
		case errors.Is(err, io.EOF) || p.isClosed():
			return
		default:
			failures++
			p.e.counters.drop(dropUnknownSSRC)
		}
	}
}

// queue records a subscription change; negotiate sends it. Callers hold the
// room lock, so changes queue in membership order.
func (p *Peer) queue(pub *publisher, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.ops = append(p.ops, subOp{pub: pub, add: add})
	}
}

// negotiate sends an offer with the queued changes, unless an offer is
// already in flight (SetAnswer calls it again) or nothing changed.
func (p *Peer) negotiate() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.offerInFlight || p.answering || len(p.ops) == 0 {
		return
	}
	if !p.applyOps() {
		return
	}
	offer, err := p.pc.CreateOffer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(offer)
	}
	var desc string
	if err == nil {
		desc, err = forClient(p.pc.LocalDescription().SDP)
	}
	switch {
	case errors.Is(err, webrtc.ErrConnectionClosed):
		// Closed under us (the client went away): the state callback
		// fails the peer.
		return
	case err != nil:
		// The PeerConnection can no longer follow the room: drop the
		// participant rather than leave it deaf to newcomers.
		p.log.Error("renegotiation offer", "err", err)
		p.e.goTracked(func() { _ = p.closeWith("renegotiation failed") })
		return
	}
	p.offerInFlight = true
	p.events.push(func(h PeerHandler) { h.Offer(desc) })
}

// applyOps turns the queued changes into transceiver changes. The last
// change queued for a publisher wins; removals go first so an offer never
// carries a publisher twice. It reports whether anything changed.
func (p *Peer) applyOps() bool {
	want := make(map[*publisher]bool, len(p.ops))
	order := make([]*publisher, 0, len(p.ops))
	for _, op := range p.ops {
		if _, seen := want[op.pub]; !seen {
			order = append(order, op.pub)
		}
		want[op.pub] = op.add
	}
	p.ops = nil
	changed := false
	for _, pub := range order {
		if l, ok := p.subs[pub]; ok && (!want[pub] || pub.closed.Load()) {
			p.unsubscribe(pub, l)
			changed = true
		}
	}
	for _, pub := range order {
		if _, ok := p.subs[pub]; ok || !want[pub] || pub.closed.Load() {
			continue
		}
		if err := p.subscribe(pub); err != nil {
			p.log.Error("subscribe", "publisher", pub.id, "err", err)
			continue
		}
		changed = true
	}
	return changed
}

func (p *Peer) subscribe(pub *publisher) error {
	d := &downTrack{pub: pub}
	if n := len(p.free); n > 0 {
		l := p.free[n-1]
		d.leg = l
		if err := l.tr.SetSender(l.sender, d); err != nil {
			return fmt.Errorf("reuse transceiver: %w", err)
		}
		p.free = p.free[:n-1]
		p.subs[pub] = l
		p.pendingDowns = append(p.pendingDowns, d)
		return nil
	}
	l := &leg{}
	d.leg = l
	tr, err := p.pc.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fmt.Errorf("add transceiver: %w", err)
	}
	l.tr, l.sender = tr, tr.Sender()
	p.legs = append(p.legs, l)
	p.subs[pub] = l
	p.pendingDowns = append(p.pendingDowns, d)
	p.e.goTracked(func() { p.readLegRTCP(l) })
	return nil
}

func (p *Peer) unsubscribe(pub *publisher, l *leg) {
	if d := l.cur.Swap(nil); d != nil {
		pub.removeDown(d)
	}
	delete(p.subs, pub)
	// Detaching the track unbinds it and turns the transceiver inactive; the
	// sender, and so the leg's SSRC, is kept for reuse.
	if err := l.tr.SetSender(l.sender, nil); err != nil {
		// Only a transceiver stopped by a closing PeerConnection refuses.
		p.log.Debug("detach track", "publisher", pub.id, "err", err)
		return
	}
	p.freeing = append(p.freeing, l)
}

// SetAnswer applies the client's answer to the last Offer. Tracks added by
// that offer start flowing; queued changes go out in a new offer.
func (p *Peer) SetAnswer(answer string) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: %w", p.id, ErrClosed)
	}
	if !p.offerInFlight {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: %w", p.id, ErrNoOfferPending)
	}
	err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer})
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: set answer: %w: %v", p.id, ErrInvalidSDP, err)
	}
	p.offerInFlight = false
	for _, d := range p.pendingDowns {
		d.leg.cur.Store(d)
		d.pub.addDown(d)
	}
	p.pendingDowns = nil
	p.free = append(p.free, p.freeing...)
	p.freeing = nil
	p.mu.Unlock()
	p.negotiate()
	return nil
}

// AnswerOffer applies an offer from the client, such as an ICE restart
// (new ICE credentials, same m-lines; the DTLS session and the keys stay),
// and delivers the answer through PeerHandler.Answer once ICE gathering is
// complete, so that it carries the server's candidates. The offer must
// keep every m-line of the session, in order: the client cannot add or
// remove media this way. It fails with ErrOfferCollision while an offer
// of the server's awaits the client's answer (the client answers it, then
// offers again), and with ErrInvalidSDP for an offer that cannot be used.
func (p *Peer) AnswerOffer(ctx context.Context, offer string) error {
	p.mu.Lock()
	switch {
	case p.closed:
		p.mu.Unlock()
		return fmt.Errorf("peer %q: %w", p.id, ErrClosed)
	case p.offerInFlight || p.answering:
		p.mu.Unlock()
		return fmt.Errorf("peer %q: %w", p.id, ErrOfferCollision)
	}
	if err := sameMLines(p.pc.CurrentRemoteDescription(), offer); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: %w", p.id, err)
	}
	// No server offer may start while the client's is answered; candidates
	// gathered meanwhile go out in the answer rather than ahead of it.
	p.answering = true
	p.mu.Unlock()
	sdp, err := p.answerClientOffer(ctx, offer)
	p.mu.Lock()
	p.answering = false
	if err == nil && !p.closed {
		p.events.push(func(h PeerHandler) { h.Answer(sdp) })
	}
	p.mu.Unlock()
	p.negotiate()
	if err != nil {
		return fmt.Errorf("peer %q: %w", p.id, err)
	}
	return nil
}

// answerClientOffer applies a client's offer and returns the answer once a
// restarted ICE agent has gathered its candidates.
func (p *Peer) answerClientOffer(ctx context.Context, offer string) (string, error) {
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		return "", offerError(err)
	}
	// An ICE restart has begun gathering in SetRemoteDescription; otherwise
	// gathering is long complete and this is closed already.
	gathered := webrtc.GatheringCompletePromise(p.pc)
	answer, err := p.pc.CreateAnswer(nil)
	if err == nil {
		err = p.pc.SetLocalDescription(answer)
	}
	if err != nil {
		// The offer is applied: a failure here is the PeerConnection's.
		return "", fmt.Errorf("answer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather candidates: %w", ctx.Err())
	}
	return forClient(p.pc.LocalDescription().SDP)
}

// AddCandidate adds a remote trickled candidate. One that does not fit
// the session fails with ErrCandidate (see checkCandidate). An empty
// candidate marks the end of candidates, which an ICE-lite server has no
// use for.
func (p *Peer) AddCandidate(c api.ICECandidate) error {
	if remote := p.pc.RemoteDescription(); remote != nil {
		if err := checkCandidate(remote.SDP, c); err != nil {
			return fmt.Errorf("peer %q: %w", p.id, err)
		}
	}
	if c.Candidate == "" {
		return nil
	}
	if p.isClosed() {
		return fmt.Errorf("peer %q: %w", p.id, ErrClosed)
	}
	err := p.pc.AddICECandidate(webrtc.ICECandidateInit{
		Candidate:        c.Candidate,
		SDPMid:           c.SDPMid,
		SDPMLineIndex:    c.SDPMLineIndex,
		UsernameFragment: c.UsernameFragment,
	})
	if err != nil {
		return fmt.Errorf("peer %q: add candidate: %w", p.id, err)
	}
	return nil
}

// Close makes the participant leave: its PeerConnection closes and the
// others renegotiate to drop its track. The handler gets no further calls.
func (p *Peer) Close() error { return p.closeWith("") }

func (p *Peer) closeWith(reason string) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	downs := make([]*downTrack, 0, len(p.subs))
	for _, l := range p.subs {
		if d := l.cur.Load(); d != nil {
			downs = append(downs, d)
		}
	}
	legs := p.legs
	p.mu.Unlock()

	p.pub.closed.Store(true)
	if reason != "" {
		p.log.Info("peer failed", "reason", reason)
		p.events.close(func(h PeerHandler) { h.Failed(reason) })
	} else {
		p.events.close(nil)
	}
	p.room.removePeer(p)
	for _, d := range downs {
		d.pub.removeDown(d)
	}
	err := p.pc.Close()
	// A leg parked inactive is detached from its transceiver, so closing the
	// PeerConnection does not stop its sender (and its RTCP reader).
	for _, l := range legs {
		_ = l.sender.Stop()
	}
	p.e.counters.peers.Add(-1)
	if err != nil && !errors.Is(err, webrtc.ErrConnectionClosed) {
		return fmt.Errorf("peer %q: close: %w", p.id, err)
	}
	return nil
}
