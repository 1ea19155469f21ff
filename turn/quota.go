package turn

import (
	"net"
	"sync"
	"time"
)

// pendingTimeout is how long a slot reserved by the quota check waits for
// the allocation it was reserved for. pion creates the allocation right after
// the check on the same goroutine, so only a lost failure event can leave a
// reservation this old; it is then released.
const pendingTimeout = 10 * time.Second

// quota counts allocations per credential username and in total. pion asks
// QuotaHandler before it creates an allocation and reports the outcome through
// events, so the check reserves a slot (strict under concurrent requests on
// different listeners) that the creation event confirms and a failure event
// or the timeout releases.
type quota struct {
	maxUser, maxTotal int

	mu      sync.Mutex
	perUser map[string]int
	total   int
	pending map[string][]reservation // by client transport address
}

type reservation struct {
	username string
	at       time.Time
}

func newQuota(maxUser, maxTotal int) *quota {
	return &quota{
		maxUser:  maxUser,
		maxTotal: maxTotal,
		perUser:  make(map[string]int),
		pending:  make(map[string][]reservation),
	}
}

// reserve takes a slot for username or says which limit refuses it.
func (q *quota) reserve(username string, src net.Addr, now time.Time) (refusal string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(now)
	switch {
	case q.perUser[username] >= q.maxUser:
		return ReasonQuotaUser, false
	case q.total >= q.maxTotal:
		return ReasonQuotaTotal, false
	}
	q.perUser[username]++
	q.total++
	key := src.String()
	q.pending[key] = append(q.pending[key], reservation{username: username, at: now})
	return "", true
}

// created confirms the reservation for the allocation of src, or counts an
// allocation that arrived without one.
func (q *quota) created(username string, src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := src.String()
	for i, r := range q.pending[key] {
		if r.username == username {
			q.dropPendingLocked(key, i)
			return
		}
	}
	q.perUser[username]++
	q.total++
}

// failed releases the oldest reservation of src, whose allocation failed.
func (q *quota) failed(src net.Addr) {
	q.mu.Lock()
	defer q.mu.Unlock()
	key := src.String()
	if rs := q.pending[key]; len(rs) > 0 {
		q.releaseLocked(rs[0].username)
		q.dropPendingLocked(key, 0)
	}
}

// deleted frees the slot of a deleted allocation.
func (q *quota) deleted(username string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.releaseLocked(username)
}

func (q *quota) active() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}

func (q *quota) releaseLocked(username string) {
	if q.perUser[username] <= 1 {
		delete(q.perUser, username)
	} else {
		q.perUser[username]--
	}
	if q.total > 0 {
		q.total--
	}
}

func (q *quota) dropPendingLocked(key string, i int) {
	rs := append(q.pending[key][:i], q.pending[key][i+1:]...)
	if len(rs) == 0 {
		delete(q.pending, key)
	} else {
		q.pending[key] = rs
	}
}

func (q *quota) expireLocked(now time.Time) {
	for key, rs := range q.pending {
		for i := len(rs) - 1; i >= 0; i-- {
			if now.Sub(rs[i].at) > pendingTimeout {
				q.releaseLocked(rs[i].username)
				q.dropPendingLocked(key, i)
				rs = q.pending[key]
			}
		}
	}
}
