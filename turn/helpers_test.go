package turn

import (
	"bytes"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	pionturn "github.com/pion/turn/v4"

	"github.com/sotto-voice/sotto/internal/wait"
)

var testSecret = []byte("sotto-turn-test-secret-0123456789")

// testLog sends slog output to t.Log until the test ends; pion goroutines
// may still log while shutting down, after which lines are dropped.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	w := &testLog{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testRelayPorts lies below Linux's ephemeral range, so other tests' port-0
// sockets do not take our relay ports.
const testRelayPortMin, testRelayPortMax = 20000, 29999

func newTestServer(t testing.TB, edit func(*Config)) *Server {
	t.Helper()
	cfg := Config{
		Secret:       testSecret,
		ListenIP:     "127.0.0.1",
		RelayIP:      net.IPv4(127, 0, 0, 1),
		RelayPortMin: testRelayPortMin,
		RelayPortMax: testRelayPortMax,
		Logger:       testLogger(t),
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func validCredentials(identity string) (string, string) {
	u, p, _ := Credentials(testSecret, identity, time.Hour, time.Now())
	return u, p
}

// newUDPClient is a pion TURN client talking to s over UDP.
func newUDPClient(t testing.TB, s *Server, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startClient(t, conn, s.UDPAddr().String(), user, pass)
}

// newTCPClient is a pion TURN client talking to s over TCP.
func newTCPClient(t testing.TB, s *Server, user, pass string) *pionturn.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.TCPAddr().String(), wait.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	return startClient(t, pionturn.NewSTUNConn(conn), s.TCPAddr().String(), user, pass)
}

func startClient(t testing.TB, conn net.PacketConn, server, user, pass string) *pionturn.Client {
	t.Helper()
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelWarn
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: server,
		TURNServerAddr: server,
		Username:       user,
		Password:       pass,
		Conn:           conn,
		LoggerFactory:  lf,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

// allocate allocates on c and closes the relayed conn at cleanup.
func allocate(t testing.TB, c *pionturn.Client) net.PacketConn {
	t.Helper()
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	return relay
}

// readWithin reads one packet from c, failing the test after wait.Timeout.
func readWithin(t testing.TB, c net.PacketConn) ([]byte, net.Addr) {
	t.Helper()
	buf := make([]byte, 1500)
	if err := c.SetReadDeadline(time.Now().Add(wait.Timeout)); err != nil {
		t.Fatal(err)
	}
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read on %s: %v", c.LocalAddr(), err)
	}
	return buf[:n], from
}
