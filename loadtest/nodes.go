package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/sotto-voice/sotto/metrics/scrape"
)

// A cluster behind one URL: the server's /metrics lists the cluster's
// nodes (sotto_cluster_node_info, with each node's URL); the load tester
// then scrapes every node, sums their figures into the report's server
// figures and reports each node on its own. Callers join through the one
// URL and follow the cluster's answers to the node that runs their room,
// which spreads the rooms over the nodes.

// NodeReport is one node of a cluster over the steady part.
type NodeReport struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Rooms and Participants the node relayed at the end of the steady
	// part.
	Rooms        int `json:"rooms"`
	Participants int `json:"participants"`
	// CPUSeconds the node's process used, ForwardedPackets it forwarded.
	CPUSeconds                    float64 `json:"cpu_seconds"`
	ForwardedPackets              uint64  `json:"forwarded_packets"`
	ServerCPUUsPerForwardedPacket float64 `json:"cpu_us_per_forwarded_packet"`
}

// nodeScrape is one scrape of every node of a cluster, by node id.
type nodeScrape struct {
	urls  map[string]string
	snaps map[string]scrape.Snapshot
}

// clusterNodes reads the nodes an entry's /metrics lists, by id; none for
// a server alone.
func clusterNodes(entry scrape.Snapshot) map[string]string {
	nodes := map[string]string{}
	for series := range entry {
		name, labels, ok := scrape.Labels(series)
		if ok && name == "sotto_cluster_node_info" && labels["node"] != "" && labels["url"] != "" {
			nodes[labels["node"]] = labels["url"]
		}
	}
	return nodes
}

// scrape reads the server's figures: those of the server at MetricsURL,
// or, when it is a node of a cluster, the sum of every node's, with each
// node's own snapshot (nil for a server alone).
func (r *loadRun) scrape() (scrape.Snapshot, *nodeScrape, error) {
	ctx, cancel := context.WithTimeout(r.ctx, scrapeTimeout)
	defer cancel()
	hc := &http.Client{Timeout: scrapeTimeout}
	entry, err := scrape.Fetch(ctx, hc, r.cfg.MetricsURL, r.cfg.MetricsToken)
	if err != nil {
		return nil, nil, err
	}
	nodes := clusterNodes(entry)
	if len(nodes) == 0 {
		return entry, nil, nil
	}
	ns := &nodeScrape{urls: nodes, snaps: map[string]scrape.Snapshot{}}
	total := scrape.Snapshot{}
	for id, base := range nodes {
		snap, err := scrape.Fetch(ctx, hc, strings.TrimSuffix(base, "/")+"/metrics", r.cfg.MetricsToken)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: %w", id, err)
		}
		ns.snaps[id] = snap
		for series, v := range snap {
			total[series] += v
		}
	}
	return total, ns, nil
}

// nodeReports compares two scrapes of a cluster node by node; nodes
// missing from either are left out.
func nodeReports(before, after *nodeScrape) []NodeReport {
	if before == nil || after == nil {
		return nil
	}
	var out []NodeReport
	for id, a := range after.snaps {
		b, ok := before.snaps[id]
		if !ok {
			continue
		}
		n := NodeReport{
			ID:               id,
			URL:              after.urls[id],
			Rooms:            int(a.Sum("sotto_rooms")),
			Participants:     int(a.Sum("sotto_participants")),
			CPUSeconds:       round3(a.Sum("process_cpu_seconds_total") - b.Sum("process_cpu_seconds_total")),
			ForwardedPackets: uint64(max(0, a.Sum("sotto_rtp_packets_forwarded_total")-b.Sum("sotto_rtp_packets_forwarded_total"))),
		}
		if n.ForwardedPackets > 0 {
			n.ServerCPUUsPerForwardedPacket = round3(n.CPUSeconds * 1e6 / float64(n.ForwardedPackets))
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(x, y NodeReport) int { return strings.Compare(x.URL, y.URL) })
	return out
}

// joinWatch is the HTTP transport of one caller's join: it notes whether
// a node answered the join with another (409 wrong_node), so that joins
// through a node that does not run the room are timed apart.
type joinWatch struct {
	base       http.RoundTripper
	redirected atomic.Bool
}

func (w *joinWatch) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := w.base.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost && resp.StatusCode == http.StatusConflict && strings.HasSuffix(req.URL.Path, "/join") {
		w.redirected.Store(true)
	}
	return resp, err
}

// writeNodes prints the nodes of a cluster run, after the table.
func (rep *Report) writeNodes(w io.Writer) {
	if len(rep.Nodes) == 0 {
		return
	}
	fmt.Fprintf(w, "cluster of %d nodes (joins answered by another node: %d, join ms p50 %.1f; direct p50 %.1f):\n",
		len(rep.Nodes), rep.JoinsRedirected, rep.JoinMSRedirected.P50, rep.JoinMSDirect.P50)
	for _, n := range rep.Nodes {
		fmt.Fprintf(w, "  %s  %d rooms, %d participants, %.2f s CPU for %d forwarded packets: %.2f µs per forwarded packet\n",
			n.URL, n.Rooms, n.Participants, n.CPUSeconds, n.ForwardedPackets, n.ServerCPUUsPerForwardedPacket)
	}
}
