package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media"
)

// writeTimeout bounds one WebSocket write; a client that cannot take a
// message in this time is treated as disconnected.
const writeTimeout = 10 * time.Second

// offerTimeout bounds the answer to a client's offer, ICE gathering
// included.
const offerTimeout = 5 * time.Second

// hardReadFactor: messages up to MaxMessageBytes*hardReadFactor are read and
// discarded with a message_too_large error; longer ones close the stream
// with status 1009.
const hardReadFactor = 4

// stream is one event-stream WebSocket of a participant.
type stream struct {
	conn       *websocket.Conn
	ctx        context.Context // the whole stream: reader, writer, pinger
	cancel     context.CancelFunc
	writeCtx   context.Context // the writer alone, stopped when a newer stream takes over
	stopWriter context.CancelFunc
	done       chan struct{} // closed when the writer has stopped
}

// handleEvents serves GET /v1/rooms/{room}/participants/{id}/events.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	p, apiErr := s.lookup(r.PathValue("room"), r.PathValue("id"), r.URL.Query().Get("session"))
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: s.originPatterns()})
	if err != nil {
		s.log.Debug("event stream upgrade failed", "participant", p.id, "err", err)
		return
	}
	// Every path below has finished with the connection when this runs.
	defer conn.CloseNow()
	conn.SetReadLimit(int64(s.cfg.MaxMessageBytes) * hardReadFactor)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := &stream{conn: conn, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	st.writeCtx, st.stopWriter = context.WithCancel(ctx)

	welcome, prev, ok := s.attach(p, st)
	if !ok {
		close(st.done)
		conn.Close(websocket.StatusGoingAway, "session closed")
		return
	}
	defer s.detach(p, st)
	if prev != nil {
		// The newer connection wins; the old writer must stop before this
		// one starts so queued messages keep their order. The old handler
		// ends once the closing handshake, bounded by the library, is over.
		prev.stopWriter()
		<-prev.done
		go prev.conn.Close(websocket.StatusPolicyViolation, "replaced by a newer connection")
	}
	wctx, wcancel := context.WithTimeout(st.writeCtx, writeTimeout)
	err = conn.Write(wctx, websocket.MessageText, welcome)
	wcancel()
	if err != nil {
		close(st.done)
		return
	}
	go s.writeLoop(st, p.out)
	go s.pingLoop(st)
	s.readLoop(st, p)
	cancel()
	<-st.done
}

// attach makes st p's current stream and returns the welcome message and
// the stream it replaces. ok is false when p is gone or the server stops.
func (s *Server) attach(p *participant, st *stream) (welcome []byte, prev *stream, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.removed || s.closing {
		return nil, nil, false
	}
	prev = p.stream
	p.stream = st
	p.dropGen++ // disarms any pending drop
	if p.dropTimer != nil {
		p.dropTimer.Stop()
	}
	if p.lostTimer != nil {
		p.lostTimer.Stop()
	}
	s.streams[st] = struct{}{}
	s.wg.Add(1)
	w := api.Welcome{
		Type:          api.TypeWelcome,
		ParticipantID: p.id,
		Participants:  p.room.activeOthers(p),
		Door:          s.doorLocked(p.room.name),
		Knocks:        s.pendingKnocksLocked(p),
	}
	return encode(w), prev, true
}

// detach forgets st; if it was p's current stream the drop countdown starts.
func (s *Server) detach(p *participant, st *stream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.stream == st {
		p.stream = nil
		if !p.removed {
			p.armDropTimerLocked()
			if p.silent {
				p.armLostTimerLocked()
			}
		}
	}
	delete(s.streams, st)
	s.wg.Done()
}

// writeLoop is the only writer of st: it drains p's outbox in order and, once
// the outbox is closed and empty, closes the WebSocket.
func (s *Server) writeLoop(st *stream, out *outbox) {
	defer close(st.done)
	for st.writeCtx.Err() == nil {
		msg, ok, closed := out.pop()
		if closed {
			_ = st.conn.Close(websocket.StatusNormalClosure, "session closed")
			return
		}
		if !ok {
			select {
			case <-out.notify:
			case <-st.writeCtx.Done():
			}
			continue
		}
		ctx, cancel := context.WithTimeout(st.writeCtx, writeTimeout)
		err := st.conn.Write(ctx, websocket.MessageText, msg)
		cancel()
		if err != nil {
			out.unpop(msg)
			st.cancel()
			return
		}
	}
}

// pingLoop keeps the connection alive and detects a silent peer.
func (s *Server) pingLoop(st *stream) {
	t := time.NewTicker(s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-st.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(st.ctx, s.cfg.PingInterval)
			err := st.conn.Ping(ctx)
			cancel()
			if err != nil {
				st.cancel()
				_ = st.conn.CloseNow()
				return
			}
		}
	}
}

