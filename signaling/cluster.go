package signaling

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/store"
)

// Cluster places rooms across the nodes of a cluster; package cluster
// implements it. A join, or the end of a call, for a room another node
// runs is answered 409 wrong_node with that node's URL.
type Cluster interface {
	// Place decides where room runs, claiming it for a node if nobody
	// runs it: "" for this node, else the base URL of the node that does.
	// Errors wrap store.ErrUnavailable, or mean "retry shortly".
	Place(ctx context.Context, room string) (nodeURL string, err error)
	// Owner returns the base URL of the node that runs room when that is
	// another node, "" otherwise; it places nothing.
	Owner(ctx context.Context, room string) (nodeURL string, err error)
	// Origins lists the base URLs of the cluster's live nodes: the pages
	// they serve may call this node's API and open event streams here.
	Origins() []string
	// URL is this node's advertised base URL.
	URL() string
	// ID names this node, and Alive counts the live nodes it sees.
	ID() string
	Alive() int
}

// place answers a join when its room runs on another node (wrong_node),
// or cannot be placed now, and reports whether it did. A room placed here
// for its first join is checked again for an end that raced with the
// claim (handleEndCall checks the claim after the end).
func (s *Server) place(w http.ResponseWriter, r *http.Request, room string) bool {
	if s.cluster == nil {
		return false
	}
	s.mu.Lock()
	running := s.rooms[room] != nil
	s.mu.Unlock()
	nodeURL, err := s.cluster.Place(r.Context(), room)
	if err != nil {
		s.refuseJoin(w, s.placeError(err))
		return true
	}
	if nodeURL != "" {
		s.counters.redirects.Add(1)
		writeError(w, wrongNode(room, nodeURL))
		return true
	}
	if !running {
		ended, apiErr := s.callEnded(r.Context(), room)
		if apiErr == nil && ended {
			apiErr = errorf(api.CodeCallEnded, "this call has ended")
		}
		if apiErr != nil {
			s.refuseJoin(w, apiErr)
			return true
		}
	}
	return false
}

// owner answers a request about room that another node must serve
// (wrong_node), or that cannot be told where to go, and reports whether
// it did.
func (s *Server) owner(w http.ResponseWriter, r *http.Request, room string) bool {
	if s.cluster == nil {
		return false
	}
	nodeURL, err := s.cluster.Owner(r.Context(), room)
	switch {
	case err != nil:
		writeError(w, s.placeError(err))
	case nodeURL != "":
		writeError(w, wrongNode(room, nodeURL))
	default:
		return false
	}
	return true
}

// nodeURL is this node's advertised URL in a cluster, "" alone.
func (s *Server) nodeURL() string {
	if s.cluster == nil {
		return ""
	}
	return s.cluster.URL()
}

func wrongNode(room, nodeURL string) *api.Error {
	return &api.Error{Code: api.CodeWrongNode, Message: fmt.Sprintf("room %q runs on another node", room), NodeURL: nodeURL}
}

// placeError maps a Cluster error to its API error.
func (s *Server) placeError(err error) *api.Error {
	if errors.Is(err, store.ErrUnavailable) {
		return s.storeError(err)
	}
	s.log.Info("room cannot be placed now", "err", err)
	return errorf(api.CodeRetry, "the room cannot be placed now: %v; retry", err)
}

// Rooms lists the rooms this server runs now.
func (s *Server) Rooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.rooms))
	for name := range s.rooms {
		out = append(out, name)
	}
	return out
}

// CloseRoom removes every participant of room, telling each reason (an
// api.Reason*): for a room that must no longer run here.
func (s *Server) CloseRoom(room, reason string) {
	s.mu.Lock()
	var c cleanup
	if rm := s.rooms[room]; rm != nil {
		for _, p := range rm.participants {
			c.add(s.removeLocked(p, reason))
		}
	}
	s.mu.Unlock()
	c.run(s.log)
}

// originPatterns are the browser origins, besides the server's own, whose
// pages may use the API and open event streams: Config.OriginPatterns and
// the cluster's nodes.
func (s *Server) originPatterns() []string {
	if s.cluster == nil {
		return s.cfg.OriginPatterns
	}
	patterns := append([]string(nil), s.cfg.OriginPatterns...)
	for _, base := range s.cluster.Origins() {
		if u, err := url.Parse(base); err == nil && u.Host != "" {
			patterns = append(patterns, u.Scheme+"://"+escapePattern(u.Host))
		}
	}
	return patterns
}

// escapePattern quotes the path.Match metacharacters of a literal host
// (an IPv6 literal has brackets).
func escapePattern(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// crossOrigin reports whether origin, the Origin of a request from a page
// served elsewhere, matches originPatterns as the event stream checks it:
// a pattern with a scheme matches scheme://host, one without the host.
func (s *Server) crossOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || strings.EqualFold(u.Host, r.Host) {
		return false
	}
	for _, p := range s.originPatterns() {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return true
		}
	}
	return false
}

// withCORS lets pages of the allowed origins call the API: a page served
// by one node of a cluster joins a room on another. The API authenticates
// with bearer tokens and sessions, never cookies.
func (s *Server) withCORS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" || !s.crossOrigin(r, origin) {
			h.ServeHTTP(w, r)
			return
		}
		hdr := w.Header()
		hdr.Set("Access-Control-Allow-Origin", origin)
		hdr.Add("Vary", "Origin")
		hdr.Set("Access-Control-Expose-Headers", "Retry-After")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hdr.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
			hdr.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			hdr.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}
