package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/redistest"
	"github.com/sotto-voice/sotto/store"
)

const clusterSecret = "cluster-test-secret-0123456789"

func TestValidateStoreAndCluster(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		field string
	}{
		{Config{Store: store.Options{DataDir: "/tmp/x", RedisURL: "redis://127.0.0.1:1/0"}}, "Store.DataDir"},
		{Config{AdvertiseURL: "http://node1:7880"}, "AdvertiseURL"},
		{Config{Store: store.Options{RedisURL: "redis://127.0.0.1:1/0"}, AdvertiseURL: "node1:7880"}, "AdvertiseURL"},
	} {
		if got := fields(c.cfg.Validate()); !slices.Equal(got, []string{c.field}) {
			t.Errorf("%+v: invalid fields %v, want [%s]", c.cfg, got, c.field)
		}
	}
	var ce *ConfigError
	if _, err := New(Config{Secret: []byte(clusterSecret), Store: store.Options{RedisURL: "redis://127.0.0.1:1/0"}, Logger: discard}); err == nil {
		t.Error("New with a Redis that does not answer succeeded")
	} else if !errors.As(err, &ce) || ce.Field != "Store.RedisURL" {
		t.Errorf("New with a Redis that does not answer: %v", err)
	}
}

// health fetches /healthz of base.
func health(t *testing.T, base string) (int, api.Health) {
	t.Helper()
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, h
}

// A server with a data dir keeps its state in a file and says so; one with
// Redis is a cluster node: it advertises its listener's URL, says which
// node it is in /healthz and shows the cluster in /metrics; a Redis that
// goes away leaves it "degraded", still 200, until it returns.
func TestServerStores(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Secret: []byte(clusterSecret), Store: store.Options{DataDir: dir}, TURN: TURNConfig{Off: true}, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if status, h := health(t, s.URL()); status != http.StatusOK || h.Store != "file" || h.Status != "ok" || h.Node != "" {
		t.Errorf("healthz with a data dir: %d %+v", status, h)
	}
	shutdown(t, s)
	// The file is closed: another server may open it.
	s, err = New(Config{Secret: []byte(clusterSecret), Store: store.Options{DataDir: dir}, TURN: TURNConfig{Off: true}, Logger: discard})
	if err != nil {
		t.Fatalf("reopen the data dir: %v", err)
	}
	shutdown(t, s)

	rs := redistest.Start(t)
	var nodes []*Server
	for range 2 {
		n, err := New(Config{Secret: []byte(clusterSecret), Store: store.Options{RedisURL: rs.URL()}, MetricsToken: "m", Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		n.Start()
		t.Cleanup(func() { shutdown(t, n) })
		nodes = append(nodes, n)
	}
	a := nodes[0]
	if a.cluster.URL() != a.URL() {
		t.Errorf("advertised %q, want the listener's %q", a.cluster.URL(), a.URL())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, h := health(t, a.URL())
		if status == http.StatusOK && h.Status == "ok" && h.Store == "redis" && h.Node == a.cluster.ID() && h.Nodes == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthz of a cluster node: %d %+v", status, h)
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest(http.MethodGet, a.URL()+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer m")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, n := range nodes {
		want := `sotto_cluster_node_info{node="` + n.cluster.ID() + `",self="` + map[bool]string{true: "true", false: "false"}[n == a] + `",url="` + n.URL() + `"} 1`
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !strings.Contains(string(body), "sotto_cluster_nodes 2") {
		t.Error("metrics lack sotto_cluster_nodes 2")
	}

	rs.Stop()
	if status, h := health(t, a.URL()); status != http.StatusOK || h.Status != "degraded" || h.StoreStatus != "unavailable" {
		t.Errorf("healthz with Redis gone: %d %+v", status, h)
	}
	rs.Restart()
	deadline = time.Now().Add(10 * time.Second)
	for {
		if status, h := health(t, a.URL()); status == http.StatusOK && h.Status == "ok" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("healthz still degraded after Redis returned")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func shutdown(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}
