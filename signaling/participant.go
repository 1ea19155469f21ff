package signaling

import (
	"context"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media"
)

// participant is one join of an identity to a room. The immutable fields are
// set before it is shared; the rest is guarded by Server.mu.
type participant struct {
	srv      *Server
	room     *room
	id       string
	identity string
	e2ee     string // declared end-to-end encryption, relayed as is
	replaces string // the participant this join takes over on the same device, if any
	session  string
	out      *outbox
	sent     envelopeLimit

	active    bool // media answered; announced and visible to others
	removed   bool
	failed    bool // media reported failure before activation; the join fails
	peer      *media.Peer
	stream    *stream // current event stream, nil when disconnected
	dropTimer *time.Timer
	dropGen   uint64 // invalidates timers armed for an earlier disconnection

	// silent: its media fell silent (Connectivity) and has not come back.
	// While it is, the event stream must prove the caller alive.
	silent    bool
	lostTimer *time.Timer // silent media and no stream: runs out after ProbeTimeout
}

func (p *participant) info() api.Participant {
	return api.Participant{ID: p.id, Identity: p.identity, E2EE: p.e2ee}
}

// sendLocked queues a control message for p. A participant whose queue is
// full of undelivered control messages cannot catch up; it is dropped.
func (s *Server) sendLocked(p *participant, msg []byte) {
	if p.out.push(msg, s.cfg.QueueLength) || p.removed || !p.active {
		return
	}
	s.log.Warn("event queue full, dropping participant", "room", p.room.name, "participant", p.id)
	// Removing needs s.mu, held by the caller, and may close media.
	go s.remove(p, api.ReasonDropped)
}

// send is sendLocked for callers that do not hold s.mu.
func (s *Server) send(p *participant, msg []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendLocked(p, msg)
}

func (p *participant) sendError(code api.ErrorCode, msg string, ref uint64) {
	p.srv.send(p, encode(api.ErrorEvent{Type: api.TypeError, Error: api.Error{Code: code, Message: msg}, Ref: ref}))
}

// armDropTimerLocked starts the countdown after which p, still without an
// event stream, is dropped.
func (p *participant) armDropTimerLocked() {
	p.dropGen++
	gen := p.dropGen
	p.dropTimer = time.AfterFunc(p.srv.cfg.DropTimeout, func() {
		s := p.srv
		s.mu.Lock()
		var c cleanup
		if gen == p.dropGen && p.stream == nil && !p.removed {
			c = s.removeLocked(p, api.ReasonDropped)
		}
		s.mu.Unlock()
		c.run(s.log)
	})
}

// Offer implements media.PeerHandler: a server-initiated renegotiation.
func (p *participant) Offer(sdp string) {
	p.srv.send(p, encode(api.SDP{Type: api.TypeOffer, SDP: sdp}))
}

// Answer implements media.PeerHandler: the answer to the client's offer.
func (p *participant) Answer(sdp string) {
	p.srv.send(p, encode(api.SDP{Type: api.TypeAnswer, SDP: sdp}))
}

// Connectivity implements media.PeerHandler: the client's media fell
// silent or is heard again. A silent caller with an event stream is asked
// to answer a ping; one without has ProbeTimeout to reconnect it. A caller
// that does neither froze or vanished, and is dropped.
func (p *participant) Connectivity(connected bool) {
	s := p.srv
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.removed {
		return
	}
	p.silent = !connected
	switch {
	case connected:
		if p.lostTimer != nil {
			p.lostTimer.Stop()
		}
	case p.stream == nil:
		p.armLostTimerLocked()
	default:
		st := p.stream
		go s.probe(p, st)
	}
}

// probe pings a silent caller's event stream; a caller that does not
// answer within ProbeTimeout is dropped with reason timeout.
func (s *Server) probe(p *participant, st *stream) {
	ctx, cancel := context.WithTimeout(st.ctx, s.cfg.ProbeTimeout)
	err := st.conn.Ping(ctx)
	cancel()
	if err == nil || st.ctx.Err() != nil {
		// Alive, or this stream ended on its own: detach takes over.
		return
	}
	s.mu.Lock()
	var c cleanup
	if p.silent && p.stream == st && !p.removed {
		s.log.Info("caller silent on media and event stream", "room", p.room.name, "participant", p.id)
		c = s.removeLocked(p, api.ReasonTimeout)
	}
	s.mu.Unlock()
	c.run(s.log)
	st.cancel()
	_ = st.conn.CloseNow()
}

// armLostTimerLocked starts the countdown after which p, with silent media
// and no event stream, is dropped with reason connection_lost.
func (p *participant) armLostTimerLocked() {
	if p.lostTimer != nil {
		p.lostTimer.Stop()
	}
	p.lostTimer = time.AfterFunc(p.srv.cfg.ProbeTimeout, func() {
		s := p.srv
		s.mu.Lock()
		var c cleanup
		if p.silent && p.stream == nil && !p.removed {
			c = s.removeLocked(p, api.ReasonConnectionLost)
		}
		s.mu.Unlock()
		c.run(s.log)
	})
}

// Candidate implements media.PeerHandler: a trickled server candidate.
func (p *participant) Candidate(c api.ICECandidate) {
	p.srv.send(p, encode(api.Candidate{Type: api.TypeCandidate, Candidate: c}))
}

// Failed implements media.PeerHandler: the media connection is lost.
func (p *participant) Failed(reason string) {
	s := p.srv
	s.mu.Lock()
	var c cleanup
	if p.active {
		left := api.ReasonICEFailed
		if p.stream == nil {
			// The event stream was gone already: the caller lost its whole
			// connection, or gave up reconnecting and closed its media
			// (the SDK does after its reconnect window, which ends about
			// when the drop timeout does). Its ICE did not fail as such.
			left = api.ReasonConnectionLost
		}
		s.log.Info("media failed", "room", p.room.name, "participant", p.id, "reason", left, "detail", reason)
		c = s.removeLocked(p, left)
	} else {
		p.failed = true
	}
	s.mu.Unlock()
	c.run(s.log)
}
