package signaling

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
)

// Private calls. POST /v1/calls creates a room with an unguessable name and
// gives its creator a token and an invite. The invite is the capability to
// ask to join: POST /v1/invites/redeem makes the guest knock (knock.go),
// and the token of a fresh identity comes when the host admits it, or at
// once if the host opened the door. Only the creator may end the call for
// everyone (POST /v1/rooms/{room}/end).

// Defaults for the zero values of Config.InviteTTL and Config.CallsPerMinute.
const (
	DefaultInviteTTL      = time.Hour
	DefaultCallsPerMinute = 10
)

const (
	// callTokenTTL is the life of tokens handed out for private calls: long
	// enough for a long call, whose prekey fetches still need the token.
	callTokenTTL = 12 * time.Hour
	// pendingCallTTL is how long a created call holds a room slot on its
	// node while waiting for its creator to join.
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

// calls is the node's part of the private calls: the calls themselves
// (creator, ended) are in the state store, so that an ended call stays
// ended across restarts and nodes.
type calls struct {
	ttl     time.Duration // invite life
	limiter *ipLimiter

	// Guarded by Server.mu:

	// pending holds when each call created here whose creator has not
	// joined yet was created: it holds one of this node's room slots until
	// its room exists or pendingCallTTL passes.
	pending map[string]time.Time
	// ended holds, until their records expire, the calls known to have
	// ended: a join that raced with an end is caught without asking the
	// store again, even while it is unreachable.
	ended map[string]time.Time
	// knocks are the guests at the doors of this node's calls, by id.
	knocks map[string]*knock
	// doors are the calls whose door is not the default DoorHost.
	doors map[string]doorSetting
}

func newCalls(inviteTTL time.Duration, perMinute int) *calls {
	return &calls{
		ttl:     inviteTTL,
		limiter: newIPLimiter(float64(perMinute)/60, float64(perMinute)),
		pending: make(map[string]time.Time),
		ended:   make(map[string]time.Time),
		knocks:  make(map[string]*knock),
		doors:   make(map[string]doorSetting),
	}
}

// recordTTL is how long a call's record is kept: tokens redeemed at the
// last moment of the invite live callTokenTTL more, and the record
// outlives them so that an ended call stays ended.
func (c *calls) recordTTL() time.Duration { return c.ttl + callTokenTTL }

// sweepCallsLocked drops pending calls whose room exists (they started)
// or whose creator never joined in time, and ended calls whose records
// have expired.
func (s *Server) sweepCallsLocked(now time.Time) {
	for name, created := range s.calls.pending {
		if s.rooms[name] != nil || now.Sub(created) > pendingCallTTL {
			delete(s.calls.pending, name)
		}
	}
	for name, until := range s.calls.ended {
		if now.After(until) {
			delete(s.calls.ended, name)
		}
	}
	for name, d := range s.calls.doors {
		if now.After(d.until) {
			delete(s.calls.doors, name)
		}
	}
}

// markEndedLocked remembers that room's call ended, and turns away the
// guests at its door.
func (s *Server) markEndedLocked(room string) {
	s.calls.ended[room] = s.now().Add(s.calls.recordTTL())
	delete(s.calls.pending, room)
	delete(s.calls.doors, room)
	s.endKnocksLocked(room)
}

// callEnded reports whether room is a call that has ended, asking the
// store unless this node knows already.
func (s *Server) callEnded(ctx context.Context, room string) (bool, *api.Error) {
	s.mu.Lock()
	_, ended := s.calls.ended[room]
	s.mu.Unlock()
	if ended {
		return true, nil
	}
	c, err := s.store.Call(ctx, room)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil // not a private call, or its record expired with its tokens
	}
	if err != nil {
		return false, s.storeError(err)
	}
	if c.Ended {
		s.mu.Lock()
		s.markEndedLocked(room)
		s.mu.Unlock()
	}
	return c.Ended, nil
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
	case len(s.rooms)+len(s.calls.pending) >= s.cfg.MaxRooms:
		apiErr = errorf(api.CodeTooManyRooms, "server has %d rooms, its limit", s.cfg.MaxRooms)
	default:
		s.calls.pending[room] = now // the slot is held while the store writes
	}
	s.mu.Unlock()
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if err := s.store.CreateCall(r.Context(), room, store.Call{Creator: identity}, s.calls.recordTTL()); err != nil {
		s.mu.Lock()
		delete(s.calls.pending, room)
		s.mu.Unlock()
		writeError(w, s.storeError(err))
		return
	}
	s.log.Info("call created", "room", room, "creator", identity)
	writeJSON(w, http.StatusCreated, api.CreateCallResponse{
		Room: room, Identity: identity, Token: tok, Invite: invite, InviteExpires: expiry.Unix(),
	})
}

// checkInvite verifies an invite and that its call still runs.
func (s *Server) checkInvite(ctx context.Context, invite string) (token.InviteClaims, *api.Error) {
	c, err := token.VerifyInvite(s.cfg.Secret, invite, s.now())
	if err != nil {
		return c, inviteError(err)
	}
	ended, apiErr := s.callEnded(ctx, c.Room)
	if apiErr != nil {
		return c, apiErr
	}
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
	c, apiErr := s.checkInvite(r.Context(), req.Invite)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	writeJSON(w, http.StatusOK, api.InviteInfo{Inviter: c.Inviter, Expires: c.Expiry.Unix()})
}

