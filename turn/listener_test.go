package turn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"

	"github.com/sotto-voice/sotto/internal/logtest"
	"github.com/sotto-voice/sotto/internal/wait"
)

// waitClosed waits until the server closes c (a read fails).
func waitClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(wait.Timeout))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); err == nil || (ok && ne.Timeout()) {
		t.Fatalf("connection still open after %v (err %v)", wait.Timeout, err)
	}
}

// TestTCPCap: past MaxTCPConns a connection is closed at once and counted;
// the admitted one keeps working, and a freed slot is reusable.
func TestTCPCap(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxTCPConns = 1 })
	user, pass := validCredentials("alice")
	firstConn, err := net.DialTimeout("tcp", s.TCPAddr().String(), wait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	first := startClient(t, pionturn.NewSTUNConn(firstConn), s.TCPAddr().String(), user, pass)
	if _, err := first.SendBindingRequest(); err != nil {
		t.Fatalf("binding over the admitted connection: %v", err)
	}

	extra, err := net.DialTimeout("tcp", s.TCPAddr().String(), wait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	waitClosed(t, extra)
	if st := s.Stats(); st.TCPRefused != 1 || st.TCPConns != 1 {
		t.Fatalf("stats %+v: want 1 refused, 1 open", st)
	}
	if _, err := first.SendBindingRequest(); err != nil {
		t.Fatalf("binding over the admitted connection after the refusal: %v", err)
	}

	_ = firstConn.Close()
	wait.For(t, "the slot to be freed", func() bool { return s.Stats().TCPConns == 0 })
	if _, err := newTCPClient(t, s, user, pass).SendBindingRequest(); err != nil {
		t.Fatalf("binding over a connection in the freed slot: %v", err)
	}
}

// TestTCPIdle: a TCP client that goes quiet is disconnected and its
// allocation deleted.
func TestTCPIdle(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.TCPIdleTimeout = 300 * time.Millisecond })
	conn, err := net.DialTimeout("tcp", s.TCPAddr().String(), wait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	user, pass := validCredentials("alice")
	c := startClient(t, pionturn.NewSTUNConn(conn), s.TCPAddr().String(), user, pass)
	allocate(t, c)
	if st := s.Stats(); st.AllocationsActive != 1 || st.TCPConns != 1 {
		t.Fatalf("stats %+v: want one allocation over one connection", st)
	}
	// The client sends nothing more; the server hangs up and cleans up.
	wait.For(t, "the idle connection and its allocation to go", func() bool {
		st := s.Stats()
		return st.TCPConns == 0 && st.AllocationsActive == 0
	})
}

// TestCloseDropsTCP: Close ends accepted TCP connections, not only listeners.
func TestCloseDropsTCP(t *testing.T) {
	s := newTestServer(t, nil)
	conn, err := net.DialTimeout("tcp", s.TCPAddr().String(), wait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	wait.For(t, "the connection to be accepted", func() bool { return s.Stats().TCPConns == 1 })
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	waitClosed(t, conn)
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestTLS: TURN over TLS allocates and relays, and ICEServers lists turns:.
func TestTLS(t *testing.T) {
	cert, pool := selfSigned(t)
	s := newTestServer(t, func(c *Config) {
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		c.Allow = loopbackAllowed
	})
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: wait.Timeout}, "tcp", s.TLSAddr().String(),
		&tls.Config{RootCAs: pool, ServerName: "turn.test", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	user, pass := validCredentials("alice")
	c := startClient(t, pionturn.NewSTUNConn(conn), s.TLSAddr().String(), user, pass)
	exchange(t, allocate(t, c), newPeer(t))

	want := "turns:127.0.0.1:" + strconv.Itoa(s.TLSAddr().Port) + "?transport=tcp"
	var found bool
	for _, e := range s.ICEServers("alice", 0) {
		for _, u := range e.URLs {
			found = found || u == want
		}
	}
	if !found {
		t.Errorf("ICEServers %+v lacks %s", s.ICEServers("alice", 0), want)
	}
}

func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "turn.test"},
		DNSNames:     []string{"turn.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// TestConfigErrors: invalid configurations are refused with a reason.
func TestConfigErrors(t *testing.T) {
	base := func() Config {
		return Config{Secret: testSecret, ListenIP: "127.0.0.1", RelayPortMin: 20000, RelayPortMax: 20010}
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		want string
	}{
		"short secret":   {func(c *Config) { c.Secret = []byte("short") }, "secret"},
		"no relay IP":    {func(c *Config) { c.ListenIP = "" }, "relay IP"},
		"IPv6 relay":     {func(c *Config) { c.RelayIP = net.ParseIP("::1") }, "IPv4"},
		"0.0.0.0 alone":  {func(c *Config) { c.RelayIP = net.IPv4zero }, "public IP"},
		"reversed range": {func(c *Config) { c.RelayPortMin, c.RelayPortMax = 30000, 20000 }, "range"},
		"half range":     {func(c *Config) { c.RelayPortMin, c.RelayPortMax = 0, 20000 }, "range"},
		"negative quota": {func(c *Config) { c.MaxAllocations = -1 }, "negative"},
		"negative idle":  {func(c *Config) { c.TCPIdleTimeout = -time.Second }, "negative"},
	} {
		cfg := base()
		tc.edit(&cfg)
		s, err := NewServer(cfg)
		if err == nil {
			_ = s.Close()
			t.Errorf("%s: NewServer accepted %+v", name, cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", name, err, tc.want)
		}
	}
}

// TestPublicIP: behind a 1:1 NAT the relay binds the local address and
// advertises the public one, in allocations and in ICE server URLs.
func TestPublicIP(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.RelayIP = net.IPv4zero
		c.PublicIP = net.IPv4(192, 0, 2, 10)
	})
	user, pass := validCredentials("alice")
	relay := allocate(t, newUDPClient(t, s, user, pass))
	if ip := relay.LocalAddr().(*net.UDPAddr).IP; !ip.Equal(net.IPv4(192, 0, 2, 10)) {
		t.Errorf("relayed address %s, want the public IP", relay.LocalAddr())
	}
	if u := s.ICEServers("alice", 0)[0].URLs[0]; u != "stun:192.0.2.10:"+strconv.Itoa(s.UDPAddr().Port) {
		t.Errorf("STUN URL %s does not advertise the public IP", u)
	}
}

// TestStartLineNamesTLS: the start line gives the TLS listener's address,
// or says that TLS is off.
func TestStartLineNamesTLS(t *testing.T) {
	start := func(edit func(*Config)) (*Server, any) {
		var log logtest.Log
		s := newTestServer(t, func(c *Config) {
			c.Logger = log.Logger(slog.LevelInfo)
			edit(c)
		})
		for _, r := range log.Records(t) {
			if r.Message == "turn: serving" {
				return s, r.Attrs["tls"]
			}
		}
		t.Fatal("no start line")
		return nil, nil
	}
	if _, got := start(func(*Config) {}); got != "off" {
		t.Errorf("without TLS: tls=%v, want off", got)
	}
	cert, _ := selfSigned(t)
	s, got := start(func(c *Config) {
		c.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	})
	if want := s.TLSAddr().String(); got != want {
		t.Errorf("with TLS: tls=%v, want %s", got, want)
	}
}
