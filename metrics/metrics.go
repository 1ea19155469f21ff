package metrics

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/cluster"
	"github.com/sotto-voice/sotto/internal/connlimit"
	"github.com/sotto-voice/sotto/media"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/turn"
)

// Sources are the snapshots a registry reads at scrape time. A nil source
// is left out (a server without TURN exports no sotto_turn_* series).
type Sources struct {
	Media     func() media.Stats
	Signaling func() signaling.Stats
	TURN      func() turn.Stats
	HTTP      func() connlimit.Stats // connections to the HTTP listener
	Cluster   func() cluster.Stats   // this node's view of its cluster
}

// NewRegistry returns a private registry (not prometheus.DefaultRegisterer)
// with Sotto's collectors and the Go and process collectors, whose
// process_cpu_seconds_total is what the load tester divides by forwarded
// packets.
func NewRegistry(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src.Media != nil {
		reg.MustRegister(mediaCollector(src.Media))
	}
	if src.Signaling != nil {
		reg.MustRegister(signalingCollector(src.Signaling))
	}
	if src.TURN != nil {
		reg.MustRegister(turnCollector(src.TURN))
	}
	if src.HTTP != nil {
		reg.MustRegister(httpCollector(src.HTTP))
	}
	if src.Cluster != nil {
		reg.MustRegister(clusterCollector(src.Cluster))
	}
	return reg
}

// Handler serves reg in the Prometheus text format, behind Guard(token).
func Handler(reg prometheus.Gatherer, token string) http.Handler {
	return Guard(token)(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
}

// Guard returns middleware that, with a non-empty token, answers 401 to
// requests without "Authorization: Bearer <token>"; with an empty token it
// lets everything through. The comparison is in constant time over SHA-256
// digests, so neither the token nor its length leaks through timing.
func Guard(token string) func(http.Handler) http.Handler {
	if token == "" {
		return func(h http.Handler) http.Handler { return h }
	}
	want := sha256.Sum256([]byte(token))
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got := sha256.Sum256([]byte(bearer(r)))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sotto-metrics"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return ""
	}
	return strings.TrimSpace(h[len(scheme):])
}

// The reasons exported with a zero value before they first happen, so that
// rate() and alerts work from the start.
var (
	joinFailureCodes = []api.ErrorCode{
		api.CodeUnauthorized, api.CodeTokenExpired, api.CodeWrongRoom, api.CodeInvalidName,
		api.CodeInvalidJSON, api.CodeBadRequest, api.CodeMessageTooLarge, api.CodeInvalidSDP,
		api.CodeUnsupportedCodec, api.CodeRoomFull, api.CodeTooManyRooms, api.CodeShuttingDown,
		api.CodeInternal, api.CodeRetry, api.CodeRequestTimeout, api.CodeStoreUnavailable,
	}
	envelopeRefusalCodes = []api.ErrorCode{
		api.CodeUnknownRecipient, api.CodeEnvelopeTooLarge, api.CodeRecipientBusy,
		api.CodeEnvelopeRateLimited,
	}
)

