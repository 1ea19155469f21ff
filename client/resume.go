package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
	"github.com/sotto-voice/sotto/token"
)

// This file keeps a call going when the server loses it: each join of the
// room is a session (a transport connection and its end-to-end state), and
// the call's supervisor replaces a session that ended for a reason a new
// join cures with a new one, through the ordinary join path, for up to the
// resume window.

const (
	// rejoinDelay is the first pause before a rejoin; it doubles after
	// each failed attempt up to rejoinMaxDelay. Each pause is drawn
	// between half and all of its value, so that the callers of a room do
	// not come back in lockstep.
	rejoinDelay    = 200 * time.Millisecond
	rejoinMaxDelay = 2 * time.Second
	// rejoinTimeout bounds one rejoin attempt, media connection included.
	rejoinTimeout = 10 * time.Second
	// returnGrace is how long after a rejoin the participants the call
	// knew before have to come back before they are reported gone: they
	// are rejoining too, on their own schedule.
	returnGrace = 10 * time.Second
)

// session is one join of the room: the transport and the end-to-end state
// it carries. It receives what the transport delivers (it is the sink) and
// hands it to the call.
type session struct {
	call *Call
	conn *conn
	e2e  *e2eeState
}

// join makes a session: the prekeys published, the room joined, the media
// connected and the key exchange running. replaces is the server's ID of
// the call's previous join, on a rejoin.
func (c *Call) join(ctx context.Context, replaces string) (*session, error) {
	s := &session{call: c}
	var err error
	s.e2e, err = newE2EE(ctx, c.api, c.token, &c.opts, c.store, c.log)
	if err != nil {
		return nil, err
	}
	s.e2e.sess = s
	s.conn, err = dial(ctx, c.api, c.token, c.claims, &c.opts, s, naming{me: c.self, claim: c.back.claim, replaces: replaces})
	if err != nil {
		s.e2e.close()
		return nil, err
	}
	// Prekey fetches go to the node that runs the room (in a cluster, the
	// one the join found), which knows who is in it.
	s.e2e.api = s.conn.api
	s.conn.goRun(func() { s.e2e.run(s.conn.ctx) })
	return s, nil
}

// stats returns the counters of the session's transport and encryption.
func (s *session) stats() Stats {
	return Stats{
		FramesSent:      s.conn.framesSent.Load(),
		InvalidPackets:  s.conn.invalidPackets.Load(),
		FramesEncrypted: s.e2e.encrypted.Load(),
		FramesDecrypted: s.e2e.decrypted.Load(),
		Dropped:         s.e2e.droppedByReason(),
		Rekeys:          s.e2e.rekeys.Load(),
		KeysReceived:    s.e2e.keysReceived.Load(),
		ICERestarts:     s.conn.iceRestarts.Load(),

		SessionsOneTimeKEM:    s.e2e.sessionsOneTimeKEM.Load(),
		SessionsLastResortKEM: s.e2e.sessionsLastResortKEM.Load(),
	}
}

// run supervises the call: it waits for the session to end, rejoins when
// a new join cures why it ended, and closes the channels when the call is
// over, so that no send can race with a close.
func (c *Call) run(s *session) {
	grace := time.NewTimer(time.Hour)
	grace.Stop()
	var err error
	for {
		select {
		case <-s.conn.done:
		case <-grace.C:
			for _, p := range c.back.giveUp() {
				c.event(ParticipantLeft{Participant: p, Reason: ReasonUnknown})
			}
			continue
		}
		grace.Stop()
		err = s.conn.endErr()
		s.e2e.close()
		c.mu.Lock()
		c.retired = c.retired.add(s.stats())
		c.sess = nil
		leaving := c.leaving
		c.mu.Unlock()
		if leaving || !c.resumable(err) {
			break
		}
		lost := time.Now()
		c.back.expect(s.conn.roster.present())
		c.log.Info("call lost; rejoining", "err", err)
		c.event(Reconnecting{Cause: err})
		if s, err = c.rejoin(s.conn.self.ID, err, lost); err != nil {
			break
		}
		c.rejoins.Add(1)
		after := time.Since(lost)
		c.log.Info("call rejoined", "after", after.Round(time.Millisecond))
		c.event(Reconnected{After: after})
		grace.Reset(returnGrace)
	}
	c.finish(err)
}

