package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/server"
	"github.com/sotto-voice/sotto/token"
	"github.com/sotto-voice/sotto/turn"
)

func TestParseServeTURNDefaults(t *testing.T) {
	o, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tu := o.cfg.TURN
	if tu.Off || tu.Port != 3478 || tu.TLSPort != 5349 || tu.RelayPortMin != 49152 || tu.RelayPortMax != 65535 ||
		tu.MaxAllocationsPerUser != 16 || tu.MaxAllocations != 4096 || tu.CredentialTTL != turn.DefaultCredentialTTL || len(tu.URLs) != 0 || tu.Secret != nil {
		t.Fatalf("TURN defaults %+v", tu)
	}
}

func TestParseServeTURNEnv(t *testing.T) {
	t.Setenv("SOTTO_TURN_URL", "turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349?transport=tcp")
	t.Setenv("SOTTO_TURN_SECRET", "coturn-static-auth-secret")
	t.Setenv("SOTTO_TURN_CREDENTIAL_TTL", "90m")
	t.Setenv("SOTTO_TURN_RELAY_PORTS", "50000-50100")
	t.Setenv("SOTTO_TURN_ALLOW", "10.0.0.0/8")
	o, err := parseServe([]string{"--turn-allow", "192.168.1.0/24", "--turn-port", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tu := o.cfg.TURN
	if len(tu.URLs) != 2 || string(tu.Secret) != "coturn-static-auth-secret" || tu.CredentialTTL != 90*time.Minute ||
		tu.RelayPortMin != 50000 || tu.RelayPortMax != 50100 || tu.Port != 0 {
		t.Fatalf("TURN options %+v", tu)
	}
	// The command line wins over the environment.
	if !slices.Equal(tu.Allow, []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}) {
		t.Fatalf("--turn-allow %v", tu.Allow)
	}

	t.Setenv("SOTTO_TURN", "false")
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "--turn=false") {
		t.Fatalf("--turn=false with --turn-url: %v", err)
	}
}

func TestParseServeTURNRefusesBadValues(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--turn-port", "70000"}, "--turn-port"},
		{[]string{"--turn-tls-port", "-1"}, "--turn-tls-port"},
		{[]string{"--turn-relay-ports", "60000-50000"}, "--turn-relay-ports"},
		{[]string{"--turn-relay-ports", "50000"}, "--turn-relay-ports"},
		{[]string{"--turn-relay-ports", "0-100"}, "--turn-relay-ports"},
		{[]string{"--turn-allow", "10.0.0.1"}, "--turn-allow"},
		{[]string{"--turn-secret", "short"}, "--turn-secret"},
		{[]string{"--turn-credential-ttl", "13h"}, "--turn-credential-ttl"},
		{[]string{"--turn-credential-ttl", "0s"}, "--turn-credential-ttl"},
		{[]string{"--turn-max-allocations", "0"}, "--turn-max-allocations"},
		{[]string{"--turn-max-allocations-per-user", "-1"}, "--turn-max-allocations-per-user"},
		{[]string{"--turn-url", "http://turn.example.com", "--turn-secret", "0123456789abcdef"}, "--turn-url"},
		// An external TURN server must be told the secret: no derived one.
		{[]string{"--turn-url", "turn:turn.example.com:3478"}, "--turn-secret"},
		// On every interface, TURN needs an IPv4 public IP to advertise.
		{[]string{"--http", "0.0.0.0:0"}, "--public-ip"},
		{[]string{"--media-ip", "", "--public-ip", "2001:db8::1"}, "--public-ip"},
	} {
		_, err := parseServe(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err %v, want one naming %s", c.args, err, c.want)
		}
	}
	// STUN alone needs no secret.
	if _, err := parseServe([]string{"--turn-url", "stun:stun.example.com:3478"}, io.Discard); err != nil {
		t.Errorf("STUN-only --turn-url: %v", err)
	}
}

var turnURL = regexp.MustCompile(`^turn:127\.0\.0\.1:(\d+)\?transport=udp$`)

// The binary starts TURN next to signaling and media, hands each
// participant credentials that the running TURN server accepts, and stops
// it on SIGTERM.
func TestServeStartsTURN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	secret := "serve-turn-test-secret-0123456789"
	srv := startServe(t, ctx, []string{"SOTTO_SECRET=" + secret})
	stderr, base := srv.stderr, srv.url
	// stderr is copied by another goroutine: the log line may lag behind.
	for deadline := time.Now().Add(wait.Timeout); !strings.Contains(stderr.String(), "turn: serving"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no TURN log line; stderr:\n%s", stderr.String())
		}
	}

	tok, err := token.Mint([]byte(secret), token.Claims{Room: "r1", Identity: "alice", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ice-servers", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ice api.ICEServersResponse
	err = json.NewDecoder(resp.Body).Decode(&ice)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var relay api.ICEServer
	var turnAddr string
	for _, s := range ice.ICEServers {
		for _, u := range s.URLs {
			if um := turnURL.FindStringSubmatch(u); um != nil {
				relay, turnAddr = s, "127.0.0.1:"+um[1]
			}
		}
	}
	if turnAddr == "" || turnAddr == "127.0.0.1:0" {
		t.Fatalf("no loopback TURN-over-UDP URL in %+v", ice.ICEServers)
	}
	// The credentials are made with a secret derived from --secret, never
	// with --secret itself: the password is the one turn.Credentials makes
	// with the derived secret for the username's expiry.
	expiry, identity, _ := strings.Cut(relay.Username, ":")
	exp, err := strconv.ParseInt(expiry, 10, 64)
	if err != nil || identity != "alice" || time.Until(time.Unix(exp, 0)) < turn.DefaultCredentialTTL-time.Minute {
		t.Fatalf("TURN username %q, want EXPIRY:alice expiring in %v", relay.Username, turn.DefaultCredentialTTL)
	}
	at := time.Unix(exp, 0).Add(-turn.DefaultCredentialTTL)
	if user, pass, _ := turn.Credentials(server.DeriveTURNSecret([]byte(secret)), "alice", turn.DefaultCredentialTTL, at); user != relay.Username || pass != relay.Credential {
		t.Fatal("TURN credential not made with the secret derived from --secret")
	}

	if err := allocate(turnAddr, relay); err != nil {
		t.Fatalf("allocate with join credentials: %v; stderr:\n%s", err, stderr.String())
	}
	resp, err = http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	scrape, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^sotto_turn_allocations_created_total 1$`).Match(scrape) {
		t.Fatalf("/metrics lacks the allocation:\n%s", scrape)
	}

	srv.waitExit(t, srv.sigterm(t))
	// TURN is closed with the process: nothing answers on its TCP port.
	if c, err := net.DialTimeout("tcp", turnAddr, time.Second); err == nil {
		c.Close()
		t.Fatalf("TURN still listening on %s after exit", turnAddr)
	}
}

// allocate makes a TURN allocation over UDP at addr with s's credentials.
func allocate(addr string, s api.ICEServer) error {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer conn.Close()
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       s.Username,
		Password:       s.Credential,
		Realm:          turn.DefaultRealm,
		LoggerFactory:  logging.NewDefaultLoggerFactory(),
	})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		return err
	}
	relay, err := c.Allocate()
	if err != nil {
		return err
	}
	return relay.Close()
}