// collector turns one snapshot per scrape into const metrics.
type collector struct {
	descs   []*prometheus.Desc
	collect func(emit func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string))
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.collect(func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("sotto_"+name, help, labels, nil)
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

func mediaCollector(stats func() media.Stats) prometheus.Collector {
	var (
		rooms        = desc("rooms", "Open rooms.")
		participants = desc("participants", "Participants connected to the media relay.")
		tracks       = desc("tracks", "Published audio tracks being forwarded.")
		pktsIn       = desc("rtp_packets_received_total", "RTP packets accepted from publishers.")
		bytesIn      = desc("rtp_bytes_received_total", "Bytes of RTP packets accepted from publishers, header included.")
		pktsOut      = desc("rtp_packets_forwarded_total", "RTP packets written to subscribers, one per subscriber.")
		bytesOut     = desc("rtp_bytes_forwarded_total", "Bytes of RTP packets written to subscribers.")
		dropped      = desc("rtp_packets_dropped_total", "RTP packets dropped, by reason.", "reason")
		nacks        = desc("nacks_answered_total", "Packets resent from history after a subscriber's NACK.")
		nacksMissed  = desc("nacks_missed_total", "NACKed packets no longer in history.")
		upNACKs      = desc("upstream_nacks_total", "Requests to publishers to resend a lost packet, one per packet per request.")
		upRecovered  = desc("upstream_recovered_total", "Packets lost on the way from a publisher that arrived after being asked for.")
		upGivenUp    = desc("upstream_given_up_total", "Packets lost on the way from a publisher, asked for and never received in time.")
	)
	return &collector{
		descs: []*prometheus.Desc{rooms, participants, tracks, pktsIn, bytesIn, pktsOut, bytesOut, dropped, nacks, nacksMissed, upNACKs, upRecovered, upGivenUp},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			s := stats()
			emit(rooms, gauge, float64(s.Rooms))
			emit(participants, gauge, float64(s.Peers))
			emit(tracks, gauge, float64(s.Tracks))
			emit(pktsIn, counter, float64(s.PacketsReceived))
			emit(bytesIn, counter, float64(s.BytesReceived))
			emit(pktsOut, counter, float64(s.PacketsForwarded))
			emit(bytesOut, counter, float64(s.BytesForwarded))
			for reason, n := range s.Dropped {
				emit(dropped, counter, float64(n), reason)
			}
			emit(nacks, counter, float64(s.NACKsAnswered))
			emit(nacksMissed, counter, float64(s.NACKsMissed))
			emit(upNACKs, counter, float64(s.UpstreamNACKs))
			emit(upRecovered, counter, float64(s.UpstreamRecovered))
			emit(upGivenUp, counter, float64(s.UpstreamGivenUp))
		},
	}
}

func signalingCollector(stats func() signaling.Stats) prometheus.Collector {
	var (
		joins    = desc("joins_total", "Joins answered 200.")
		redirect = desc("join_redirects_total", "Joins answered wrong_node: the room runs on another node of the cluster.")
		joinFail = desc("join_failures_total", "Refused joins, by error code.", "reason")
		relayed  = desc("envelopes_relayed_total", "End-to-end envelopes queued for their recipient.")
		refused  = desc("envelopes_refused_total", "Envelopes refused, by error code.", "reason")
	)
	return &collector{
		descs: []*prometheus.Desc{joins, redirect, joinFail, relayed, refused},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			s := stats()
			emit(joins, counter, float64(s.Joins))
			emit(redirect, counter, float64(s.JoinRedirects))
			emitByReason(emit, joinFail, s.JoinFailures, joinFailureCodes)
			emit(relayed, counter, float64(s.EnvelopesRelayed))
			emitByReason(emit, refused, s.EnvelopesRefused, envelopeRefusalCodes)
		},
	}
}

// emitByReason emits every known reason (zero until it happens) and any
// other reason the snapshot holds.
func emitByReason(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string), d *prometheus.Desc, counts map[string]uint64, known []api.ErrorCode) {
	for _, code := range known {
		emit(d, counter, float64(counts[string(code)]), string(code))
	}
	for reason, n := range counts {
		if !isKnown(reason, known) {
			emit(d, counter, float64(n), reason)
		}
	}
}

func isKnown(reason string, known []api.ErrorCode) bool {
	for _, c := range known {
		if string(c) == reason {
			return true
		}
	}
	return false
}

func turnCollector(stats func() turn.Stats) prometheus.Collector {
	var (
		active   = desc("turn_allocations", "TURN allocations alive.")
		created  = desc("turn_allocations_created_total", "TURN allocations created.")
		refused  = desc("turn_refused_total", "TURN requests refused, by reason.", "reason")
		dropped  = desc("turn_dropped_packets_total", "Relayed packets dropped by the peer policy.")
		tcpConns = desc("turn_tcp_connections", "TURN-over-TCP/TLS connections open.")
		tcpRefd  = desc("turn_tcp_refused_total", "TURN TCP/TLS connections closed at once because the cap was reached.")
	)
	return &collector{
		descs: []*prometheus.Desc{active, created, refused, dropped, tcpConns, tcpRefd},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			s := stats()
			emit(active, gauge, float64(s.AllocationsActive))
			emit(created, counter, float64(s.AllocationsCreated))
			for reason, n := range s.Refused() {
				emit(refused, counter, float64(n), reason)
			}
			emit(dropped, counter, float64(s.DroppedPackets))
			emit(tcpConns, gauge, float64(s.TCPConns))
			emit(tcpRefd, counter, float64(s.TCPRefused))
		},
	}
}

