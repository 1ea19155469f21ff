package media

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/media/transport"
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
	ticked []*Peer // the engine's tick's copy of peers, reused
}

func newRoom(e *Engine, name string, onSpeaking func(string, bool)) *Room {
	return &Room{
		e:          e,
		name:       name,
		log:        e.log.With("room", name),
		onSpeaking: onSpeaking,
		peers:      make(map[string]*Peer),
	}
}

// tick is the room's share of the engine's periodic work at time now, in
// tick n: voice activity every tick, RTCP reports every reportTick.
func (r *Room) tick(now time.Time, n int) {
	peers := r.appendPeers(r.ticked[:0])
	for _, p := range peers {
		if changed, speaking := p.pub.speech.evaluate(now.UnixNano()); changed && r.onSpeaking != nil {
			r.onSpeaking(p.id, speaking)
		}
		if n%reportTick == 0 {
			p.sendReports(now)
		}
	}
	clear(peers) // hold no closed peer until the next tick
	r.ticked = peers[:0]
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
// ErrUnsupportedCodec for bad offers. The answer carries every candidate
// of the relay. Once joined, the participant gets the other participants'
// audio through h.Offer, and they get its audio the same way. The answer
// is made at once: ctx only stops a join whose request is gone.
func (r *Room) Join(ctx context.Context, participantID string, offerSDP string, h PeerHandler) (*Peer, string, error) {
	rd, pub, err := checkOffer(offerSDP)
	if err != nil {
		return nil, "", fmt.Errorf("join room %q: %w", r.name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, "", fmt.Errorf("join room %q: %w", r.name, err)
	}
	if err := r.admissible(participantID); err != nil {
		return nil, "", err
	}
	p, answer, err := r.newPeer(participantID, rd, pub)
	if err != nil {
		return nil, "", fmt.Errorf("join room %q: %w", r.name, err)
	}

	r.mu.Lock()
	if err := r.admissibleLocked(participantID); err != nil {
		r.mu.Unlock()
		p.abandon()
		return nil, "", err
	}
	others := make([]*Peer, 0, len(r.peers))
	for _, q := range r.peers {
		others = append(others, q)
	}
	r.peers[participantID] = p
	r.e.counters.peers.Add(1)
	// A listen-only participant (no publication) is nobody's subscription.
	for _, q := range others {
		if q.pub.publishes {
			p.queue(q.pub, true)
		}
		if p.pub.publishes {
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

// newPeer starts the participant's transport session and answers its
// offer.
func (r *Room) newPeer(participantID string, rd *remoteDescription, pub *remoteMLine) (*Peer, string, error) {
	n := newNegotiation(rd)
	p := &Peer{
		id:       participantID,
		room:     r,
		e:        r.e,
		neg:      n,
		log:      r.log.With("participant", participantID),
		rtcpSSRC: randomSSRC(),
		events:   newEventQueue(),
		subs:     make(map[*publisher]*leg),
	}
	p.pub = newPublisher(p, r.e.cfg.NACKHistory)
	if pub != nil {
		p.pub.publishes, p.pub.pt = true, uint8(pub.opusPT)
		p.pub.ssrc.Store(pub.ssrc)
		p.pub.levelID.Store(uint32(pub.levelID))
	}
	var err error
	p.sess, err = r.e.tr.NewSession(transport.SessionConfig{
		Local:        n.local,
		Fingerprints: rd.fingerprints,
		Role:         n.role(),
		Cryptex:      n.cryptex,
		Logger:       p.log,
	}, (*sessionHandler)(p))
	if err != nil {
		if errors.Is(err, transport.ErrClosed) {
			return nil, "", ErrClosed
		}
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return p, n.describe(false, r.e.tr.Fingerprint(), r.e.candidates), nil
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
