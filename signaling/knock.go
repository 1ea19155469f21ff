package signaling

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
)

// The door of a private call. A guest who redeems an invite knocks: the
// server keeps a knock and tells the participants who may answer it (the
// host, the invite's inviter, or with DoorCall anyone in the call), and
// mints the guest's token only when one of them admits it. The guest waits
// on GET /v1/knocks/{id}. Knocks live in this node's memory: they last
// minutes, and a restart loses them like the calls' event streams (the
// guest knocks again). The door itself is this node's too; after a
// restart it is DoorHost again, the closed default.

// Defaults for the zero values of Config.KnockTimeout and Config.MaxKnocks.
const (
	DefaultKnockTimeout = 2 * time.Minute
	DefaultMaxKnocks    = 10
)

const (
	// maxKnocksPerIP bounds the pending knocks from one client address, in
	// all calls: one address cannot fill a host's list, whatever its rate.
	maxKnocksPerIP = 3
	// knockResultTTL is how long an answered knock is kept, so that the
	// guest's next poll learns the answer.
	knockResultTTL = time.Minute
	// maxKnockWait bounds one long poll of GET /v1/knocks/{id}.
	maxKnockWait = 30 * time.Second
)

// knock is a guest at a call's door. Guarded by Server.mu, apart from its
// immutable fields (ID, secret, Name, Identity, Inviter, Room, Expires, ip,
// done).
type knock struct {
	api.Knock // Secret and WaitURL stay empty: views add them
	secret    string
	ip        string
	done      chan struct{} // closed when it stops being pending
	timer     *time.Timer   // its expiry, then its forgetting
}

// forAnswerers is what those who may answer see of k.
func (k *knock) forAnswerers() api.Knock {
	v := k.Knock
	v.Token = ""
	return v
}

// forGuest is what the guest sees of k, its token once admitted.
func (k *knock) forGuest() api.Knock {
	v := k.Knock
	v.WaitURL = api.Version + "/knocks/" + k.ID
	return v
}

// doorSetting is a call's door as its host set it.
type doorSetting struct {
	door  string
	until time.Time // forgotten then, with the call's record
}

// doorLocked returns room's door.
func (s *Server) doorLocked(room string) string {
	if d, ok := s.calls.doors[room]; ok {
		return d.door
	}
	return api.DoorHost
}

// mayAnswerLocked reports whether identity may answer knocks at room's
// door for invites of inviter.
func (s *Server) mayAnswerLocked(room, inviter, identity string) bool {
	return identity == inviter || s.doorLocked(room) == api.DoorCall && s.presentLocked(room, identity)
}

// presentLocked reports whether identity is in room on this node.
func (s *Server) presentLocked(room, identity string) bool {
	if rm := s.rooms[room]; rm != nil {
		for _, p := range rm.participants {
			if p.active && p.identity == identity {
				return true
			}
		}
	}
	return false
}

// pendingKnocksLocked lists the knocks of p's room that p may answer.
func (s *Server) pendingKnocksLocked(p *participant) []api.Knock {
	var l []api.Knock
	for _, k := range s.calls.knocks {
		if k.Room == p.room.name && k.State == api.KnockPending && (p.identity == k.Inviter || s.doorLocked(k.Room) == api.DoorCall) {
			l = append(l, k.forAnswerers())
		}
	}
	return l
}

// notifyKnockLocked tells those in k's room who may answer it what became
// of it.
func (s *Server) notifyKnockLocked(k *knock) {
	rm := s.rooms[k.Room]
	if rm == nil {
		return
	}
	msg := encode(api.KnockEvent{Type: api.TypeKnock, Knock: k.forAnswerers()})
	everyone := s.doorLocked(k.Room) == api.DoorCall
	for _, p := range rm.participants {
		if p.active && (everyone || p.identity == k.Inviter) {
			s.sendLocked(p, msg)
		}
	}
}

