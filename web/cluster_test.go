package web_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/browsertest"
	"github.com/sotto-voice/sotto/internal/redistest"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/server"
	"github.com/sotto-voice/sotto/store"
	"github.com/sotto-voice/sotto/token"
)

// clusterNode starts a complete server (server.New, as "sotto serve
// --redis") on loopback as a node of the cluster sharing the Redis at
// redisURL.
func clusterNode(t *testing.T, secret []byte, redisURL string) *server.Server {
	t.Helper()
	s, err := server.New(server.Config{
		Secret:      secret,
		HTTP:        server.HTTPConfig{Addr: "127.0.0.1:0"},
		Media:       server.MediaConfig{IP: "127.0.0.1"},
		TURN:        server.TURNConfig{Off: true},
		DropTimeout: 10 * time.Second,
		Store:       store.Options{RedisURL: redisURL},
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

// A browser whose page comes from one node of a cluster calls through
// another: the room of the call it starts is placed on the other node
// (the first is busier), the page follows the wrong_node answer there
// across origins (CORS, its CSP, the event stream), and a Go SDK caller
// who redeems the invite through the first node lands on the same node.
// They hear each other, end to end encrypted, without a failure.
func TestBrowserCallAcrossClusterNodes(t *testing.T) {
	rs := redistest.Start(t)
	secret := make([]byte, 32)
	rand.Read(secret)
	a, b := clusterNode(t, secret, rs.URL()), clusterNode(t, secret, rs.URL())
	for _, n := range []*server.Server{a, b} {
		wait.For(t, "each node to see the other", func() bool {
			resp, err := http.Get(n.URL() + "/healthz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			var h struct{ Nodes int }
			return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Nodes == 2
		})
	}
	nodeA := &callServer{URL: a.URL()}

	// A call already running on a makes b the least-loaded node.
	ballast, err := token.Mint(secret, token.Claims{Room: "ballast", Identity: "ballast", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	joinGo(t, nodeA, ballast, false)

	alice := openPage(t, "alice", browsertest.WriteToneWAV(t, 10*time.Second))
	started := alice.startCall(nodeA, "Alice")
	if !strings.HasPrefix(started.InviteLink, nodeA.URL+"/join#invite=") {
		t.Fatalf("invite link %q, want one of the page's node", started.InviteLink)
	}
	invite := started.InviteLink[len(nodeA.URL+"/join#invite="):]
	// Bob knocks through a; a names b, where the call runs and alice lets
	// him in.
	rr := redeem(t, nodeA, alice, invite, "GoBob")
	bob := joinGo(t, nodeA, rr.Token, true)
	bobID, aliceID := bob.call.ID(), started.SelfID
	if peers := b.Media().Stats().Peers; peers != 2 {
		t.Errorf("b relays %d participants, want the call's 2", peers)
	}
	if peers := a.Media().Stats().Peers; peers != 1 {
		t.Errorf("a relays %d participants, want the ballast alone", peers)
	}

	alice.waitEncrypted(1)
	wait.For(t, "the Go caller to decrypt the browser", func() bool { return bob.framesFrom(aliceID) > 100 })
	alice.waitStats("the Go caller's frames decrypted, with energy", func(s pageStats) bool {
		in := s.Inbound[bobID]
		return s.Decrypt != nil && s.Decrypt.ByParticipant[bobID].Decrypted > 100 && in.Energy > 0
	})
	bob.checkClean("Bob")
	if st := alice.stats(); st.failures() != 0 {
		b, _ := json.Marshal(st)
		t.Errorf("the browser failed to decrypt %d frames: %s", st.failures(), b)
	}
	if s := alice.state(); s.Banner != "" {
		t.Errorf("the page shows a warning: %q", s.Banner)
	}
}
