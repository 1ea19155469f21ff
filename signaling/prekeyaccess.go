package signaling

import "time"

// Who may fetch whose prekey bundle, how often, and how many one-time
// prekeys each requester gets. This is policy only: the bundles are kept
// in the state store (prekeys.go).
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
)

// prekeyAccess is the fetch policy's per-node state: token buckets keyed by
// identity (ipLimiter takes any key), the token's for requesters, the
// path's for targets. They bound the load on this node. The grants of
// one-time prekeys are marks in the state store, shared like the directory
// they ration: one per requester and target per window on any node, and
// across restarts.
type prekeyAccess struct {
	requesters *ipLimiter
	targets    *ipLimiter
}

func newPrekeyAccess(maxParticipants int) *prekeyAccess {
	burst := float64(prekeyFetchesPerPeer * maxParticipants)
	return &prekeyAccess{
		requesters: newIPLimiter(PrekeyFetchesPerSecond, burst),
		targets:    newIPLimiter(PrekeyFetchesPerSecond, burst),
	}
}

// grantKey names the store mark recording that requester got one of
// target's one-time prekeys. Identities never contain ':'.
func grantKey(requester, target string) string {
	return "prekey-grant:" + requester + ":" + target
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
