package signaling

import (
	"sync"
	"time"
)

// Who may fetch whose prekey bundle, how often, and how many one-time
// prekeys each requester gets. This is policy only: the bundles are kept by
// prekeyDirectory, so that a persistent store can replace it without
// touching the rules.
//
// A one-time prekey is worth protecting: without one, X3DH loses its
// forward secrecy for the first messages of a session, the ones that carry
// frame keys. So a bundle goes only to a participant of a room the target is
// in too, each requester gets one one-time prekey of a target per window,
// and fetches are rate-limited per requester and per target.

const (
	// OneTimePrekeyWindow is how long a requester that got one of a target's
	// one-time prekeys gets the target's bundle without one. Handing the
	// same one again would not help a requester whose session failed: the
	// target deletes a one-time prekey at its first use, so a second
	// session naming it would be refused, while one without is accepted.
	OneTimePrekeyWindow = 10 * time.Minute
	// PrekeyFetchesPerSecond is how fast the fetch allowance of a requester,
	// and separately that of a target, refills. Each starts full, at
	// prekeyFetchesPerPeer times the participants a room may hold.
	PrekeyFetchesPerSecond = 1
	// prekeyFetchesPerPeer leaves room for a newcomer to a full room to
	// fetch everyone's bundle with a few retries (a participant that joined
	// a moment ago may not have published yet).
	prekeyFetchesPerPeer = 4
	// maxOneTimeGrants bounds the grants remembered within a window. Past
	// it, bundles are handed out without a one-time prekey until grants
	// expire: fewer one-time prekeys, never more.
	maxOneTimeGrants = 1 << 16
)

// prekeyAccess is the fetch policy's state. Its limiters are token buckets
// keyed by identity (ipLimiter takes any key): the token's for requesters,
// the path's for targets.
type prekeyAccess struct {
	requesters *ipLimiter
	targets    *ipLimiter
	grants     *oneTimeGrants
}

func newPrekeyAccess(maxParticipants int) *prekeyAccess {
	burst := float64(prekeyFetchesPerPeer * maxParticipants)
	return &prekeyAccess{
		requesters: newIPLimiter(PrekeyFetchesPerSecond, burst),
		targets:    newIPLimiter(PrekeyFetchesPerSecond, burst),
		grants:     newOneTimeGrants(OneTimePrekeyWindow, maxOneTimeGrants),
	}
}

// mayFetchLocked reports whether requester, admitted to roomName by its
// token, may have target's bundle: both must be announced participants of
// that room now.
func (s *Server) mayFetchLocked(roomName, requester, target string) bool {
	rm := s.rooms[roomName]
	if rm == nil {
		return false
	}
	var haveRequester, haveTarget bool
	for _, p := range rm.participants {
		if p.active && !p.removed {
			haveRequester = haveRequester || p.identity == requester
			haveTarget = haveTarget || p.identity == target
		}
	}
	return haveRequester && haveTarget
}

// oneTimeGrants remembers which requester got which target's one-time
// prekey, for a window. Its memory is bounded by max entries, each dropped
// when its window ends.
type oneTimeGrants struct {
	window time.Duration
	max    int

	mu    sync.Mutex
	until map[grantPair]time.Time
	// order holds the grants oldest first. The window is the same for all,
	// so they expire in this order; an entry whose pair was released or
	// granted again no longer matches until and is skipped.
	order []grant
}

type grantPair struct{ requester, target string }

type grant struct {
	pair  grantPair
	until time.Time
}

func newOneTimeGrants(window time.Duration, max int) *oneTimeGrants {
	return &oneTimeGrants{window: window, max: max, until: make(map[grantPair]time.Time)}
}

// claim records that requester gets one of target's one-time prekeys now,
// unless it got one within the window or the table is full; it reports
// whether the grant was recorded.
func (g *oneTimeGrants) claim(requester, target string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expireLocked(now)
	pair := grantPair{requester, target}
	if _, ok := g.until[pair]; ok || len(g.order) >= g.max {
		return false
	}
	until := now.Add(g.window)
	g.until[pair] = until
	g.order = append(g.order, grant{pair, until})
	return true
}

// release withdraws a claim that handed nothing out (the target had no
// one-time prekey left), so that the requester gets one after a refill.
func (g *oneTimeGrants) release(requester, target string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.until, grantPair{requester, target})
}

func (g *oneTimeGrants) expireLocked(now time.Time) {
	n := 0
	for _, e := range g.order {
		if now.Before(e.until) {
			break
		}
		if g.until[e.pair].Equal(e.until) {
			delete(g.until, e.pair)
		}
		n++
	}
	// Reslicing keeps this O(1) per grant; append moves the live entries to
	// a new array once the old one's tail is used up.
	clear(g.order[:n])
	g.order = g.order[n:]
}
