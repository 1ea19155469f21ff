package server

import (
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/sotto-voice/sotto/metrics"
	"github.com/sotto-voice/sotto/web"
)

// handler routes the API and /healthz to signaling, /metrics (and
// /debug/pprof/) behind the metrics token, and everything else to the
// browser client.
func (s *Server) handler(cfg Config) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/", s.sig)
	mux.Handle("/healthz", s.sig)
	if s.cluster != nil {
		mux.Handle("/", web.ClusterHandler(s.cluster.Origins))
	} else {
		mux.Handle("/", web.Handler())
	}
	src := metrics.Sources{
		Media:     s.media.Stats,
		Signaling: s.sig.Stats,
		TURN:      s.turn.stats(),
		HTTP:      s.conns.Stats,
	}
	if s.cluster != nil {
		src.Cluster = s.cluster.Stats
	}
	reg := metrics.NewRegistry(src)
	mux.Handle("/metrics", metrics.Handler(reg, cfg.MetricsToken))
	if cfg.Pprof {
		guard := metrics.Guard(cfg.MetricsToken)
		mux.Handle("/debug/pprof/", guard(http.HandlerFunc(pprof.Index)))
		mux.Handle("/debug/pprof/profile", guard(http.HandlerFunc(pprof.Profile)))
		mux.Handle("/debug/pprof/trace", guard(http.HandlerFunc(pprof.Trace)))
		mux.Handle("/debug/pprof/symbol", guard(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("/debug/pprof/cmdline", guard(http.HandlerFunc(pprof.Cmdline)))
	}
	return withBodyTimeout(mux, cfg.HTTP.BodyTimeout)
}

// withBodyTimeout gives a request with a body d to deliver it. The deadline
// is lifted once the body has been read to its end, so that a handler may
// work on (a join waits for ICE gathering) and the server may read the
// next request. Requests without a body, WebSocket upgrades among them,
// get no deadline: an event stream lives as long as it is used.
func withBodyTimeout(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil && r.Body != http.NoBody {
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline at the end of the body.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
