package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/token"
)

// rawConn is an HTTP/1.1 connection from a chosen loopback address, to
// hold open, stall and watch being closed.
type rawConn struct {
	net.Conn
	r *bufio.Reader
}

// dialFrom connects to the HTTP address of base from the loopback address
// from; ok is false if the server refused the connection at once.
func dialFrom(t *testing.T, base, from string) (c *rawConn, ok bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: wait.Timeout}
	nc, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if errors.Is(err, syscall.ECONNRESET) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{Conn: nc, r: bufio.NewReader(nc)}, true
}

// get sends GET path on c and returns the response, body read; nil if the
// connection was closed instead.
func (c *rawConn) get(t *testing.T, path string) *http.Response {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(wait.Timeout))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: sotto\r\n\r\n", path); err != nil {
		return nil
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

// closed is what a server sent on a connection until it closed it, and
// when it closed it.
type closed struct {
	got  string
	took time.Duration
	open bool // still open when the wait ended
}

// closedWithin reads c until the server closes it, for at most d.
func (c *rawConn) closedWithin(d time.Duration) closed {
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(d))
	got, err := io.ReadAll(c.r)
	var ne net.Error
	return closed{got: string(got), took: time.Since(start), open: errors.As(err, &ne) && ne.Timeout()}
}

// A client that sends its body too slowly gets 408 and is disconnected,
// and a keep-alive connection left idle is closed, both after their
// timeouts; an event stream, idle or not, is neither.
func TestServeClosesSlowAndIdleConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	const timeout = time.Second
	secret := "limits-test-secret-0123456789"
	base := startServe(t, ctx, []string{"SOTTO_SECRET=" + secret}, "--body-timeout", timeout.String(), "--idle-timeout", timeout.String()).url

	tok, err := token.Mint([]byte(secret), token.Claims{Room: "r1", Identity: "alice", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	events := joinCall(t, ctx, base, tok)
	streamErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := events.Read(ctx); err != nil {
				streamErr <- err
				return
			}
		}
	}()

	// Slow bodies: the headers at once, then a byte every 200 ms.
	const slow = 5
	results := make(chan closed, slow)
	for range slow {
		c, _ := dialFrom(t, base, "127.0.0.1")
		if _, err := fmt.Fprintf(c, "POST /v1/calls HTTP/1.1\r\nHost: sotto\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		go func() {
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			defer close(stop)
			results <- c.closedWithin(timeout + 3*time.Second)
		}()
	}
	for range slow {
		r := <-results
		if r.open {
			t.Fatalf("slow body still connected after %v", r.took)
		}
		if r.took < timeout*9/10 {
			t.Errorf("slow body cut after %v, before the %v timeout", r.took, timeout)
		}
		if !strings.HasPrefix(r.got, "HTTP/1.1 408 ") || !strings.Contains(r.got, `"code":"request_timeout"`) {
			t.Errorf("slow body answered %q, want 408 request_timeout", r.got)
		}
	}

	// Idle keep-alive: served, then closed after the idle timeout.
	c, _ := dialFrom(t, base, "127.0.0.1")
	if resp := c.get(t, "/healthz"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz on a fresh connection: %v", resp)
	}
	if r := c.closedWithin(timeout + 3*time.Second); r.open || r.got != "" || r.took < timeout*8/10 {
		t.Errorf("idle connection: %+v; want closed silently after about %v", r, timeout)
	}

	// The event stream has outlived both timeouts and still answers.
	pctx, pcancel := context.WithTimeout(ctx, wait.Timeout)
	defer pcancel()
	if err := events.Ping(pctx); err != nil {
		t.Fatalf("event stream after the timeouts: %v", err)
	}
	select {
	case err := <-streamErr:
		t.Fatalf("event stream ended: %v", err)
	default:
	}
}

// withShellLimit runs cmd under sh after "ulimit <args>".
func withShellLimit(t *testing.T, cmd *exec.Cmd, args string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("file limits and /proc are Linux's")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd.Path = sh
	cmd.Args = append([]string{"sh", "-c", "ulimit " + args + ` && exec "$0" "$@"`}, cmd.Args...)
}

var openFiles = regexp.MustCompile(`(?m)^Max open files\s+(\d+)\s+(\d+)`)

