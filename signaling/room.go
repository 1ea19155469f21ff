package signaling

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/media"
)

// room is one call: its participants (by ID) and its media router. All
// fields are guarded by Server.mu.
type room struct {
	name         string
	media        *media.Room
	participants map[string]*participant
}

// activeOthers lists the room's announced participants other than p.
func (rm *room) activeOthers(p *participant) []api.Participant {
	l := make([]api.Participant, 0, len(rm.participants))
	for _, o := range rm.participants {
		if o != p && o.active {
			l = append(l, o.info())
		}
	}
	return l
}

// broadcast queues msg for every announced participant except skip.
func (s *Server) broadcastLocked(rm *room, skip *participant, msg []byte) {
	for _, o := range rm.participants {
		if o != skip && o.active {
			s.sendLocked(o, msg)
		}
	}
}

// onSpeaking is the media room's voice-activity callback.
func (s *Server) onSpeaking(rm *room, participantID string, speaking bool) {
	msg := encode(api.Speaking{Type: api.TypeSpeaking, ParticipantID: participantID, Speaking: speaking})
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcastLocked(rm, nil, msg)
}

// reserve admits identity to roomName as a participant that is counted
// against the limits but not yet visible to others: media has still to
// answer its offer. e2ee is the encryption it declared; replaces is the
// participant of the same identity it takes over on the same device, if
// any (api.JoinRequest.Replaces).
func (s *Server) reserve(roomName, identity, e2ee, replaces string) (*participant, *api.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil, errorf(api.CodeShuttingDown, "server is shutting down")
	}
	rm := s.rooms[roomName]
	if rm == nil {
		if len(s.rooms) >= s.cfg.MaxRooms {
			return nil, errorf(api.CodeTooManyRooms, "server has %d rooms, its limit", len(s.rooms))
		}
		rm = &room{name: roomName, participants: make(map[string]*participant)}
		rm.media = s.cfg.Media.NewRoom(roomName, func(id string, speaking bool) { s.onSpeaking(rm, id, speaking) })
		s.rooms[roomName] = rm
	}
	// A participant with the same identity is replaced on success, so it
	// does not count against the limit.
	n := 0
	for _, o := range rm.participants {
		if o.identity != identity {
			n++
		}
	}
	if n >= s.cfg.MaxParticipants {
		return nil, errorf(api.CodeRoomFull, "room %q has %d participants, its limit", roomName, n)
	}
	p := &participant{
		srv:      s,
		room:     rm,
		id:       "p_" + randomID(),
		identity: identity,
		e2ee:     e2ee,
		replaces: replaces,
		session:  randomSecret(),
		out:      newOutbox(s.cfg.QueueLength),
		sent:     newEnvelopeLimit(&s.cfg),
	}
	rm.participants[p.id] = p
	return p, nil
}

// activate makes p, whose offer media has answered with peer, a full member:
// it replaces an earlier participant with the same identity, announces p to
// the others and starts p's drop timer. It returns the others.
func (s *Server) activate(p *participant, peer *media.Peer) ([]api.Participant, *api.Error) {
	var c cleanup
	defer func() { c.run(s.log) }()
	s.mu.Lock()
	defer s.mu.Unlock()
	p.peer = peer
	switch {
	case s.closing || p.removed:
		c.add(s.removeLocked(p, api.ReasonShutdown))
		return nil, errorf(api.CodeShuttingDown, "server is shutting down")
	case p.failed:
		c.add(s.removeLocked(p, api.ReasonICEFailed))
		return nil, errorf(api.CodeInternal, "media connection failed while joining")
	}
	// One device at a time: the identity's earlier participant leaves. It
	// was this device's own (a rejoin) only if the join says so.
	var replaced string
	for _, o := range p.room.participants {
		if o != p && o.active && o.identity == p.identity {
			reason := api.ReasonMovedToAnotherDevice
			if o.id == p.replaces {
				reason = api.ReasonReplaced
			}
			c.add(s.removeLocked(o, reason))
			replaced = o.id
		}
	}
	p.active = true
	s.broadcastLocked(p.room, p, encode(api.Joined{Type: api.TypeJoined, Participant: p.info(), Replaces: replaced}))
	p.armDropTimerLocked()
	s.log.Info("participant joined", "room", p.room.name, "participant", p.id, "identity", p.identity)
	return p.room.activeOthers(p), nil
}

// remove takes p out of its room for reason (an api.Reason*), telling the
// others and p itself. Removing twice is harmless.
func (s *Server) remove(p *participant, reason string) {
	s.mu.Lock()
	c := s.removeLocked(p, reason)
	s.mu.Unlock()
	c.run(s.log)
}

// removeLocked does remove's bookkeeping under s.mu and returns the media
// objects to close once the lock is released.
func (s *Server) removeLocked(p *participant, reason string) cleanup {
	return s.removeClosingLocked(p, api.Closed{Type: api.TypeClosed, Reason: reason})
}

// removeClosingLocked is removeLocked with the closed message p gets.
func (s *Server) removeClosingLocked(p *participant, closed api.Closed) cleanup {
	reason := closed.Reason
	var c cleanup
	if p.removed {
		return c
	}
	p.removed = true
	if p.dropTimer != nil {
		p.dropTimer.Stop()
	}
	if p.lostTimer != nil {
		p.lostTimer.Stop()
	}
	rm := p.room
	delete(rm.participants, p.id)
	if p.active {
		s.broadcastLocked(rm, p, encode(api.Left{Type: api.TypeLeft, Participant: p.info(), Reason: reason}))
		if reason == api.ReasonShutdown {
			closed.RetryAfterMs = s.cfg.ShutdownRetry.Milliseconds()
		}
		p.out.close(encode(closed))
		s.log.Info("participant left", "room", rm.name, "participant", p.id, "identity", p.identity, "reason", reason)
	} else {
		p.out.close(nil)
	}
	if p.peer != nil {
		c.peers = append(c.peers, p.peer)
	}
	if len(rm.participants) == 0 {
		s.dropRoomLocked(rm, &c)
	}
	return c
}

func (s *Server) dropRoomLocked(rm *room, c *cleanup) {
	if s.rooms[rm.name] == rm {
		delete(s.rooms, rm.name)
		s.blobs.dropRoom(rm.name)
	}
	c.rooms = append(c.rooms, rm.media)
}

// cleanup is media teardown deferred until Server.mu is released, because
// closing a peer may call back into the server.
type cleanup struct {
	peers []*media.Peer
	rooms []*media.Room
}

func (c *cleanup) add(o cleanup) {
	c.peers = append(c.peers, o.peers...)
	c.rooms = append(c.rooms, o.rooms...)
}

func (c cleanup) run(log *slog.Logger) {
	for _, p := range c.peers {
		if err := p.Close(); err != nil {
			log.Debug("close peer", "err", err)
		}
	}
	for _, r := range c.rooms {
		if err := r.Close(); err != nil {
			log.Debug("close media room", "err", err)
		}
	}
}

// encode marshals a wire message.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Unreachable for the api types; an empty object keeps the stream valid.
		slog.Error("signaling: marshal message", "err", err)
		return []byte("{}")
	}
	return b
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// randomID returns 12 random base32 characters (60 bits).
func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return strings.ToLower(idEncoding.EncodeToString(b[:]))[:12]
}

// randomSecret returns 32 random bytes, base64url without padding.
func randomSecret() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
