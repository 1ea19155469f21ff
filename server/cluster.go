package server

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/cluster"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/store"
)

// storeOpenTimeout bounds opening the state store (Redis must answer) and
// a cluster node's first record.
const storeOpenTimeout = 5 * time.Second

// openStore opens the store o chooses.
func openStore(o store.Options) (store.Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), storeOpenTimeout)
	defer cancel()
	o.Now = nil
	st, err := store.Open(ctx, o)
	if err != nil {
		field := "Store.DataDir"
		if o.RedisURL != "" {
			field = "Store.RedisURL"
		}
		return nil, &ConfigError{Field: field, Err: err}
	}
	return st, nil
}

// storeKind names the store o chooses, for /healthz.
func storeKind(o store.Options) string {
	switch {
	case o.RedisURL != "":
		return "redis"
	case o.DataDir != "":
		return "file"
	default:
		return "memory"
	}
}

// newCluster makes the server a node of the cluster sharing its Redis,
// reachable at cfg.AdvertiseURL or else at its listener's address.
func (s *Server) newCluster(cfg Config, scheme string, addr net.Addr) (*cluster.Cluster, error) {
	advertise := cfg.AdvertiseURL
	if advertise == "" {
		host, _, err := net.SplitHostPort(addr.String())
		if ip := net.ParseIP(host); err != nil || ip == nil || ip.IsUnspecified() {
			return nil, &ConfigError{Field: "AdvertiseURL", Err: errors.New("required for a cluster node listening on every interface: the URL clients reach this node at")}
		}
		advertise = httpURL(scheme, addr)
	}
	media := []string{"udp " + s.media.UDPAddr().String()}
	if a := s.media.TCPAddr(); a != nil {
		media = append(media, "tcp "+a.String())
	}
	for _, ip := range cfg.Media.PublicIPs {
		media = append(media, "public "+ip)
	}
	maxRooms := cfg.MaxRooms
	if maxRooms == 0 {
		maxRooms = signaling.DefaultMaxRooms
	}
	c, err := cluster.New(cluster.Config{
		Store:    s.store,
		URL:      advertise,
		Media:    media,
		TURN:     s.turn.addrs(),
		MaxRooms: maxRooms,
		Load: func() cluster.Load {
			st := s.media.Stats()
			return cluster.Load{Rooms: st.Rooms, Participants: st.Peers}
		},
		Rooms:  func() []string { return s.sig.Rooms() },
		Lost:   func(room string) { s.sig.CloseRoom(room, api.ReasonMoved) },
		Logger: s.log.With("component", "cluster"),
	})
	if err != nil {
		return nil, &ConfigError{Field: "AdvertiseURL", Err: err}
	}
	return c, nil
}

// signalingCluster is the cluster as signaling sees it; nil (an untyped
// nil interface) for a server alone.
func (s *Server) signalingCluster() signaling.Cluster {
	if s.cluster == nil {
		return nil
	}
	return s.cluster
}

// addrs lists what clients reach TURN at, for the node's record.
func (t *turnService) addrs() []string {
	switch {
	case t.server != nil:
		out := []string{"udp " + t.server.UDPAddr().String(), "tcp " + t.server.TCPAddr().String()}
		if a := t.server.TLSAddr(); a != nil {
			out = append(out, "tls "+a.String())
		}
		return out
	case len(t.urls) > 0:
		return t.urls
	}
	return nil
}

// drain hands the node's rooms back to the cluster before its callers are
// told to rejoin, so that they land on another node at once.
func (s *Server) drain(ctx context.Context) {
	if s.cluster == nil {
		return
	}
	if err := s.cluster.Drain(ctx); err != nil {
		s.log.Warn("cluster drain", "err", err)
	}
}

// closeState removes the node from the cluster and closes the state store.
func (s *Server) closeState(ctx context.Context) {
	if s.cluster != nil {
		if err := s.cluster.Stop(ctx); err != nil {
			s.log.Warn("cluster leave", "err", err)
		}
	}
	if err := s.store.Close(); err != nil {
		s.log.Warn("close state store", "err", err)
	}
}
