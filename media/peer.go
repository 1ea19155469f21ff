package media

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pionice "github.com/pion/ice/v4"
	"github.com/pion/rtp"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media/ice"
	"github.com/sotto-voice/sotto/media/transport"
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
	// Connectivity reports that the client fell silent (false: nothing,
	// not even an ICE consent check, arrived for
	// Config.ICEDisconnectedTimeout) or is heard again (true, also after
	// an ICE restart).
	Connectivity(connected bool)
	// Failed reports that the participant's media connection failed or
	// closed unexpectedly ("ICE failed", "peer connection failed", "peer
	// connection closed"; for logs). It is the last call; media has
	// already closed the peer and the signaling layer drops the
	// participant.
	Failed(reason string)
}

// Peer is one participant's session with the relay: its transport session
// (ICE, DTLS, SRTP) and its SDP negotiation. Its audio m-line from the
// initial offer is answered recvonly; every other participant's audio
// reaches it on m-lines the relay adds (sendonly) through server-initiated
// renegotiation.
//
// Renegotiation rules: one server offer in flight at a time. Subscription
// changes (a publisher joined or left) queue while an offer awaits its
// answer and all go out together in one more offer after the answer. A
// leaving publisher's m-line becomes inactive, and is reused for the next
// publisher once the client has answered the offer that freed it.
type Peer struct {
	id       string
	room     *Room
	e        *Engine
	sess     *transport.Session
	log      *slog.Logger
	pub      *publisher
	rtcpSSRC uint32 // sender SSRC of our receiver reports and NACKs
	events   *eventQueue
	// rtt is the smoothed round-trip time to the client in nanoseconds,
	// from its receiver reports on our streams; 0 until one arrives.
	rtt atomic.Int64

	// Scratch of the packet path: NACK answers (on the session's reading
	// goroutine, which hands over one packet at a time) and reports (on
	// the engine's tick).
	nackBuf    []byte
	nackHdr    rtp.Header
	reportBuf  []byte
	reportLegs []*leg

	mu            sync.Mutex
	neg           *negotiation
	offerInFlight bool
	silent        bool // Connectivity(false) was the last report
	ops           []subOp
	subs          map[*publisher]*leg
	legs          []*leg       // every leg ever added
	pendingDowns  []*downTrack // tracks in the offer in flight; forwarded once answered
	free          []*leg       // inactive legs, negotiated, ready for reuse
	freeing       []*leg       // legs going inactive in the offer in flight
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

// sessionHandler is a Peer as its transport session's handler.
type sessionHandler Peer

func (h *sessionHandler) RTP(pkt []byte, hdr *rtp.Header, now time.Time, w *transport.Writer) {
	h.pub.receive(pkt, hdr, now, w)
}

func (h *sessionHandler) RTCP(pkt []byte, now time.Time, w *transport.Writer) {
	(*Peer)(h).handleRTCP(pkt, now, w)
}

func (h *sessionHandler) Connectivity(connected bool) { (*Peer)(h).reportConnectivity(connected) }
func (h *sessionHandler) Failed(reason string)        { (*Peer)(h).fail(reason) }

// reportConnectivity tells the handler when the client falls silent or is
// heard again.
func (p *Peer) reportConnectivity(connected bool) {
	p.mu.Lock()
	changed := !p.closed && p.silent == connected
	p.silent = !connected
	p.mu.Unlock()
	if changed {
		p.events.push(func(h PeerHandler) { h.Connectivity(connected) })
	}
}

// fail closes the peer and reports reason to its handler. The transport
// calls it from its own goroutines, which closing the session inline
// would wait for.
func (p *Peer) fail(reason string) {
	if p.isClosed() {
		return
	}
	p.e.goTracked(func() { _ = p.closeWith(reason) })
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
	if p.closed || p.offerInFlight || len(p.ops) == 0 || !p.applyOps() {
		return
	}
	sdp := p.neg.describe(true, p.e.tr.Fingerprint(), p.e.candidates)
	p.offerInFlight = true
	p.events.push(func(h PeerHandler) { h.Offer(sdp) })
}

// applyOps turns the queued changes into leg changes. The last change
// queued for a publisher wins; removals go first so an offer never carries
// a publisher twice. It reports whether anything changed.
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
		p.subscribe(pub)
		changed = true
	}
	return changed
}

