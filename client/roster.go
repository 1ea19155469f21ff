package client

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
)

// roster is the set of other participants in the room during one join,
// keyed by the participant ID the server gave them for that join. It names
// each one as the call does (its call ID, see Call.ID): the server's ID,
// or, for someone the call knew before it rejoined, the ID it had then. A
// remote track names only the publisher's server ID; the roster resolves
// it, and lets a track that arrives before its "joined" event wait for it.
type roster struct {
	mu      sync.Mutex
	members map[string]*member // by server ID
	byCall  map[string]string  // call ID -> server ID, present members only

	// claim returns the call's name for an identity the call knew before
	// it rejoined, once; nil names everyone by its server ID.
	claim func(identity string) (api.Participant, bool)
}

type member struct {
	p       api.Participant // as the call names it
	present bool            // announced by the server and not yet left
	known   chan struct{}   // closed once p.Identity is known
}

func newRoster(claim func(identity string) (api.Participant, bool)) *roster {
	return &roster{members: make(map[string]*member), byCall: make(map[string]string), claim: claim}
}

// entry returns the member for server ID id, creating a placeholder.
// Caller holds mu.
func (r *roster) entry(id string) *member {
	m := r.members[id]
	if m == nil {
		m = &member{p: api.Participant{ID: id}, known: make(chan struct{})}
		r.members[id] = m
	}
	return m
}

// add records p, as the server names it, as present. It returns p as the
// call names it, whether p was not present already, and whether p is
// someone the call knew before it rejoined, back.
func (r *roster) add(p api.Participant) (named api.Participant, added, returning bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.entry(p.ID)
	if m.present {
		return m.p, false, false
	}
	m.present = true
	if m.p.Identity == "" {
		m.p = p
		if r.claim != nil {
			if back, ok := r.claim(p.Identity); ok {
				back.E2EE = p.E2EE
				m.p, returning = back, true
			}
		}
		close(m.known)
	}
	r.byCall[m.p.ID] = p.ID
	return m.p, true, returning
}

// remove forgets p (server-named), returns it as the call names it and
// reports whether it was present. Track readers keep the participant they
// resolved, so late frames still carry it.
func (r *roster) remove(p api.Participant) (api.Participant, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.members[p.ID]
	if m == nil {
		return p, false
	}
	delete(r.members, p.ID)
	if m.p.Identity == "" && p.Identity != "" {
		m.p.Identity = p.Identity
		close(m.known)
	}
	if m.present {
		delete(r.byCall, m.p.ID)
	}
	return m.p, m.present
}

// retain removes the present members that are not in the room any more,
// as present (server-named) lists it, and returns them as the call names
// them, ordered by ID.
func (r *roster) retain(present []api.Participant) []api.Participant {
	in := make(map[string]bool, len(present))
	for _, p := range present {
		in[p.ID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var gone []api.Participant
	for id, m := range r.members {
		if m.present && !in[id] {
			delete(r.members, id)
			delete(r.byCall, m.p.ID)
			gone = append(gone, m.p)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].ID < gone[j].ID })
	return gone
}

// lookup returns what is known about server ID id; Identity is empty if
// nothing is.
func (r *roster) lookup(id string) api.Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.members[id]; m != nil {
		return m.p
	}
	return api.Participant{ID: id}
}

// serverID returns the server's ID of the present member the call names
// callID.
func (r *roster) serverID(callID string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.byCall[callID]
	return id, ok
}

// await waits up to timeout for the identity of server ID id to become
// known, for a track that arrived before the event announcing its
// publisher.
func (r *roster) await(ctx context.Context, id string, timeout time.Duration) api.Participant {
	r.mu.Lock()
	m := r.entry(id)
	r.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-m.known:
	case <-t.C:
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return m.p
}

// present lists the participants present, as the call names them, ordered
// by ID.
func (r *roster) present() []api.Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]api.Participant, 0, len(r.members))
	for _, m := range r.members {
		if m.present {
			out = append(out, m.p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
