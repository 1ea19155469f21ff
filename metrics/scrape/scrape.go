// Package scrape reads a Prometheus /metrics endpoint back into numbers,
// which is how the load tester takes the server's figures before and after
// a run. It imports nothing of the server, so a client that scrapes does
// not link signaling, media or TURN.
package scrape

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Snapshot is one scrape: every series by its name with labels, such as
// `sotto_rtp_packets_dropped_total{reason="unknown_ssrc"}` or
// `process_cpu_seconds_total`.
type Snapshot map[string]float64

// Sum returns the sum of every series of the metric name, whatever its
// labels (0 when absent).
func (s Snapshot) Sum(name string) float64 {
	var total float64
	for series, v := range s {
		if series == name || strings.HasPrefix(series, name+"{") {
			total += v
		}
	}
	return total
}

// Fetch scrapes url (a /metrics endpoint in the Prometheus text format)
// with the bearer token, if any.
func Fetch(ctx context.Context, hc *http.Client, url, token string) (Snapshot, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	// Ask for plain text, not the protobuf or OpenMetrics variants.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", url, resp.Status)
	}
	snap, err := parseText(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	return snap, nil
}

// parseText reads the Prometheus text exposition format: one
// `series value [timestamp]` per line, comments starting with #.
func parseText(r io.Reader) (Snapshot, error) {
	snap := make(Snapshot)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		// Label values may hold spaces, so the series ends at the closing
		// brace when there is one.
		end := strings.LastIndexByte(line, '}') + 1
		if end == 0 {
			end = strings.IndexByte(line, ' ')
		}
		if end <= 0 || end >= len(line) {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		fields := strings.Fields(line[end:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("malformed line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", line, err)
		}
		snap[line[:end]] = v
	}
	return snap, sc.Err()
}

// Labels splits a series such as `sotto_cluster_node_info{node="a",url="http://x"}`
// into its metric name and label values; ok is false if the labels are
// malformed. Values are unescaped (\\, \" and \n).
func Labels(series string) (name string, labels map[string]string, ok bool) {
	open := strings.IndexByte(series, '{')
	if open < 0 {
		return series, map[string]string{}, true
	}
	name, rest := series[:open], series[open+1:]
	labels = map[string]string{}
	for {
		rest = strings.TrimLeft(rest, ", ")
		if strings.HasPrefix(rest, "}") {
			return name, labels, true
		}
		eq := strings.Index(rest, `="`)
		if eq <= 0 {
			return name, nil, false
		}
		key := rest[:eq]
		rest = rest[eq+2:]
		var v strings.Builder
		for {
			if rest == "" {
				return name, nil, false
			}
			c := rest[0]
			rest = rest[1:]
			if c == '"' {
				break
			}
			if c == '\\' && rest != "" {
				c, rest = rest[0], rest[1:]
				if c == 'n' {
					c = '\n'
				}
			}
			v.WriteByte(c)
		}
		labels[key] = v.String()
	}
}