// One address cannot hold more than --max-conns-per-ip connections, nor
// all addresses together more than --max-conns; a closed connection frees
// its place; /metrics counts the refusals. The server raises its soft
// file limit to the hard one.
func TestServeCapsConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	cmd := command(t, ctx, nil, serveArgs("--max-conns-per-ip", "3", "--max-conns", "5", "--idle-timeout", "1m")...)
	withShellLimit(t, cmd, "-S -n 512")
	srv := startServeCmd(t, cmd)

	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	if m := openFiles.FindStringSubmatch(string(limits)); m == nil || m[1] != m[2] || m[1] == "512" {
		t.Errorf("open-file limit not raised to the hard limit:\n%s", limits)
	}

	held := func(from string) *rawConn {
		t.Helper()
		c, ok := dialFrom(t, srv.url, from)
		if !ok {
			return nil
		}
		if resp := c.get(t, "/healthz"); resp == nil || resp.StatusCode != http.StatusOK {
			return nil
		}
		return c
	}
	var first []*rawConn
	for i := range 3 {
		c := held("127.0.0.1")
		if c == nil {
			t.Fatalf("connection %d from 127.0.0.1 refused under the cap", i+1)
		}
		first = append(first, c)
	}
	if held("127.0.0.1") != nil {
		t.Fatal("a fourth connection from 127.0.0.1 was served; the per-IP cap is 3")
	}
	for i := range 2 {
		if held("127.0.0.2") == nil {
			t.Fatalf("connection %d from 127.0.0.2 refused while 127.0.0.1 is at its cap", i+1)
		}
	}
	if held("127.0.0.2") != nil || held("127.0.0.3") != nil {
		t.Fatal("a sixth connection was served; the total cap is 5")
	}

	// A closed connection gives its place back.
	first[0].Close()
	var next *rawConn
	for deadline := time.Now().Add(wait.Timeout); next == nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one closed")
		}
		next = held("127.0.0.3")
	}
	resp := next.get(t, "/metrics")
	if resp == nil {
		t.Fatal("no /metrics")
	}
	body, _ := io.ReadAll(resp.Body)
	metric := func(name string) int {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\d+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("/metrics lacks %s", name)
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}
	// Refusals while the closed connection was being noticed add to total.
	if open, perIP, total := metric("sotto_http_connections"), metric(`sotto_http_connections_refused_total{reason="per_ip"}`),
		metric(`sotto_http_connections_refused_total{reason="total"}`); open != 5 || perIP != 1 || total < 2 {
		t.Errorf("/metrics: %d connections, %d refused per IP, %d in total; want 5, 1, at least 2", open, perIP, total)
	}
}

// A join needs no file descriptor of the server's: every participant's
// media shares the relay's one UDP socket. So a join succeeds while the
// server has no descriptor to spare, where a relay opening sockets per
// participant would have to answer 503 retry.
func TestServeJoinNeedsNoFileDescriptor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	secret := "files-test-secret-0123456789"
	const limit = 64
	cmd := command(t, ctx, []string{"SOTTO_SECRET=" + secret},
		serveArgs("--turn=false", "--tcp-port", "-1", "--max-conns", "1000", "--max-conns-per-ip", "1000")...)
	withShellLimit(t, cmd, "-n "+strconv.Itoa(limit))
	srv := startServeCmd(t, cmd)

	tok, err := token.Mint([]byte(secret), token.Claims{Room: "r1", Identity: "alice", Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	_, offer := newOffer(t)
	body, _ := json.Marshal(api.JoinRequest{SDP: offer})

	// The join's connection is open before the descriptors run out.
	jc, _ := dialFrom(t, srv.url, "127.0.0.1")
	if resp := jc.get(t, "/healthz"); resp == nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v", resp)
	}
	// fds counts the server's descriptors below the limit: those are the
	// ones it can have (an inherited one may sit above).
	fds := func() int {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd < limit {
				n++
			}
		}
		return n
	}
	var fillers []net.Conn
	for deadline := time.Now().Add(wait.Timeout); fds() < limit; {
		if time.Now().After(deadline) {
			t.Fatalf("the server holds %d descriptors, never %d", fds(), limit)
		}
		c, err := net.Dial("tcp", jc.RemoteAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		fillers = append(fillers, c)
		time.Sleep(5 * time.Millisecond)
	}

	_ = jc.SetDeadline(time.Now().Add(wait.Timeout))
	fmt.Fprintf(jc, "POST /v1/rooms/r1/join HTTP/1.1\r\nHost: sotto\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		tok, len(body), body)
	resp, err := http.ReadResponse(jc.r, nil)
	if err != nil {
		t.Fatalf("join out of descriptors: %v; stderr:\n%s", err, srv.stderr.String())
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var jr api.JoinResponse
	if resp.StatusCode != http.StatusOK || json.Unmarshal(answer, &jr) != nil || !strings.Contains(jr.SDP, "a=ice-lite") {
		t.Fatalf("join out of descriptors: %d %s, want 200 and the relay's answer; stderr:\n%s", resp.StatusCode, answer, srv.stderr.String())
	}
	for _, c := range fillers {
		c.Close()
	}
}