// readLoop handles client messages until the connection ends.
func (s *Server) readLoop(st *stream, p *participant) {
	limit := s.cfg.MaxMessageBytes
	for {
		typ, r, err := st.conn.Reader(st.ctx)
		if err != nil {
			return
		}
		data, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
		if err != nil {
			return
		}
		if len(data) > limit {
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
			p.sendError(api.CodeMessageTooLarge, fmt.Sprintf("message larger than %d bytes, ignored", limit), 0)
			continue
		}
		if typ != websocket.MessageText {
			p.sendError(api.CodeInvalidJSON, "messages must be JSON text frames", 0)
			continue
		}
		s.handleMessage(p, data)
	}
}

// handleMessage acts on one client message.
func (s *Server) handleMessage(p *participant, data []byte) {
	var m api.Message
	if err := json.Unmarshal(data, &m); err != nil {
		p.sendError(api.CodeInvalidJSON, "message is not a JSON object: "+err.Error(), 0)
		return
	}
	switch m.Type {
	case api.TypeOffer:
		var o api.SDP
		if !decodeMessage(p, m.Raw, &o) {
			return
		}
		if o.SDP == "" {
			p.sendError(api.CodeBadRequest, "offer without sdp", 0)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), offerTimeout)
		err := p.peer.AnswerOffer(ctx, o.SDP)
		cancel()
		switch {
		case errors.Is(err, media.ErrOfferCollision):
			p.sendError(api.CodeOfferCollision, "the server's offer awaits your answer: answer it, then offer again", 0)
		case err != nil:
			p.sendError(api.CodeNegotiation, "offer rejected: "+err.Error(), 0)
		}
	case api.TypeAnswer:
		var a api.SDP
		if !decodeMessage(p, m.Raw, &a) {
			return
		}
		if a.SDP == "" {
			p.sendError(api.CodeBadRequest, "answer without sdp", 0)
			return
		}
		if err := p.peer.SetAnswer(a.SDP); err != nil {
			p.sendError(api.CodeNegotiation, "answer rejected: "+err.Error(), 0)
		}
	case api.TypeCandidate:
		var c api.Candidate
		if !decodeMessage(p, m.Raw, &c) {
			return
		}
		if err := p.peer.AddCandidate(c.Candidate); err != nil {
			p.sendError(api.CodeNegotiation, "candidate rejected: "+err.Error(), 0)
		}
	case api.TypeEnvelope:
		var e api.Envelope
		if !decodeMessage(p, m.Raw, &e) {
			return
		}
		s.relay(p, e)
	case api.TypeLeave:
		s.remove(p, api.ReasonLeft)
	case "":
		p.sendError(api.CodeBadRequest, "message has no type", 0)
	default:
		p.sendError(api.CodeUnknownMessageType, fmt.Sprintf("unknown message type %q", m.Type), 0)
	}
}

// decodeMessage decodes raw into v, answering p with an error if it cannot.
func decodeMessage(p *participant, raw []byte, v any) bool {
	err := json.Unmarshal(raw, v)
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		p.sendError(api.CodeBadRequest, fmt.Sprintf("field %q: wrong type", typeErr.Field), 0)
	} else {
		p.sendError(api.CodeBadRequest, "malformed message: "+err.Error(), 0)
	}
	return false
}

// relay forwards an envelope from p to another participant of p's room,
// stamped with the sender and otherwise untouched.
func (s *Server) relay(from *participant, e api.Envelope) {
	if len(e.Data) > s.cfg.MaxEnvelopeBytes {
		s.refuseEnvelope(from, api.CodeEnvelopeTooLarge, fmt.Sprintf("envelope data larger than %d bytes", s.cfg.MaxEnvelopeBytes), e.ID)
		return
	}
	if refusal, ok := from.sent.allow(s.now(), len(e.Data)); !ok {
		s.refuseEnvelope(from, api.CodeEnvelopeRateLimited, refusal, e.ID)
		return
	}
	msg := encode(api.Envelope{Type: api.TypeEnvelope, From: from.id, Data: e.Data, ID: e.ID})
	s.mu.Lock()
	to := from.room.participants[e.To]
	known := to != nil && to.active && !from.removed
	delivered := known && to.out.push(msg, s.cfg.QueueLength/2)
	s.mu.Unlock()
	switch {
	case !known:
		s.refuseEnvelope(from, api.CodeUnknownRecipient, fmt.Sprintf("no participant %q in this room", e.To), e.ID)
	case !delivered:
		s.refuseEnvelope(from, api.CodeRecipientBusy, fmt.Sprintf("participant %q has too many undelivered messages", e.To), e.ID)
	default:
		s.counters.envelopesRelayed.Add(1)
	}
}
