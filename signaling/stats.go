package signaling

import (
	"maps"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/sotto-voice/sotto/api"
)

// Stats is a snapshot of the server's counters, for metrics. Every value
// only grows.
type Stats struct {
	Joins uint64 // joins answered 200
	// JoinRedirects counts joins answered wrong_node: the room runs on
	// another node of the cluster.
	JoinRedirects    uint64
	JoinFailures     map[string]uint64 // refused joins by error code (api.Code*)
	EnvelopesRelayed uint64            // envelopes queued for their recipient
	EnvelopesRefused map[string]uint64 // refused envelopes by error code
	// PrekeyFetchesRefused counts refused GET /v1/prekeys/{identity} by
	// error code: not_found (absent or not the caller's to see) and
	// rate_limited.
	PrekeyFetchesRefused map[string]uint64
}

// counters are updated on joins and envelopes, never per media packet.
// Refusals are rare, so a map under a mutex is cheap enough.
type counters struct {
	joins            atomic.Uint64
	redirects        atomic.Uint64
	envelopesRelayed atomic.Uint64

	mu                   sync.Mutex
	joinFailures         map[string]uint64
	envelopesRefused     map[string]uint64
	prekeyFetchesRefused map[string]uint64
}

func (c *counters) count(m *map[string]uint64, code api.ErrorCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *m == nil {
		*m = make(map[string]uint64)
	}
	(*m)[string(code)]++
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.counters
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Stats{
		Joins:                c.joins.Load(),
		JoinRedirects:        c.redirects.Load(),
		EnvelopesRelayed:     c.envelopesRelayed.Load(),
		JoinFailures:         maps.Clone(c.joinFailures),
		EnvelopesRefused:     maps.Clone(c.envelopesRefused),
		PrekeyFetchesRefused: maps.Clone(c.prekeyFetchesRefused),
	}
	if st.JoinFailures == nil {
		st.JoinFailures = map[string]uint64{}
	}
	if st.EnvelopesRefused == nil {
		st.EnvelopesRefused = map[string]uint64{}
	}
	if st.PrekeyFetchesRefused == nil {
		st.PrekeyFetchesRefused = map[string]uint64{}
	}
	return st
}

// refuseJoin counts a failed join by its code and answers it.
func (s *Server) refuseJoin(w http.ResponseWriter, err *api.Error) {
	s.counters.count(&s.counters.joinFailures, err.Code)
	writeError(w, err)
}

// refuseEnvelope counts a refused envelope and tells its sender.
func (s *Server) refuseEnvelope(from *participant, code api.ErrorCode, msg string, id uint64) {
	s.counters.count(&s.counters.envelopesRefused, code)
	from.sendError(code, msg, id)
}