// handleRedeemInvite serves POST /v1/invites/redeem: the guest knocks
// (202 and a knock to wait on), or comes in at once (200 and its token)
// when the door is open.
func (s *Server) handleRedeemInvite(w http.ResponseWriter, r *http.Request) {
	if !s.limit(w, r) {
		return
	}
	var req api.RedeemInviteRequest
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &req); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	c, apiErr := s.checkInvite(r.Context(), req.Invite)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	identity, apiErr := callIdentity(req.Name)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	// The door and the knocks at it are kept by the node that runs the
	// call, where the host is.
	if s.owner(w, r, c.Room) {
		return
	}
	s.mu.Lock()
	open := s.doorLocked(c.Room) == api.DoorOpen
	s.mu.Unlock()
	if !open {
		k, apiErr := s.knock(c, strings.TrimSpace(req.Name), identity, clientIP(r))
		if apiErr != nil {
			writeError(w, apiErr)
			return
		}
		v := k.forGuest()
		v.Secret = k.secret
		writeJSON(w, http.StatusAccepted, v)
		return
	}
	tok, err := token.Mint(s.cfg.Secret, token.Claims{Room: c.Room, Identity: identity, Expiry: s.now().Add(callTokenTTL)})
	if err != nil {
		writeError(w, errorf(api.CodeInternal, "mint token: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, api.RedeemInviteResponse{Room: c.Room, Identity: identity, Token: tok, Inviter: c.Inviter, NodeURL: s.nodeURL()})
}

// roomBearer returns the request's room (its path) and the claims of its
// bearer token, which must admit to that room.
func (s *Server) roomBearer(r *http.Request) (string, token.Claims, *api.Error) {
	roomName := r.PathValue("room")
	if !token.ValidRoom(roomName) {
		return "", token.Claims{}, errorf(api.CodeInvalidName, "room name must be 1-64 of A-Z a-z 0-9 _ -")
	}
	claims, apiErr := s.bearer(r, roomName)
	return roomName, claims, apiErr
}

// handleEndCall serves POST /v1/rooms/{room}/end: the creator's token ends
// the call for everyone, and the room refuses joins from then on. In a
// cluster the node that runs the room ends it; another answers wrong_node,
// before changing anything, or after marking the call ended when a join
// claimed the room meanwhile (see place): the creator repeats the end
// there, which empties the room.
func (s *Server) handleEndCall(w http.ResponseWriter, r *http.Request) {
	roomName, claims, apiErr := s.roomBearer(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if s.owner(w, r, roomName) {
		return
	}
	notCreator := errorf(api.CodeForbidden, "only the creator of a call can end it")
	c, err := s.store.Call(r.Context(), roomName)
	if err == nil && c.Creator == claims.Identity && !c.Ended {
		err = s.store.EndCall(r.Context(), roomName)
	}
	switch {
	case errors.Is(err, store.ErrNotFound), err == nil && c.Creator != claims.Identity:
		writeError(w, notCreator)
		return
	case err != nil:
		writeError(w, s.storeError(err))
		return
	}
	s.mu.Lock()
	s.markEndedLocked(roomName)
	cl := s.endRoomLocked(roomName, claims.Identity)
	s.mu.Unlock()
	cl.run(s.log)
	s.log.Info("call ended", "room", roomName, "by", claims.Identity)
	if s.cluster != nil {
		if nodeURL, err := s.cluster.Owner(r.Context(), roomName); err == nil && nodeURL != "" {
			writeError(w, wrongNode(roomName, nodeURL))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// endRoomLocked removes every participant of room, joining or joined, with
// reason room_ended, telling them who ended it (by, if known) and when.
func (s *Server) endRoomLocked(roomName, by string) cleanup {
	var c cleanup
	rm := s.rooms[roomName]
	if rm == nil {
		return c
	}
	closed := api.Closed{Type: api.TypeClosed, Reason: api.ReasonRoomEnded, By: by, At: s.now().Unix()}
	for _, p := range rm.participants {
		c.add(s.removeClosingLocked(p, closed))
	}
	return c
}

// refuseEnded guards the join route of ended calls. It checks before the
// join, in the store, and again after it, in what this node knows: a join
// that raced with an end here (admitted before the call was marked ended,
// its room created after the end emptied it) is removed then. (In a
// cluster a room's joins and its end reach the node that runs it.) A call
// whose room now exists has started and no longer holds a pending slot.
func (s *Server) refuseEnded(join http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		roomName := r.PathValue("room")
		if !token.ValidRoom(roomName) {
			join(w, r) // which refuses it, without asking the store
			return
		}
		ended, apiErr := s.callEnded(r.Context(), roomName)
		if apiErr != nil {
			s.refuseJoin(w, apiErr)
			return
		}
		if ended {
			writeError(w, errorf(api.CodeCallEnded, "this call has ended"))
			return
		}
		join(w, r)
		s.mu.Lock()
		var c cleanup
		if _, ended := s.calls.ended[roomName]; ended {
			c = s.endRoomLocked(roomName, "")
		} else if s.rooms[roomName] != nil {
			delete(s.calls.pending, roomName)
		}
		s.mu.Unlock()
		c.run(s.log)
	}
}
