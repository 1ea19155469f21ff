package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"syscall"
	"time"

	"github.com/pion/webrtc/v4"
)

// Room forwards each participant's audio to every other participant.
type Room struct {
	e          *Engine
	name       string
	log        *slog.Logger
	onSpeaking func(participantID string, speaking bool)

	mu     sync.Mutex
	peers  map[string]*Peer
	closed bool
	done   chan struct{}
}

// How often the room evaluates voice activity and sends receiver reports.
const (
	roomTick           = 100 * time.Millisecond
	receiverReportTick = 10 // in room ticks: one report per second per publisher
)

func newRoom(e *Engine, name string, onSpeaking func(string, bool)) *Room {
	return &Room{
		e:          e,
		name:       name,
		log:        e.log.With("room", name),
		onSpeaking: onSpeaking,
		peers:      make(map[string]*Peer),
		done:       make(chan struct{}),
	}
}

func (r *Room) start() {
	if !r.e.goTracked(r.loop) {
		r.markClosed()
	}
}

func (r *Room) markClosed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.done)
	}
}

func (r *Room) loop() {
	t := time.NewTicker(roomTick)
	defer t.Stop()
	var peers []*Peer // reused: the loop runs ten times a second per room
	for n := 1; ; n++ {
		select {
		case <-r.done:
			return
		case now := <-t.C:
			peers = r.appendPeers(peers[:0])
			for _, p := range peers {
				if changed, speaking := p.pub.speech.evaluate(now.UnixNano()); changed && r.onSpeaking != nil {
					r.onSpeaking(p.id, speaking)
				}
				if n%receiverReportTick == 0 {
					p.sendReceiverReport(now)
				}
			}
			clear(peers) // hold no closed peer until the next tick
		}
	}
}

func (r *Room) appendPeers(peers []*Peer) []*Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	return peers
}

// Join admits a participant with its SDP offer and returns the answer. The
// offer must carry an audio m-line that sends (sendrecv or sendonly) with
// Opus; the answer receives on it (recvonly). An offer whose Opus m-lines
// only receive (recvonly) joins a listen-only participant: it receives
// everyone and the others get no track of it. Errors wrap ErrInvalidSDP or
// ErrUnsupportedCodec for bad offers. The answer is made after ICE
// gathering completed, so it carries every server candidate. Once joined,
// the participant gets the other participants' audio through h.Offer, and
// they get its audio the same way.
func (r *Room) Join(ctx context.Context, participantID string, offerSDP string, h PeerHandler) (*Peer, string, error) {
	pub, err := checkOffer(offerSDP)
	if err != nil {
		return nil, "", fmt.Errorf("join room %q: %w", r.name, err)
	}
	if err := r.admissible(participantID); err != nil {
		return nil, "", err
	}
	pc, err := r.e.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		// Nothing of the offer is used yet: the failure is this host's.
		return nil, "", fmt.Errorf("join room %q: %w: %w", r.name, ErrUnavailable, err)
	}
	p := &Peer{
		id:       participantID,
		room:     r,
		e:        r.e,
		pc:       pc,
		log:      r.log.With("participant", participantID),
		pubMid:   pub.mid,
		rtcpSSRC: randomSSRC(),
		events:   newEventQueue(),
		subs:     make(map[*publisher]*leg),
	}
	p.pub = newPublisher(p, r.e.cfg.NACKHistory)
	p.wire()

	answer, err := answerOffer(ctx, pc, offerSDP)
	if err == nil {
		answer, err = forClient(answer)
	}
	if err != nil {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		_ = pc.Close()
		return nil, "", fmt.Errorf("join room %q: %w", r.name, err)
	}

	r.mu.Lock()
	if err := r.admissibleLocked(participantID); err != nil {
		r.mu.Unlock()
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		_ = pc.Close()
		return nil, "", err
	}
	others := make([]*Peer, 0, len(r.peers))
	for _, q := range r.peers {
		others = append(others, q)
	}
	r.peers[participantID] = p
	r.e.counters.peers.Add(1)
	p.mu.Lock()
	p.answered = true
	p.mu.Unlock()
	// A listen-only participant (no publication) is nobody's subscription.
	for _, q := range others {
		if q.pubMid != "" {
			p.queue(q.pub, true)
		}
		if pub.mid != "" {
			q.queue(p.pub, true)
		}
	}
	r.mu.Unlock()

	for _, q := range others {
		q.negotiate()
	}
	p.negotiate()
	if !r.e.goTracked(func() { p.events.run(h) }) {
		_ = p.Close()
		return nil, "", fmt.Errorf("join room %q: %w", r.name, ErrClosed)
	}
	return p, answer, nil
}

func (r *Room) admissible(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.admissibleLocked(id)
}

func (r *Room) admissibleLocked(id string) error {
	if r.closed {
		return fmt.Errorf("join room %q: %w", r.name, ErrClosed)
	}
	if _, ok := r.peers[id]; ok {
		return fmt.Errorf("join room %q as %q: %w", r.name, id, ErrDuplicateParticipant)
	}
	return nil
}

// answerOffer applies the offer and returns the answer once ICE gathering
// is complete, so clients that do not trickle get every candidate.
func answerOffer(ctx context.Context, pc *webrtc.PeerConnection, offer string) (string, error) {
	err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer})
	if err != nil {
		return "", offerError(err)
	}
	answer, err := pc.CreateAnswer(nil)
	if err != nil {
		return "", offerError(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(answer); err != nil {
		if exhausted(err) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return "", fmt.Errorf("set local description: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("gather candidates: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}

// offerError classifies a failure to apply or answer an offer that
// checkOffer accepted. pion reports the host running out of file
// descriptors or memory (it opens a netlink socket per ICE agent) through
// the same calls that reject a bad offer; only the rest is the offer's fault.
func offerError(err error) error {
	if exhausted(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %v", ErrInvalidSDP, err)
}

// exhausted reports whether err is this host running out of a resource.
func exhausted(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// removePeer takes a leaving peer out of the room and has the others
// renegotiate without its track (unless the whole room is closing).
func (r *Room) removePeer(p *Peer) {
	r.mu.Lock()
	if r.peers[p.id] != p {
		r.mu.Unlock()
		return
	}
	delete(r.peers, p.id)
	var others []*Peer
	if !r.closed {
		for _, q := range r.peers {
			q.queue(p.pub, false)
			others = append(others, q)
		}
	}
	r.mu.Unlock()
	for _, q := range others {
		q.negotiate()
	}
}

// Close closes every peer of the room and stops its goroutine. Peers get no
// further handler calls.
func (r *Room) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.done)
	peers := make([]*Peer, 0, len(r.peers))
	for _, p := range r.peers {
		peers = append(peers, p)
	}
	r.mu.Unlock()

	var errs []error
	for _, p := range peers {
		errs = append(errs, p.Close())
	}
	r.e.forgetRoom(r)
	return errors.Join(errs...)
}
