package client

import (
	"context"
	"sort"
	"sync"
	"time"

	"github.com/sotto-voice/sotto/api"
)

// roster is the set of other participants in the room, keyed by participant
// ID. A remote track names only the publisher's ID; the roster resolves it
// to an identity, and lets a track that arrives before its "joined" event
// wait for it.
type roster struct {
	mu      sync.Mutex
	members map[string]*member
}

type member struct {
	p       api.Participant
	present bool          // announced by the server and not yet left
	known   chan struct{} // closed once p.Identity is known
}

func newRoster() *roster { return &roster{members: make(map[string]*member)} }

// entry returns the member for id, creating a placeholder. Caller holds mu.
func (r *roster) entry(id string) *member {
	m := r.members[id]
	if m == nil {
		m = &member{p: api.Participant{ID: id}, known: make(chan struct{})}
		r.members[id] = m
	}
	return m
}

// add records p as present and reports whether it was not already.
func (r *roster) add(p api.Participant) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.entry(p.ID)
	if m.present {
		return false
	}
	m.present = true
	if m.p.Identity == "" {
		m.p = p
		close(m.known)
	}
	return true
}

// remove forgets p, returns what was known about it and reports whether it
// was present. Track readers keep the identity they resolved, so late
// frames still carry it.
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
	return m.p, m.present
}

// retain removes the present members that are not in the room any more,
// as present lists it, and returns them ordered by ID.
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
			gone = append(gone, m.p)
		}
	}
	sort.Slice(gone, func(i, j int) bool { return gone[i].ID < gone[j].ID })
	return gone
}

// lookup returns what is known about id; Identity is empty if nothing is.
func (r *roster) lookup(id string) api.Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m := r.members[id]; m != nil {
		return m.p
	}
	return api.Participant{ID: id}
}

// await waits up to timeout for id's identity to become known, for a track
// that arrived before the event announcing its publisher.
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

// present lists the participants present, ordered by ID.
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