// knock makes a guest, whose invite c has been checked, wait at the door.
func (s *Server) knock(c token.InviteClaims, name, identity, ip string) (*knock, *api.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errorf(api.CodeShuttingDown, "server is shutting down")
	}
	inRoom, fromIP := 0, 0
	for _, k := range s.calls.knocks {
		if k.State != api.KnockPending {
			continue
		}
		if k.Room == c.Room {
			inRoom++
		}
		if k.ip == ip {
			fromIP++
		}
	}
	if inRoom >= s.cfg.MaxKnocks {
		return nil, errorf(api.CodeTooManyKnocks, "%d guests are waiting at this call's door already; try again later", inRoom)
	}
	if fromIP >= maxKnocksPerIP {
		return nil, errorf(api.CodeTooManyKnocks, "%d knocks from this address are waiting already", fromIP)
	}
	k := &knock{
		Knock: api.Knock{
			ID:       "k_" + randomID(),
			State:    api.KnockPending,
			Name:     name,
			Identity: identity,
			Inviter:  c.Inviter,
			Room:     c.Room,
			Expires:  s.now().Add(s.cfg.KnockTimeout).Unix(),
		},
		secret: randomSecret(),
		ip:     ip,
		done:   make(chan struct{}),
	}
	k.timer = time.AfterFunc(s.cfg.KnockTimeout, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closeKnockLocked(k, api.KnockExpired, "")
	})
	s.calls.knocks[k.ID] = k
	s.notifyKnockLocked(k)
	s.log.Info("guest knocks", "room", k.Room, "knock", k.ID, "identity", identity)
	return k, nil
}

// closeKnockLocked moves a pending knock to state (answered by by, if
// anyone), tells the guest and the answerers, and forgets it a while
// later. It reports whether k was pending.
func (s *Server) closeKnockLocked(k *knock, state, by string) bool {
	if k.State != api.KnockPending {
		return false
	}
	k.State = state
	k.By = by
	close(k.done)
	k.timer.Stop()
	k.timer = time.AfterFunc(knockResultTTL, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.calls.knocks[k.ID] == k {
			delete(s.calls.knocks, k.ID)
		}
	})
	s.notifyKnockLocked(k)
	s.log.Info("knock closed", "room", k.Room, "knock", k.ID, "state", state, "by", by)
	return true
}

// endKnocksLocked closes the pending knocks of room, whose call ended.
func (s *Server) endKnocksLocked(room string) {
	for _, k := range s.calls.knocks {
		if k.Room == room {
			s.closeKnockLocked(k, api.KnockEnded, "")
		}
	}
}

// guestKnock finds the knock of the request's path whose secret the
// request's "Authorization: Knock <secret>" holds. Unknown and wrong are
// one answer.
func (s *Server) guestKnock(r *http.Request) (*knock, *api.Error) {
	secret, _ := authValue(r, "Knock")
	s.mu.Lock()
	k := s.calls.knocks[r.PathValue("id")]
	s.mu.Unlock()
	if k == nil || subtle.ConstantTimeCompare([]byte(secret), []byte(k.secret)) != 1 {
		return nil, errorf(api.CodeNotFound, "no such knock, or not yours")
	}
	return k, nil
}

// handleKnockWait serves GET /v1/knocks/{id}?wait=<seconds>: the knock's
// state, once it is no longer pending or wait seconds have passed.
func (s *Server) handleKnockWait(w http.ResponseWriter, r *http.Request) {
	k, apiErr := s.guestKnock(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs < 0 {
			writeError(w, errorf(api.CodeBadRequest, "wait must be a whole number of seconds"))
			return
		}
		wait = min(time.Duration(secs)*time.Second, maxKnockWait)
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-k.done:
		case <-t.C:
		case <-r.Context().Done():
		case <-s.stopping:
		}
		t.Stop()
	}
	s.mu.Lock()
	v := k.forGuest()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// handleKnockWithdraw serves DELETE /v1/knocks/{id}: the guest gives up.
// The answer is the knock's final state, which is not "withdrawn" if an
// answer came first.
func (s *Server) handleKnockWithdraw(w http.ResponseWriter, r *http.Request) {
	k, apiErr := s.guestKnock(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	s.mu.Lock()
	s.closeKnockLocked(k, api.KnockWithdrawn, "")
	v := k.forGuest()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, v)
}

