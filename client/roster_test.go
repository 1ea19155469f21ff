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
	r := newRoster()
	got := make(chan api.Participant, 1)
	go func() { got <- r.await(context.Background(), "p_1", time.Minute) }()
	time.Sleep(10 * time.Millisecond) // usually lets await register first; either order must work
	alice := api.Participant{ID: "p_1", Identity: "alice", E2EE: api.E2EESotto1}
	if !r.add(alice) {
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
	if r.add(api.Participant{ID: "p_1", Identity: "alice"}) {
		t.Error("second add reported a new participant")
	}
}

func TestRosterAwaitGivesUp(t *testing.T) {
	r := newRoster()
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
	r := newRoster()
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
	r := newRoster()
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
