package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/turn"
)

var discard = slog.New(slog.DiscardHandler)

func TestDeriveTURNSecret(t *testing.T) {
	a, b := DeriveTURNSecret([]byte("server-secret-0123456789")), DeriveTURNSecret([]byte("server-secret-0123456789"))
	if !bytes.Equal(a, b) || len(a) < turn.MinSecretLen {
		t.Fatalf("derived secrets %x, %x", a, b)
	}
	if bytes.Equal(a, []byte("server-secret-0123456789")) || bytes.Equal(a, DeriveTURNSecret([]byte("server-secret-0123456780"))) {
		t.Fatal("derived secret does not depend on the server secret alone")
	}
}

func TestEmbeddedTURNConfig(t *testing.T) {
	media := &net.UDPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 7882}
	cfg := Config{
		Media: MediaConfig{IP: "10.0.0.5", PublicIPs: []string{"2001:db8::1", "198.51.100.7"}},
		TURN:  TURNConfig{RelayPortMin: 50000, RelayPortMax: 50100},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tc, err := embeddedTURNConfig(cfg, []byte("turn-secret-0123456789"), media, discard)
	if err != nil {
		t.Fatal(err)
	}
	wantPeers := []netip.AddrPort{
		netip.MustParseAddrPort("10.0.0.5:7882"),
		netip.MustParseAddrPort("[2001:db8::1]:7882"),
		netip.MustParseAddrPort("198.51.100.7:7882"),
	}
	if tc.ListenIP != "10.0.0.5" || tc.RelayIP != nil || !tc.PublicIP.Equal(net.IPv4(198, 51, 100, 7)) ||
		tc.RelayPortMin != 50000 || tc.RelayPortMax != 50100 || !slices.Equal(tc.AllowPeers, wantPeers) {
		t.Fatalf("config %+v", tc)
	}

	// On all interfaces the relay needs an IPv4 address to advertise.
	cfg.Media.IP = "0.0.0.0"
	cfg.Media.PublicIPs = []string{"2001:db8::1"}
	var ce *ConfigError
	if err := cfg.Validate(); !errors.As(err, &ce) || ce.Field != "Media.PublicIPs" {
		t.Fatalf("all interfaces without IPv4 public IP: %v", err)
	}
	cfg.Media.PublicIPs = []string{"198.51.100.7"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tc, err = embeddedTURNConfig(cfg, []byte("turn-secret-0123456789"), &net.UDPAddr{IP: net.IPv6zero, Port: 7882}, discard)
	if err != nil {
		t.Fatal(err)
	}
	if !tc.RelayIP.Equal(net.IPv4zero) || !slices.Equal(tc.AllowPeers, []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:7882")}) {
		t.Fatalf("all-interfaces config %+v", tc)
	}
}

func TestStartTURNOffAndExternal(t *testing.T) {
	media := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7882}
	cfg := Config{Secret: []byte("server-secret-0123456789"), TURN: TURNConfig{Off: true}}
	s, err := startTURN(cfg, media, discard)
	if err != nil {
		t.Fatal(err)
	}
	if s.server != nil || s.iceServers() != nil || s.stats() != nil || s.Close() != nil {
		t.Fatalf("TURN off: %+v", s)
	}

	urls := []string{"stun:turn.example.com:3478", "turn:turn.example.com:3478?transport=udp"}
	cfg.TURN = TURNConfig{URLs: urls, Secret: []byte("coturn-static-auth-secret"), CredentialTTL: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err = startTURN(cfg, media, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.server != nil || s.stats() != nil {
		t.Fatal("external TURN URLs started the embedded server")
	}
	got := s.iceServers()("alice")
	if len(got) != 2 || !slices.Equal(got[0].URLs, urls[:1]) || !slices.Equal(got[1].URLs, urls[1:]) {
		t.Fatalf("external ICE servers %+v", got)
	}
	checkCredential(t, got[1], []byte("coturn-static-auth-secret"), "alice", time.Hour)
}

// The embedded server's credentials are made with a secret derived from
// the server secret, never with that secret itself; Transports narrows the
// TURN URLs offered.
func TestEmbeddedTURNCredentials(t *testing.T) {
	secret := []byte("server-secret-0123456789")
	cfg := Config{Secret: secret, Media: MediaConfig{IP: "127.0.0.1"}}
	s, err := startTURN(cfg, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7882}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	servers := s.iceServers()("alice")
	relay := servers[len(servers)-1]
	if !slices.ContainsFunc(relay.URLs, func(u string) bool { return strings.HasSuffix(u, "?transport=tcp") }) {
		t.Fatalf("no TURN-over-TCP URL in %+v", servers)
	}
	checkCredential(t, relay, DeriveTURNSecret(secret), "alice", turn.DefaultCredentialTTL)

	s.transports = []string{"udp"}
	for _, is := range s.iceServers()("alice") {
		for _, u := range is.URLs {
			if !strings.HasPrefix(u, "stun:") && !strings.HasSuffix(u, "?transport=udp") {
				t.Errorf("TURN over UDP only, yet offered %s", u)
			}
		}
	}
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
	cfg := Config{
		Secret: []byte("server-secret-0123456789"),
		TLS:    &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}},
		Media:  MediaConfig{IP: "127.0.0.1"},
	}
	s, err := startTURN(cfg, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7882}, discard)
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
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	conn, err := tls.Dial("tcp", s.server.TLSAddr().String(), &tls.Config{ServerName: "turn.example.com", RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}