// finish ends the call with err and closes its channels.
func (c *Call) finish(err error) {
	c.cancel()
	c.store.Destroy()
	c.err = err
	c.event(Closed{Err: err})
	close(c.frames)
	close(c.events)
	close(c.envelopes)
	close(c.chat.messages)
	close(c.done)
}

// resumable reports whether a session that ended with err is worth a new
// join: everything but leaving and the server's word that the caller must
// not come back (replaced by another join, the room ended).
func (c *Call) resumable(err error) bool {
	if c.opts.ResumeWindow < 0 || errors.Is(err, ErrLeft) || errors.Is(err, ErrMovedToAnotherDevice) {
		// Rejoining after a move would take the call back from the other
		// device, which would do the same in turn.
		return false
	}
	var ce *ClosedError
	if errors.As(err, &ce) {
		switch ce.Reason {
		case api.ReasonShutdown, api.ReasonMoved, api.ReasonDropped, api.ReasonConnectionLost, api.ReasonICEFailed, api.ReasonTimeout:
			return true
		default:
			return false
		}
	}
	return true
}

// rejoin joins the room again, in place of the join with server ID
// replaces, after the session ended with cause at lost, with exponential
// backoff and jitter (after the server's retry hint, if it gave one),
// until it succeeds, the resume window runs out, the token expires, the
// server refuses for good or the caller leaves.
func (c *Call) rejoin(replaces string, cause error, lost time.Time) (*session, error) {
	window := c.opts.ResumeWindow
	if window == 0 {
		window = DefaultResumeWindow
	}
	deadline := lost.Add(window)
	delay := rejoinDelay
	pause := delay/2 + rand.N(delay/2)
	var ce *ClosedError
	if errors.As(cause, &ce) && ce.RetryAfter > 0 {
		// Spread the room over one more hint's worth.
		pause = ce.RetryAfter + rand.N(ce.RetryAfter)
	}
	var last error
	for {
		if time.Now().Add(pause).After(deadline) {
			if last == nil {
				return nil, fmt.Errorf("client: call lost (%w) and not rejoined within %v", cause, window)
			}
			return nil, fmt.Errorf("client: call lost (%w) and not rejoined within %v: %w", cause, window, last)
		}
		if !c.claims.Expiry.IsZero() && time.Now().Add(pause).After(c.claims.Expiry) {
			return nil, fmt.Errorf("client: call lost (%w) and the token expired: %w", cause, token.ErrExpired)
		}
		t := time.NewTimer(pause)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil, ErrLeft
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, rejoinTimeout)
		s, err := c.join(ctx, replaces)
		cancel()
		if err == nil {
			c.mu.Lock()
			leaving := c.leaving
			if !leaving {
				c.sess = s
			}
			c.mu.Unlock()
			if leaving {
				_ = s.conn.leave()
				s.e2e.close()
				return nil, ErrLeft
			}
			return s, nil
		}
		if c.ctx.Err() != nil {
			return nil, ErrLeft
		}
		if final(err) {
			return nil, fmt.Errorf("client: call lost (%w) and rejoin refused: %w", cause, err)
		}
		c.log.Debug("rejoin failed; retrying", "err", err)
		last = err
		delay = min(2*delay, rejoinMaxDelay)
		pause = delay/2 + rand.N(delay/2)
	}
}

// final reports whether a failed join will fail again whatever the wait:
// the token or the room will not do (expired, for another room, ended).
// Anything else (the server still starting, busy or full, the network)
// may pass later.
func final(err error) bool {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return false
	}
	switch ae.Code {
	case api.CodeUnauthorized, api.CodeTokenExpired, api.CodeWrongRoom, api.CodeInvalidName,
		api.CodeCallEnded, api.CodeForbidden, api.CodeInvalidSDP, api.CodeUnsupportedCodec,
		api.CodeBadRequest, api.CodeInvalidJSON:
		return true
	}
	return false
}

