package signaling

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"regexp"
	"strings"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/token"
)

// e2eePattern is the shape of a declared end-to-end encryption: a name the
// server relays without interpreting.
var e2eePattern = regexp.MustCompile(`^[a-z0-9._-]{1,32}$`)

// handleJoin serves POST /v1/rooms/{room}/join.
func (s *Server) handleJoin(w http.ResponseWriter, r *http.Request) {
	roomName := r.PathValue("room")
	if !token.ValidRoom(roomName) {
		s.refuseJoin(w, errorf(api.CodeInvalidName, "room name must be 1-64 of A-Z a-z 0-9 _ -"))
		return
	}
	claims, apiErr := s.bearer(r, roomName)
	if apiErr != nil {
		s.refuseJoin(w, apiErr)
		return
	}
	if s.place(w, r, roomName) {
		return
	}
	var req api.JoinRequest
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &req); apiErr != nil {
		s.refuseJoin(w, apiErr)
		return
	}
	if strings.TrimSpace(req.SDP) == "" {
		s.refuseJoin(w, errorf(api.CodeBadRequest, "sdp (the client's offer) is required"))
		return
	}
	if req.E2EE != "" && !e2eePattern.MatchString(req.E2EE) {
		s.refuseJoin(w, errorf(api.CodeBadRequest, "e2ee must be 1-32 of a-z 0-9 . _ -, such as %q", api.E2EESotto1))
		return
	}
	p, apiErr := s.reserve(roomName, claims.Identity, req.E2EE, req.Replaces)
	if apiErr != nil {
		s.refuseJoin(w, apiErr)
		return
	}
	peer, answer, err := p.room.media.Join(r.Context(), p.id, req.SDP, p)
	if err != nil {
		s.remove(p, "")
		s.refuseJoin(w, s.mediaError(err))
		return
	}
	others, apiErr := s.activate(p, peer)
	if apiErr != nil {
		s.refuseJoin(w, apiErr)
		return
	}
	s.counters.joins.Add(1)
	writeJSON(w, http.StatusOK, api.JoinResponse{
		ParticipantID: p.id,
		Identity:      p.identity,
		Room:          roomName,
		SDP:           answer,
		Session:       p.session,
		EventsURL:     api.Version + "/rooms/" + roomName + "/participants/" + p.id + "/events",
		NodeURL:       s.nodeURL(),
		ICEServers:    s.iceServers(p.identity),
		Participants:  others,
	})
}

func (s *Server) mediaError(err error) *api.Error {
	switch {
	case errors.Is(err, media.ErrUnsupportedCodec):
		return errorf(api.CodeUnsupportedCodec, "the offer has no Opus audio: %v", err)
	case errors.Is(err, media.ErrInvalidSDP):
		return errorf(api.CodeInvalidSDP, "the offer cannot be used: %v", err)
	case errors.Is(err, media.ErrUnavailable):
		s.log.Warn("media relay cannot take a join", "err", err)
		return errorf(api.CodeRetry, "the media relay cannot take a join now; retry")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errorf(api.CodeInternal, "join abandoned: %v", err)
	default:
		s.log.Error("media join failed", "err", err)
		return errorf(api.CodeInternal, "media relay could not answer the offer")
	}
}

// lookup finds an announced participant and checks its session secret.
func (s *Server) lookup(roomName, id, session string) (*participant, *api.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var p *participant
	if rm := s.rooms[roomName]; rm != nil {
		p = rm.participants[id]
	}
	if p == nil || !p.active || p.removed {
		return nil, errorf(api.CodeNotFound, "no participant %q in room %q", id, roomName)
	}
	if session == "" || subtle.ConstantTimeCompare([]byte(session), []byte(p.session)) != 1 {
		return nil, errorf(api.CodeUnauthorized, "missing or wrong session")
	}
	return p, nil
}

// handleLeave serves DELETE /v1/rooms/{room}/participants/{id}.
func (s *Server) handleLeave(w http.ResponseWriter, r *http.Request) {
	session, _ := authValue(r, "Session")
	p, apiErr := s.lookup(r.PathValue("room"), r.PathValue("id"), session)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	s.remove(p, api.ReasonLeft)
	w.WriteHeader(http.StatusNoContent)
}