func httpCollector(stats func() connlimit.Stats) prometheus.Collector {
	var (
		open    = desc("http_connections", "HTTP connections open, event streams included.")
		refused = desc("http_connections_refused_total", "HTTP connections closed at once, by the cap reached.", "reason")
	)
	return &collector{
		descs: []*prometheus.Desc{open, refused},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			s := stats()
			emit(open, gauge, float64(s.Open))
			emit(refused, counter, float64(s.RefusedPerIP), "per_ip")
			emit(refused, counter, float64(s.RefusedTotal), "total")
		},
	}
}

// clusterCollector exports the node's view of its cluster: the live nodes
// with what each last published (sotto_cluster_node_*, labelled with the
// node's id and URL, which is how "sotto load" finds every node), and this
// node's own leases and placements.
func clusterCollector(stats func() cluster.Stats) prometheus.Collector {
	var (
		nodes        = desc("cluster_nodes", "Live nodes this node sees, itself included.")
		owned        = desc("cluster_rooms_owned", "Rooms whose lease this node renewed at its last heartbeat.")
		draining     = desc("cluster_draining", "1 while this node drains (SIGTERM): it takes no new rooms.")
		storeOK      = desc("cluster_store_up", "1 if the last heartbeat reached the shared store.")
		storeErrors  = desc("cluster_store_errors_total", "Heartbeats the shared store did not answer.")
		lost         = desc("cluster_rooms_lost_total", "Rooms closed here because another node held their lease.")
		placed       = desc("cluster_placements_total", "First joins placed, by where: here or elsewhere.", "where")
		nodeInfo     = desc("cluster_node_info", "A live node, as this node sees it (1).", "node", "url", "self")
		nodeRooms    = desc("cluster_node_rooms", "Rooms a live node last published.", "node")
		nodeParts    = desc("cluster_node_participants", "Participants a live node last published.", "node")
		nodeCPU      = desc("cluster_node_cpu_cores", "Cores a live node kept busy over its last heartbeat.", "node")
		nodeDraining = desc("cluster_node_draining", "1 if a live node last published that it drains.", "node")
	)
	return &collector{
		descs: []*prometheus.Desc{nodes, owned, draining, storeOK, storeErrors, lost, placed, nodeInfo, nodeRooms, nodeParts, nodeCPU, nodeDraining},
		collect: func(emit func(*prometheus.Desc, prometheus.ValueType, float64, ...string)) {
			s := stats()
			emit(nodes, gauge, float64(s.NodesAlive))
			emit(owned, gauge, float64(s.RoomsOwned))
			emit(draining, gauge, bool01(s.Draining))
			emit(storeOK, gauge, bool01(s.StoreOK))
			emit(storeErrors, counter, float64(s.StoreErrors))
			emit(lost, counter, float64(s.RoomsLost))
			emit(placed, counter, float64(s.PlacedHere), "here")
			emit(placed, counter, float64(s.PlacedElsewhere), "elsewhere")
			for _, n := range s.Nodes {
				emit(nodeInfo, gauge, 1, n.ID, n.URL, fmt.Sprint(n.ID == s.Self))
				emit(nodeRooms, gauge, float64(n.Rooms), n.ID)
				emit(nodeParts, gauge, float64(n.Participants), n.ID)
				emit(nodeCPU, gauge, n.CPU, n.ID)
				emit(nodeDraining, gauge, bool01(n.Draining), n.ID)
			}
		},
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