// handleKnockAnswer serves POST /v1/rooms/{room}/knocks/{id}/admit and
// .../refuse: the host (or, with DoorCall, anyone in the call) lets the
// guest in, which mints its token, or turns it away.
func (s *Server) handleKnockAnswer(admit bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		roomName, claims, apiErr := s.roomBearer(r)
		if apiErr != nil {
			writeError(w, apiErr)
			return
		}
		v, apiErr := s.answerKnock(roomName, r.PathValue("id"), claims.Identity, admit)
		if apiErr != nil {
			writeError(w, apiErr)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

// answerKnock has by admit (minting the guest's token) or refuse knock id
// at room's door, and returns the knock as the answerers see it.
func (s *Server) answerKnock(room, id, by string, admit bool) (api.Knock, *api.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.calls.knocks[id]
	switch {
	case k == nil || k.Room != room:
		return api.Knock{}, errorf(api.CodeNotFound, "no knock %q at this call's door", id)
	case !s.mayAnswerLocked(room, k.Inviter, by):
		return api.Knock{}, errorf(api.CodeForbidden, "only the host, or with the door %q anyone in the call, answers knocks", api.DoorCall)
	case k.State != api.KnockPending:
		return api.Knock{}, errorf(api.CodeKnockAnswered, "this knock is %s already", k.State)
	}
	state := api.KnockRefused
	if admit {
		tok, err := token.Mint(s.cfg.Secret, token.Claims{Room: room, Identity: k.Identity, Expiry: s.now().Add(callTokenTTL)})
		if err != nil {
			return api.Knock{}, errorf(api.CodeInternal, "mint token: %v", err)
		}
		k.Token = tok
		state = api.KnockAdmitted
	}
	s.closeKnockLocked(k, state, by)
	return k.forAnswerers(), nil
}

// handleDoor serves PUT /v1/rooms/{room}/door: the call's creator decides
// who lets guests in. Guests waiting already still wait for an answer.
func (s *Server) handleDoor(w http.ResponseWriter, r *http.Request) {
	roomName, claims, apiErr := s.roomBearer(r)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	var req api.DoorRequest
	if apiErr := decodeBody(w, r, s.cfg.MaxMessageBytes, &req); apiErr != nil {
		writeError(w, apiErr)
		return
	}
	switch req.Door {
	case api.DoorHost, api.DoorCall, api.DoorOpen:
	default:
		writeError(w, errorf(api.CodeBadRequest, "door must be %q, %q or %q", api.DoorHost, api.DoorCall, api.DoorOpen))
		return
	}
	c, err := s.store.Call(r.Context(), roomName)
	switch {
	case err != nil && !errors.Is(err, store.ErrNotFound):
		writeError(w, s.storeError(err))
		return
	case err != nil || c.Creator != claims.Identity:
		writeError(w, errorf(api.CodeForbidden, "only the creator of a call sets its door"))
		return
	case c.Ended:
		writeError(w, errorf(api.CodeCallEnded, "this call has ended"))
		return
	}
	s.mu.Lock()
	before := s.doorLocked(roomName)
	s.calls.doors[roomName] = doorSetting{door: req.Door, until: s.now().Add(s.calls.recordTTL())}
	if rm := s.rooms[roomName]; rm != nil && before != req.Door {
		s.broadcastLocked(rm, nil, encode(api.DoorEvent{Type: api.TypeDoor, Door: req.Door, By: claims.Identity}))
		if req.Door == api.DoorCall {
			// The others may answer now: they learn of who waits.
			for _, p := range rm.participants {
				if !p.active {
					continue
				}
				for _, k := range s.pendingKnocksLocked(p) {
					if p.identity != k.Inviter {
						s.sendLocked(p, encode(api.KnockEvent{Type: api.TypeKnock, Knock: k}))
					}
				}
			}
		}
	}
	s.mu.Unlock()
	s.log.Info("door set", "room", roomName, "door", req.Door, "by", claims.Identity)
	writeJSON(w, http.StatusOK, req)
}