// subscribe puts pub on a free leg, or a new one; its packets flow once
// the client has answered.
func (p *Peer) subscribe(pub *publisher) {
	var l *leg
	if n := len(p.free); n > 0 {
		l, p.free = p.free[n-1], p.free[:n-1]
	} else {
		l = &leg{ssrc: randomSSRC()}
		p.neg.addLeg(l)
		p.legs = append(p.legs, l)
	}
	l.offered = pub
	p.subs[pub] = l
	p.pendingDowns = append(p.pendingDowns, &downTrack{pub: pub, leg: l})
}

// unsubscribe stops pub on its leg, which goes inactive in the next offer
// and is free once that is answered. The leg keeps its SSRC.
func (p *Peer) unsubscribe(pub *publisher, l *leg) {
	if d := l.cur.Swap(nil); d != nil {
		pub.removeDown(d)
	}
	delete(p.subs, pub)
	l.offered = nil
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
	rd, err := parseRemote(answer)
	if err == nil {
		err = p.neg.sameLines(rd)
	}
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: set answer: %w", p.id, err)
	}
	p.neg.remoteICE = rd.ice
	p.offerInFlight = false
	for _, d := range p.pendingDowns {
		d.binding.Store(&binding{ssrc: d.leg.ssrc, pt: p.neg.pt, levelID: p.neg.levelID, sess: p.sess})
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

// AnswerOffer answers an offer from the client, such as an ICE restart
// (new ICE credentials, same m-lines; the DTLS session and the keys stay),
// through PeerHandler.Answer. The offer must keep every m-line of the
// session, in order: the client cannot add or remove media this way. It
// fails with ErrOfferCollision while an offer of the server's awaits the
// client's answer (the client answers it, then offers again), and with
// ErrInvalidSDP for an offer that cannot be used. The answer is ready at
// once: ctx only stops an offer whose request is gone.
func (p *Peer) AnswerOffer(ctx context.Context, offer string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("peer %q: answer: %w", p.id, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.closed:
		return fmt.Errorf("peer %q: %w", p.id, ErrClosed)
	case p.offerInFlight:
		return fmt.Errorf("peer %q: %w", p.id, ErrOfferCollision)
	}
	rd, err := parseRemote(offer)
	if err == nil {
		err = p.neg.sameLines(rd)
	}
	if err != nil {
		return fmt.Errorf("peer %q: %w", p.id, err)
	}
	if rd.ice != p.neg.remoteICE {
		local := ice.NewCredentials()
		if err := p.sess.Restart(local); err != nil {
			return fmt.Errorf("peer %q: ICE restart: %w", p.id, err)
		}
		p.neg.local, p.neg.remoteICE = local, rd.ice
	}
	sdp := p.neg.describe(false, p.e.tr.Fingerprint(), p.e.candidates)
	p.events.push(func(h PeerHandler) { h.Answer(sdp) })
	return nil
}

// AddCandidate checks a remote trickled candidate: one that does not fit
// the session fails with ErrCandidate (see checkCandidate). An empty
// candidate marks the end of candidates. An ICE-lite relay has no use for
// the client's candidates: the client's checks bring its addresses.
func (p *Peer) AddCandidate(c api.ICECandidate) error {
	p.mu.Lock()
	closed, err := p.closed, checkCandidate(p.neg, c)
	p.mu.Unlock()
	if closed {
		return fmt.Errorf("peer %q: %w", p.id, ErrClosed)
	}
	if err != nil {
		return fmt.Errorf("peer %q: %w", p.id, err)
	}
	if c.Candidate == "" {
		return nil
	}
	if _, err := pionice.UnmarshalCandidate(strings.TrimPrefix(c.Candidate, "candidate:")); err != nil {
		return fmt.Errorf("peer %q: add candidate: %w", p.id, err)
	}
	return nil
}

// abandon drops a peer that never joined its room.
func (p *Peer) abandon() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.sess.Close()
}

// Close makes the participant leave: its session closes and the others
// renegotiate to drop its track. The handler gets no further calls.
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
	p.sess.Close()
	p.pub.stopped()
	p.e.counters.peers.Add(-1)
	return nil
}
