package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/signaling"
	"github.com/sotto-voice/sotto/turn"
)

func TestParseServeTURNDefaults(t *testing.T) {
	o, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tu := o.turn
	if !tu.enabled || tu.port != 3478 || tu.tlsPort != 5349 || tu.relayPorts != "49152-65535" ||
		tu.maxPerUser != 16 || tu.maxTotal != 4096 || tu.ttl != turn.DefaultCredentialTTL || len(tu.urls) != 0 || tu.secret != "" {
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
	tu := o.turn
	if len(tu.urls) != 2 || tu.secret != "coturn-static-auth-secret" || tu.ttl != 90*time.Minute ||
		tu.relayPorts != "50000-50100" || tu.port != 0 {
		t.Fatalf("TURN options %+v", tu)
	}
	// The command line wins over the environment.
	if !slices.Equal(tu.allow, []string{"192.168.1.0/24"}) {
		t.Fatalf("--turn-allow %v", tu.allow)
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

func TestDeriveTURNSecret(t *testing.T) {
	a, b := deriveTURNSecret([]byte("server-secret-0123456789")), deriveTURNSecret([]byte("server-secret-0123456789"))
	if !bytes.Equal(a, b) || len(a) < turn.MinSecretLen {
		t.Fatalf("derived secrets %x, %x", a, b)
	}
	if bytes.Equal(a, []byte("server-secret-0123456789")) || bytes.Equal(a, deriveTURNSecret([]byte("server-secret-0123456780"))) {
		t.Fatal("derived secret does not depend on the server secret alone")
	}
}

func TestEmbeddedTURNConfig(t *testing.T) {
	media := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 7882}
	o, err := parseServe([]string{"--media-ip", "10.0.0.5", "--public-ip", "2001:db8::1,198.51.100.7", "--turn-relay-ports", "50000-50100"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := embeddedTURNConfig(o, []byte("turn-secret-0123456789"), media, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	wantPeers := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.5:7882"),
		netip.MustParseAddrPort("[2001:db8::1]:7882"),
		netip.MustParseAddrPort("198.51.100.7:7882"),
	}
	if cfg.ListenIP != "10.0.0.5" || cfg.RelayIP != nil || !cfg.PublicIP.Equal(net.IPv4(198, 51, 100, 7)) ||
		cfg.RelayPortMin != 50000 || cfg.RelayPortMax != 50100 || !slices.Equal(cfg.AllowPeers, wantPeers) {
		t.Fatalf("config %+v", cfg)
	}

	// On all interfaces the relay needs an IPv4 address to advertise.
	o.mediaIP = ""
	o.publicIPs = listFlag{"2001:db8::1"}
	if _, err := embeddedTURNConfig(o, []byte("turn-secret-0123456789"), &net.UDPAddr{IP: net.IPv6zero, Port: 7882}, nil, slog.Default()); err == nil ||
		!strings.Contains(err.Error(), "--public-ip") {
		t.Fatalf("all interfaces without IPv4 public IP: %v", err)
	}
	o.publicIPs = listFlag{"198.51.100.7"}
	cfg, err = embeddedTURNConfig(o, []byte("turn-secret-0123456789"), &net.UDPAddr{IP: net.IPv6zero, Port: 7882}, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.RelayIP.Equal(net.IPv4zero) || !slices.Equal(cfg.AllowPeers, []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:7882")}) {
		t.Fatalf("all-interfaces config %+v", cfg)
	}
}

func TestStartTURNOffAndExternal(t *testing.T) {
	media := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7882}
	o, err := parseServe([]string{"--turn=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := startTURN(o, []byte("server-secret-0123456789"), media, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if s.server != nil || s.iceServers() != nil || s.stats() != nil || s.Close() != nil {
		t.Fatalf("--turn=false: %+v", s)
	}

	urls := []string{"stun:turn.example.com:3478", "turn:turn.example.com:3478?transport=udp"}
	o, err = parseServe([]string{"--turn-url", strings.Join(urls, ","), "--turn-secret", "coturn-static-auth-secret", "--turn-credential-ttl", "1h"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err = startTURN(o, []byte("server-secret-0123456789"), media, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.server != nil || s.stats() != nil {
		t.Fatal("--turn-url started the embedded server")
	}
	got := s.iceServers()("alice")
	if len(got) != 2 || !slices.Equal(got[0].URLs, urls[:1]) || !slices.Equal(got[1].URLs, urls[1:]) {
		t.Fatalf("external ICE servers %+v", got)
	}
	checkCredential(t, got[1], []byte("coturn-static-auth-secret"), "alice", time.Hour)
}

// checkCredential checks that s carries TURN REST credentials for identity,
// made with secret, expiring in about ttl.
func checkCredential(t *testing.T, s api.ICEServer, secret []byte, identity string, ttl time.Duration) {
	t.Helper()
	expiry, who, ok := strings.Cut(s.Username, ":")
	if !ok || who != identity {
		t.Fatalf("username %q, want EXPIRY:%s", s.Username, identity)
	}
	for _, now := range []time.Time{time.Now(), time.Now().Add(-time.Minute)} {
		user, pass, _ := turn.Credentials(secret, identity, ttl, now)
		if user == s.Username {
			if pass != s.Credential {
				t.Fatalf("credential for %q not made with the expected secret", s.Username)
			}
			return
		}
	}
	t.Fatalf("username %q (expiry %s), want one expiring %v from now", s.Username, expiry, ttl)
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
	cmd, stderr, base := srv.cmd, srv.stderr, srv.url
	// stderr is copied by another goroutine: the log line may lag behind.
	for deadline := time.Now().Add(wait.Timeout); !strings.Contains(stderr.String(), "turn: serving"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no TURN log line; stderr:\n%s", stderr.String())
		}
	}

	tok, err := signaling.MintToken([]byte(secret), "r1", "alice", time.Hour)
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
	// with --secret itself.
	checkCredential(t, relay, deriveTURNSecret([]byte(secret)), "alice", turn.DefaultCredentialTTL)

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

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(wait.Timeout):
		t.Fatalf("still running %v after SIGTERM", wait.Timeout)
	}
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

// With a certificate the embedded server adds TURN over TLS, named in its
// turns: URL by the certificate's DNS name.
func TestStartTURNWithTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{"*.example.com", "turn.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}

	o, err := parseServe([]string{"--http", "127.0.0.1:0", "--turn-port", "0", "--turn-tls-port", "0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := startTURN(o, []byte("server-secret-0123456789"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7882}, tc, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.server.TLSAddr() == nil || s.stats() == nil {
		t.Fatal("no TURN over TLS")
	}
	want := "turns:turn.example.com:" + strconv.Itoa(s.server.TLSAddr().Port) + "?transport=tcp"
	got := s.iceServers()("alice")
	if !slices.ContainsFunc(got, func(is api.ICEServer) bool { return slices.Contains(is.URLs, want) }) {
		t.Fatalf("ICE servers %+v lack %s", got, want)
	}
	// The TLS listener speaks TLS with that certificate.
	conn, err := tls.Dial("tcp", s.server.TLSAddr().String(), &tls.Config{ServerName: "turn.example.com", RootCAs: pool(t, der)})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func pool(t *testing.T, der []byte) *x509.CertPool {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	p.AddCert(c)
	return p
}