// The session's sink methods: what the transport delivers enters the
// public API here.

func (s *session) frame(from api.Participant, seq uint16, ts uint32, payload []byte, received time.Time) {
	data, ok := s.e2e.open(from, payload, received)
	if !ok {
		return
	}
	c := s.call
	f := Frame{From: from, Data: data, Seq: seq, Timestamp: ts, Received: received}
	select {
	case c.frames <- f:
		c.framesReceived.Add(1)
	default:
		c.framesDropped.Add(1)
	}
}

func (s *session) envelope(from api.Participant, data []byte) {
	if e2ee.IsPayload(data) {
		s.e2e.envelopeReceived(from, data)
		return
	}
	c := s.call
	select {
	case c.envelopes <- Envelope{From: from, Data: data}:
	default:
		c.envelopesDropped.Add(1)
	}
}

func (s *session) admitted(present []api.Participant) { s.e2e.noteAdmitted(present) }

// The application hears of a participant before any encryption event
// about it, which the worker may emit as soon as the work is queued. One
// the call knew before it rejoined is not news.
func (s *session) joined(p api.Participant, returning bool) {
	if !returning {
		s.call.event(ParticipantJoined{Participant: p})
		if prev, ok := s.call.switches.joined(p); ok {
			s.call.event(DeviceSwitched{Participant: p, Previous: prev})
		}
	}
	if !p.Encrypted() {
		s.call.event(PeerNotEncrypted{Participant: p})
	}
	s.e2e.participantJoined(p)
}

func (s *session) left(p api.Participant, reason string) {
	s.e2e.participantLeft(p)
	if reason == api.ReasonShutdown || reason == api.ReasonMoved {
		// The server is stopping (or another node runs the room now) and
		// tells everyone in turn: the others rejoin as this call does.
		s.call.back.expect([]api.Participant{p})
		return
	}
	s.call.event(ParticipantLeft{Participant: p, Reason: reason})
	s.call.switches.left(p, reason)
}

func (s *session) prekeysLow() { s.e2e.prekeysLow() }

func (s *session) reconnected() { s.e2e.resendKeys() }

func (s *session) speaking(p api.Participant, on bool) {
	s.call.event(Speaking{Participant: p, Speaking: on})
}

func (s *session) serverError(e *api.Error) { s.call.event(ServerError{Err: e}) }

func (s *session) event(e Event) { s.call.event(e) }

func (s *session) doorChanged(door, by string) { s.call.doorChanged(door, by) }

func (s *session) knocksWaiting(pending []api.Knock) { s.call.knocksWaiting(pending) }

func (s *session) knockUpdate(k api.Knock) { s.call.knockUpdate(k) }

// returning holds the participants a call knew when it lost its join, by
// identity (one participant per identity in a room), until they are back
// or given up.
type returning struct {
	mu         sync.Mutex
	byIdentity map[string]api.Participant
}

func newReturning() *returning {
	return &returning{byIdentity: make(map[string]api.Participant)}
}

// expect adds ps to the participants expected back.
func (r *returning) expect(ps []api.Participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		if p.Identity != "" {
			r.byIdentity[p.Identity] = p
		}
	}
}

// claim returns, once, the participant expected back with identity.
func (r *returning) claim(identity string) (api.Participant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.byIdentity[identity]
	delete(r.byIdentity, identity)
	return p, ok
}

// list returns the participants still expected back.
func (r *returning) list() []api.Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.Participant, 0, len(r.byIdentity))
	for _, p := range r.byIdentity {
		out = append(out, p)
	}
	return out
}

// giveUp forgets the participants still expected back and returns them,
// ordered by ID.
func (r *returning) giveUp() []api.Participant {
	out := r.list()
	r.mu.Lock()
	clear(r.byIdentity)
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
