package client

import (
	"context"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

// A track can arrive before the event that names its publisher: its reader
// waits for the identity, whichever comes first.
func TestRosterAwaitsIdentity(t *testing.T) {
	r := newRoster(nil)
	got := make(chan api.Participant, 1)
	go func() { got <- r.await(context.Background(), "p_1", time.Minute) }()
	time.Sleep(10 * time.Millisecond) // usually lets await register first; either order must work
	alice := api.Participant{ID: "p_1", Identity: "alice", E2EE: api.E2EESotto1}
	if _, added, _ := r.add(alice); !added {
		t.Fatal("add of a new participant reported it known")
	}
	select {
	case p := <-got:
		if p != alice {
			t.Fatalf("await = %+v, want %+v", p, alice)
		}
	case <-time.After(wait.Timeout):
		t.Fatal("await did not return after add")
	}
	// Known already: no wait.
	if p := r.await(context.Background(), "p_1", time.Minute); p.Identity != "alice" {
		t.Errorf("await of a known participant = %+v", p)
	}
	if _, added, _ := r.add(api.Participant{ID: "p_1", Identity: "alice"}); added {
		t.Error("second add reported a new participant")
	}
}

func TestRosterAwaitGivesUp(t *testing.T) {
	r := newRoster(nil)
	if p := r.await(context.Background(), "p_2", time.Millisecond); p.ID != "p_2" || p.Identity != "" {
		t.Errorf("await of an unknown participant = %+v, want ID only", p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if p := r.await(ctx, "p_3", time.Minute); p.Identity != "" {
		t.Errorf("await with a canceled context = %+v", p)
	}
	// A placeholder made by await is not a present participant.
	if ps := r.present(); len(ps) != 0 {
		t.Errorf("present = %v, want none", ps)
	}
	if _, ok := r.remove(api.Participant{ID: "p_2", Identity: "bob"}); ok {
		t.Error("remove of a never-announced participant reported it present")
	}
}

func TestRosterPresentAndRemove(t *testing.T) {
	r := newRoster(nil)
	r.add(api.Participant{ID: "p_b", Identity: "bob"})
	r.add(api.Participant{ID: "p_a", Identity: "alice"})
	ps := r.present()
	if len(ps) != 2 || ps[0].ID != "p_a" || ps[1].ID != "p_b" {
		t.Fatalf("present = %v, want alice and bob by ID", ps)
	}
	p, ok := r.remove(api.Participant{ID: "p_a"})
	if !ok || p.Identity != "alice" {
		t.Errorf("remove = %+v, %v; want alice, true", p, ok)
	}
	if _, ok := r.remove(api.Participant{ID: "p_a"}); ok {
		t.Error("second remove reported present")
	}
	if ps := r.present(); len(ps) != 1 || ps[0].ID != "p_b" {
		t.Errorf("present after remove = %v", ps)
	}
}

// retain removes exactly the present members a welcome no longer lists,
// and leaves placeholders of tracks still waiting for their publisher.
func TestRosterRetain(t *testing.T) {
	r := newRoster(nil)
	a := api.Participant{ID: "p_a", Identity: "alice"}
	b := api.Participant{ID: "p_b", Identity: "bob"}
	c := api.Participant{ID: "p_c", Identity: "carol"}
	for _, p := range []api.Participant{a, b, c} {
		r.add(p)
	}
	r.await(context.Background(), "p_pending", time.Millisecond) // a placeholder
	gone := r.retain([]api.Participant{b, {ID: "p_new", Identity: "dave"}})
	if len(gone) != 2 || gone[0] != a || gone[1] != c {
		t.Fatalf("retain removed %+v, want alice and carol", gone)
	}
	if got := r.present(); len(got) != 1 || got[0] != b {
		t.Fatalf("present after retain: %+v, want bob", got)
	}
	if _, ok := r.remove(api.Participant{ID: "p_pending"}); ok {
		t.Fatal("the placeholder became present")
	}
	if _, ok := r.remove(a); ok {
		t.Fatal("a removed member was still present")
	}
}

// After a rejoin the server names everyone anew; someone the call knew
// before keeps the name the call gave it, both ways, and only once.
func TestRosterNamesReturningParticipants(t *testing.T) {
	before := map[string]api.Participant{"bob": {ID: "p_old_bob", Identity: "bob"}}
	r := newRoster(func(identity string) (api.Participant, bool) {
		p, ok := before[identity]
		delete(before, identity)
		return p, ok
	})
	got := make(chan api.Participant, 1)
	go func() { got <- r.await(context.Background(), "p_new_bob", time.Minute) }()
	named, added, returning := r.add(api.Participant{ID: "p_new_bob", Identity: "bob"})
	if named.ID != "p_old_bob" || !added || !returning {
		t.Fatalf("add(bob) = %+v, %v, %v; want p_old_bob, added, returning", named, added, returning)
	}
	if p := <-got; p.ID != "p_old_bob" {
		t.Errorf("bob's track resolves to %+v, want the old name", p)
	}
	if id, ok := r.serverID("p_old_bob"); !ok || id != "p_new_bob" {
		t.Errorf("serverID(p_old_bob) = %q, %v", id, ok)
	}
	if p := r.lookup("p_new_bob"); p.ID != "p_old_bob" {
		t.Errorf("lookup = %+v", p)
	}
	named, _, returning = r.add(api.Participant{ID: "p_carol", Identity: "carol"})
	if named.ID != "p_carol" || returning {
		t.Errorf("add(carol) = %+v, returning %v; want her server name, new", named, returning)
	}
	if p, ok := r.remove(api.Participant{ID: "p_new_bob"}); !ok || p.ID != "p_old_bob" {
		t.Errorf("remove(bob) = %+v, %v", p, ok)
	}
	if _, ok := r.serverID("p_old_bob"); ok {
		t.Error("bob is still named after he left")
	}
}
