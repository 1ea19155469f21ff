package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/loopback"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/signaling"
)

// sottoBin builds the binary once per test run.
var sottoBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sotto-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sotto")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", errors.New("go build: " + err.Error() + "\n" + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := sottoBin(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// command prepares the binary with env added to an environment stripped of
// any SOTTO_ variable of the person running the tests.
func command(t *testing.T, ctx context.Context, env []string, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go tool not in PATH")
	}
	bin, err := sottoBin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOTTO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// lockedBuffer collects a process's stderr while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var (
	servingLine = regexp.MustCompile(`^sotto: serving on (https?://127\.0\.0\.1:\d+) \(media udp (\d+), tcp (\S+)\)$`)
	devSecret   = regexp.MustCompile(`development secret.*\n.*sotto:\s+([0-9a-f]{64})\n`)
)

// served is a "sotto serve" process started by startServe.
type served struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	url    string   // base URL from the serving line
	ports  []string // media UDP and TCP ports from the serving line
}

// startServe runs "sotto serve" with env and args after defaults that put
// every listener on a loopback ephemeral port (later flags win), waits for
// its serving line and kills it when the test ends.
func startServe(t *testing.T, ctx context.Context, env []string, args ...string) *served {
	t.Helper()
	defaults := []string{"serve", "--http", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--turn-port", "0"}
	cmd := command(t, ctx, env, append(defaults, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &served{cmd: cmd, stderr: &lockedBuffer{}}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case line := <-lines:
		m := servingLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("serving line %q; stderr:\n%s", line, s.stderr.String())
		}
		s.url, s.ports = m[1], m[2:]
	case <-time.After(wait.Timeout):
		t.Fatalf("no serving line; stderr:\n%s", s.stderr.String())
	}
	return s
}

func TestServeHealthzTokenAndSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	srv := startServe(t, ctx, []string{"SOTTO_MAX_ROOMS=3"})
	cmd, stderr, base := srv.cmd, srv.stderr, srv.url
	if srv.ports[0] == "0" || srv.ports[1] == "0" {
		t.Fatalf("serving line names port 0: %v", srv.ports)
	}

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", resp.StatusCode)
	}

	// The announced development secret mints tokens the server accepts.
	sm := devSecret.FindStringSubmatch(stderr.String())
	if sm == nil {
		t.Fatalf("no development secret announced; stderr:\n%s", stderr.String())
	}
	tok, err := command(t, ctx, nil, "token", "--secret", sm[1], "--room", "r1", "--identity", "alice").Output()
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ice-servers", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ice-servers with minted token: %d", resp.StatusCode)
	}

	// A participant in a call is told when the server stops.
	events := joinCall(t, ctx, base, strings.TrimSpace(string(tok)))

	stopAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		_, msg, err := events.Read(ctx)
		if err != nil {
			t.Fatalf("event stream ended without closed: %v", err)
		}
		var closed api.Closed
		if json.Unmarshal(msg, &closed) == nil && closed.Type == api.TypeClosed {
			if closed.Reason != api.ReasonShutdown {
				t.Fatalf("closed %q, want %q", closed.Reason, api.ReasonShutdown)
			}
			break
		}
	}
	// Reading on completes the closing handshake, as any client does.
	if _, _, err := events.Read(ctx); websocket.CloseStatus(err) != websocket.StatusNormalClosure {
		t.Fatalf("event stream after closed: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", err, stderr.String())
		}
		t.Logf("exited %v after SIGTERM", time.Since(stopAt).Round(time.Millisecond))
	case <-time.After(wait.Timeout):
		t.Fatalf("still running %v after SIGTERM", wait.Timeout)
	}
}

// joinCall joins room r1 with a real pion peer and returns its event
// stream, welcome read.
func joinCall(t *testing.T, ctx context.Context, base, token string) *websocket.Conn {
	t.Helper()
	pc, err := loopback.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	jr, err := loopback.Join(ctx, pc, base, "r1", token)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := loopback.Events(ctx, base, jr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.CloseNow() })
	_, msg, err := conn.Read(ctx)
	if err != nil || !strings.Contains(string(msg), `"welcome"`) {
		t.Fatalf("first event %s, %v", msg, err)
	}
	return conn
}

func TestToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	secret := "0123456789abcdef-secret"
	out, err := command(t, ctx, nil, "token", "--secret", secret, "--room", "r1", "--identity", "alice", "--ttl", "2h").Output()
	if err != nil {
		t.Fatal(err)
	}
	c, err := signaling.VerifyToken([]byte(secret), strings.TrimSpace(string(out)), "r1", time.Now())
	if err != nil || c.Identity != "alice" || time.Until(c.Expiry) < 110*time.Minute {
		t.Fatalf("token %q: %+v, %v", out, c, err)
	}

	// Environment twins fill what the command line leaves out; the command
	// line wins.
	out, err = command(t, ctx, []string{"SOTTO_SECRET=" + secret, "SOTTO_ROOM=r2", "SOTTO_IDENTITY=eve"}, "token", "--identity", "bob").Output()
	if err != nil {
		t.Fatal(err)
	}
	c, err = signaling.VerifyToken([]byte(secret), strings.TrimSpace(string(out)), "r2", time.Now())
	if err != nil || c.Identity != "bob" {
		t.Fatalf("token from env: %+v, %v", c, err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"missing flags", []string{"token", "--room", "r1"}, 2},
		{"short secret", []string{"token", "--secret", "short", "--room", "r1", "--identity", "a"}, 1},
		{"bad identity", []string{"token", "--secret", secret, "--room", "r1", "--identity", "a b"}, 1},
		{"unknown command", []string{"dance"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := command(t, ctx, nil, tc.args...).Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.code {
				t.Fatalf("%v: got %v, want exit %d", tc.args, err, tc.code)
			}
		})
	}
}

func TestDefaultMediaIP(t *testing.T) {
	for addr, want := range map[string]string{
		"127.0.0.1:7880": "127.0.0.1",
		"[::1]:7880":     "::1",
		"0.0.0.0:7880":   "",
		":7880":          "",
		"localhost:7880": "",
		"10.1.2.3:0":     "10.1.2.3",
	} {
		if got := defaultMediaIP(addr); got != want {
			t.Errorf("defaultMediaIP(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestParseServeEnv(t *testing.T) {
	t.Setenv("SOTTO_MAX_PARTICIPANTS", "4")
	t.Setenv("SOTTO_PUBLIC_IP", "203.0.113.1,203.0.113.2")
	t.Setenv("SOTTO_DROP_TIMEOUT", "3s")
	o, err := parseServe([]string{"--max-participants", "8", "--http", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.maxParticipants != 8 || len(o.publicIPs) != 2 || o.dropTimeout != 3*time.Second || o.mediaIP != "127.0.0.1" {
		t.Fatalf("options %+v", o)
	}
	t.Setenv("SOTTO_MAX_ROOMS", "many")
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "SOTTO_MAX_ROOMS") {
		t.Fatalf("bad env value: %v", err)
	}
}
