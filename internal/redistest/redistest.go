// Package redistest runs a redis-server of a test's own, for the tests of
// everything that uses Redis: a loopback port, no persistence, files in a
// temporary directory, killed by its PID when the test ends. It skips the
// test when redis-server is not installed, and fails it under CI=true,
// where .ci/run installs Debian's redis-server.
package redistest

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	t      *testing.T
	path   string
	dir    string
	port   int
	proc   *os.Process
	exited chan struct{}
}

// Start starts a redis-server that lives as long as t.
func Start(t *testing.T) *Server {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server is not installed (CI=true): %v", err)
		}
		t.Skip("redis-server is not installed")
	}
	rs := &Server{t: t, path: path, dir: t.TempDir()}
	t.Cleanup(rs.Stop)
	// A port found free may be taken before redis-server binds it; then
	// try another.
	for attempt := 1; ; attempt++ {
		rs.port = FreePort(t)
		if rs.start() {
			return rs
		}
		if attempt == 3 {
			log, _ := os.ReadFile(rs.logFile())
			t.Fatalf("redis-server did not start:\n%s", log)
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago: for a
// server to start on, or an address where nothing answers.
func FreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// URL is the server's address for go-redis and for --redis.
func (rs *Server) URL() string { return "redis://" + rs.addr() + "/0" }

func (rs *Server) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(rs.port)) }

func (rs *Server) logFile() string { return filepath.Join(rs.dir, "redis.log") }

// start runs redis-server on rs.port and waits until it answers PING; it
// reports false if the process exited instead.
func (rs *Server) start() bool {
	rs.t.Helper()
	cmd := exec.Command(rs.path,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(rs.port),
		"--save", "", "--appendonly", "no",
		"--dir", rs.dir, "--logfile", rs.logFile())
	if err := cmd.Start(); err != nil {
		rs.t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	rs.proc, rs.exited = cmd.Process, exited
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			rs.proc = nil
			return false
		default:
		}
		if rs.pong() {
			return true
		}
	}
	rs.t.Fatalf("redis-server on %s did not answer within 10 s", rs.addr())
	return false
}

// pong reports whether the server answers PING.
func (rs *Server) pong() bool {
	conn, err := net.DialTimeout("tcp", rs.addr(), time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}

// Stop kills the server by its PID, as a crash would, and waits for it to
// exit.
func (rs *Server) Stop() {
	if rs.proc == nil {
		return
	}
	_ = rs.proc.Kill()
	<-rs.exited
	rs.proc = nil
}

// Restart starts the server again on the same port, empty.
func (rs *Server) Restart() {
	rs.t.Helper()
	if !rs.start() {
		log, _ := os.ReadFile(rs.logFile())
		rs.t.Fatalf("redis-server did not restart on %s:\n%s", rs.addr(), log)
	}
}
