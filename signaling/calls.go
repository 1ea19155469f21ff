package signaling

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/token"
)

// Private calls. POST /v1/calls creates a room with an unguessable name and
// gives its creator a token and an invite. The invite is the capability to
// join: POST /v1/invites/redeem exchanges it for a token of a fresh identity.
// Only the creator may end the call for everyone (POST /v1/rooms/{room}/end).

// Defaults for the zero values of Config.InviteTTL and Config.CallsPerMinute.
const (
	DefaultInviteTTL      = time.Hour
	DefaultCallsPerMinute = 10
)

const (
	// callTokenTTL is the life of tokens handed out for private calls: long
	// enough for a long call, whose prekey fetches still need the token.
	callTokenTTL = 12 * time.Hour
	// pendingCallTTL is how long a created call waits for its creator to
	// join before it is forgotten and stops counting against MaxRooms.
	pendingCallTTL = 2 * time.Minute
	// nameSuffixLen random base32 characters end every call identity, so
	// nobody can pick a name that replaces another participant.
	nameSuffixLen = 8
)

// namePattern is what a person may choose as the name part of a call
// identity: the identity rules minus '@', short enough for the suffix.
var namePattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,40}$`)

// inviteError maps a token.VerifyInvite error to its API error.
func inviteError(err error) *api.Error {
	if errors.Is(err, token.ErrExpired) {
		return errorf(api.CodeInviteExpired, "this invite has expired; ask for a new one")
	}
	return errorf(api.CodeInviteInvalid, "this invite is not valid")
}

// callIdentity turns a chosen name into a fresh identity: the name, a dash
// and a random suffix (at most 49 characters of the identity alphabet, so
// always a valid identity).
func callIdentity(name string) (string, *api.Error) {
	name = strings.TrimSpace(name)
	if !namePattern.MatchString(name) {
		return "", errorf(api.CodeInvalidName, "name must be 1-40 of A-Z a-z 0-9 . _ -")
	}
	return name + "-" + randomID()[:nameSuffixLen], nil
}

// call is a room created through POST /v1/calls. Guarded by Server.mu.
type call struct {
	creator string
	created time.Time
	started bool      // its room has existed
	ended   bool      // the creator ended it; joins are refused
	forget  time.Time // when the entry (or the tombstone of an ended call) is dropped
}

// calls is the registry of private calls plus the per-IP limiter of the
// routes that mint tokens without one.
type calls struct {
	ttl     time.Duration // invite life
	byRoom  map[string]*call
	limiter *ipLimiter
}

func newCalls(inviteTTL time.Duration, perMinute int) *calls {
	return &calls{
		ttl:     inviteTTL,
		byRoom:  make(map[string]*call),
		limiter: newIPLimiter(float64(perMinute)/60, float64(perMinute)),
	}
}

// sweepCallsLocked forgets calls whose creator never joined in time and entries
// whose every token and invite has expired.
func (s *Server) sweepCallsLocked(now time.Time) {
	for name, c := range s.calls.byRoom {
		if !c.started && s.rooms[name] != nil {
			c.started = true
		}
		if now.After(c.forget) || (!c.started && !c.ended && now.Sub(c.created) > pendingCallTTL) {
			delete(s.calls.byRoom, name)
		}
	}
}

// pendingCallsLocked counts created calls whose creator has not joined
// yet; they hold a room slot. (A started call counts as a room while it
// has one.)
func (s *Server) pendingCallsLocked() int {
	n := 0
	for name, c := range s.calls.byRoom {
		if !c.started && !c.ended && s.rooms[name] == nil {
			n++
		}
	}
	return n
}

func (s *Server) callEndedLocked(room string) bool {
	c := s.calls.byRoom[room]
	return c != nil && c.ended
}

// handleCreateCall serves POST /v1/calls.
func (s *Server) handleCreateCall(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r) {
		return
	}
	var req api.CreateCallRequest
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &req); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	identity, apiErr := callIdentity(req.Name)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	room := randomSecret() // 256 bits, base64url: a valid, unguessable room name
	now := s.now()
	expiry := now.Add(s.calls.ttl)
	tok, err := token.Mint(s.cfg.Secret, token.Claims{Room: room, Identity: identity, Expiry: now.Add(callTokenTTL)})
	if err != nil {
		writeError(w, errorf(api.CodeInternal, "mint token: %v", err))
		return
	}
	invite, err := token.MintInvite(s.cfg.Secret, token.InviteClaims{Room: room, Inviter: identity, Expiry: expiry})
	if err != nil {
		writeError(w, errorf(api.CodeInternal, "mint invite: %v", err))
		return
	}

	s.mu.Lock()
	s.sweepCallsLocked(now)
	switch {
	case s.closing:
		apiErr = errorf(api.CodeShuttingDown, "server is shutting down")
	case len(s.rooms)+s.pendingCallsLocked() >= s.cfg.MaxRooms:
		apiErr = errorf(api.CodeTooManyRooms, "server has %d rooms, its limit", s.cfg.MaxRooms)
	default:
		// Tokens redeemed at the last moment of the invite live callTokenTTL
		// more; the entry outlives them so an ended call stays ended.
		s.calls.byRoom[room] = &call{creator: identity, created: now, forget: expiry.Add(callTokenTTL)}
	}
	s.mu.Unlock()
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	s.log.Info("call created", "room", room, "creator", identity)
	writeJSON(w, http.StatusCreated, api.CreateCallResponse{
		Room: room, Identity: identity, Token: tok, Invite: invite, InviteExpires: expiry.Unix(),
	})
}

// checkInvite verifies an invite and that its call still runs.
func (s *Server) checkInvite(invite string) (token.InviteClaims, *api.Error) {
	c, err := token.VerifyInvite(s.cfg.Secret, invite, s.now())
	if err != nil {
		return c, inviteError(err)
	}
	s.mu.Lock()
	ended := s.callEndedLocked(c.Room)
	s.mu.Unlock()
	if ended {
		return c, errorf(api.CodeCallEnded, "this call has ended")
	}
	return c, nil
}

// handleInspectInvite serves POST /v1/invites/inspect. It only reads: an
// invitee who declines leaves no trace.
func (s *Server) handleInspectInvite(w http.ResponseWriter, r *http.Request) {
	var req api.InviteRequest
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &req); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	c, apiErr := s.checkInvite(req.Invite)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, api.InviteInfo{Inviter: c.Inviter, Expires: c.Expiry.Unix()})
}

// handleRedeemInvite serves POST /v1/invites/redeem.
func (s *Server) handleRedeemInvite(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r) {
		return
	}
	var req api.RedeemInviteRequest
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &req); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	c, apiErr := s.checkInvite(req.Invite)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	identity, apiErr := callIdentity(req.Name)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	tok, err := token.Mint(s.cfg.Secret, token.Claims{Room: c.Room, Identity: identity, Expiry: s.now().Add(callTokenTTL)})
	if err != nil {
		writeError(w, errorf(api.CodeInternal, "mint token: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, api.RedeemInviteResponse{Room: c.Room, Identity: identity, Token: tok, Inviter: c.Inviter})
}

// handleEndCall serves POST /v1/rooms/{room}/end: the creator's token ends
// the call for everyone, and the room refuses joins from then on.
func (s *Server) handleEndCall(w http.ResponseWriter, r *http.Request) {
	roomName := r.PathValue("room")
	if !token.ValidRoom(roomName) {
		writeError(w, errorf(api.CodeInvalidName, "room name must be 1-64 of A-Z a-z 0-9 _ -"))
		return
	}
	claims, apiErr := s.bearer(r, roomName)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	s.mu.Lock()
	c := s.calls.byRoom[roomName]
	if c == nil || c.creator != claims.Identity {
		s.mu.Unlock()
		writeError(w, errorf(api.CodeForbidden, "only the creator of a call can end it"))
		return
	}
	c.ended = true
	cl := s.endRoomLocked(roomName)
	s.mu.Unlock()
	cl.run(s.log)
	s.log.Info("call ended", "room", roomName, "by", claims.Identity)
	w.WriteHeader(http.StatusNoContent)
}

// endRoomLocked removes every participant of room, joining or joined, with
// reason room_ended.
func (s *Server) endRoomLocked(roomName string) cleanup {
	var c cleanup
	rm := s.rooms[roomName]
	if rm == nil {
		return c
	}
	for _, p := range rm.participants {
		c.add(s.removeLocked(p, api.ReasonRoomEnded))
	}
	return c
}

// refuseEnded guards the join route of ended calls. It checks before the
// join, and again after it: a join that raced with the end (admitted before
// the call was marked ended, its room created after the end emptied it) is
// removed then. A call whose room now exists has started.
func (s *Server) refuseEnded(join http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		roomName := r.PathValue("room")
		s.mu.Lock()
		ended := s.callEndedLocked(roomName)
		s.mu.Unlock()
		if ended {
			writeError(w, errorf(api.CodeCallEnded, "this call has ended"))
			return
		}
		join(w, r)
		s.mu.Lock()
		var c cleanup
		if s.callEndedLocked(roomName) {
			c = s.endRoomLocked(roomName)
		} else if cl := s.calls.byRoom[roomName]; cl != nil && s.rooms[roomName] != nil {
			cl.started = true
		}
		s.mu.Unlock()
		c.run(s.log)
	}
}
