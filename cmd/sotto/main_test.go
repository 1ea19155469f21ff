package main

import (
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
	"github.com/sotto-voice/sotto/token"
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
	if os.Getenv(callerEnv) != "" {
		// A caller process of the fault tests.
		os.Exit(runTestCaller())
	}
	code := m.Run()
	if bin, err := sottoBin(); err == nil {
		os.RemoveAll(filepath.Dir(bin))
	}
	os.Exit(code)
}

// command prepares the binary with env added to an environment stripped of
// any SOTTO_ variable of the person running the tests, and with a
// configuration directory of the test's own (where the development secret
// lives) unless env names one.
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
	cmd.Env = append(cmd.Env, "XDG_CONFIG_HOME="+t.TempDir())
	cmd.Env = append(cmd.Env, env...) // later entries win
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

// servingLine is the log line that says where the server serves.
var servingLine = regexp.MustCompile(`(?m)^time=\S+ level=INFO msg=serving url=(https?://127\.0\.0\.1:\d+) media_udp=(\d+) media_tcp=(\S+)$`)

// served is a "sotto serve" process started by startServe.
type served struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	url    string   // base URL from the serving line
	ports  []string // media UDP and TCP ports from the serving line
	exited chan struct{}
	err    error // the exit status, once exited is closed
}

// sigterm asks the process to stop and returns when it was asked.
func (s *served) sigterm(t *testing.T) time.Time {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// waitExit fails the test unless the process, asked to stop at stopAt,
// exits cleanly within wait.
func (s *served) waitExit(t *testing.T, stopAt time.Time) {
	t.Helper()
	select {
	case <-s.exited:
		if s.err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr:\n%s", s.err, s.stderr.String())
		}
		t.Logf("exited %v after SIGTERM", time.Since(stopAt).Round(time.Millisecond))
	case <-time.After(wait.Timeout):
		t.Fatalf("still running %v after SIGTERM", wait.Timeout)
	}
}

// serveArgs puts every listener of "sotto serve" on a loopback ephemeral
// port, then args (later flags win).
func serveArgs(args ...string) []string {
	return append([]string{"serve", "--http", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--turn-port", "0"}, args...)
}

// startServe runs "sotto serve" with env and serveArgs(args), waits for its
// serving line and kills it when the test ends.
func startServe(t *testing.T, ctx context.Context, env []string, args ...string) *served {
	t.Helper()
	return startServeCmd(t, command(t, ctx, env, serveArgs(args...)...))
}

// startServeCmd starts cmd, a "sotto serve", and waits for its serving line.
func startServeCmd(t *testing.T, cmd *exec.Cmd) *served {
	t.Helper()
	s := &served{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-s.exited
	})
	// stderr is copied by another goroutine: the line may lag behind.
	for deadline := time.Now().Add(wait.Timeout); ; time.Sleep(10 * time.Millisecond) {
		if m := servingLine.FindStringSubmatch(s.stderr.String()); m != nil {
			s.url, s.ports = m[1], m[2:]
			return s
		}
		select {
		case <-s.exited:
			t.Fatalf("sotto serve exited before serving; stderr:\n%s", s.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no serving line; stderr:\n%s", s.stderr.String())
		}
	}
}

func TestServeHealthzTokenAndSIGTERM(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	config := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + config}
	srv := startServe(t, ctx, append(env, "SOTTO_MAX_ROOMS=3"))
	stderr, base := srv.stderr, srv.url
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

	// Without --secret the server keeps a development secret in a file of
	// its owner's, says where, and "sotto token" mints with it.
	secretFile := filepath.Join(config, "sotto", "dev-secret")
	if !strings.Contains(stderr.String(), "file="+secretFile) {
		t.Fatalf("the development secret's file is not named; stderr:\n%s", stderr.String())
	}
	if st, err := os.Stat(secretFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("development secret file: %v, %v", st, err)
	}
	tok, err := command(t, ctx, env, "token", "--room", "r1", "--identity", "alice").Output()
	if err != nil {
		t.Fatal(err)
	}
	checkToken := func(base string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ice-servers", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("ice-servers with minted token: %d", resp.StatusCode)
		}
	}
	checkToken(base)

	// A participant in a call is told when the server stops.
	events := joinCall(t, ctx, base, strings.TrimSpace(string(tok)))

	stopAt := srv.sigterm(t)
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
	srv.waitExit(t, stopAt)

	// One log format: every line the server wrote is a structured one.
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !strings.HasPrefix(line, "time=") {
			t.Errorf("unstructured log line %q", line)
		}
	}

	// The development secret outlives the process: a restarted server
	// accepts the token minted for the first.
	checkToken(startServe(t, ctx, env).url)
}

// joinCall joins room r1 with a real pion peer and returns its event
// stream, welcome read.
func joinCall(t *testing.T, ctx context.Context, base, token string) *websocket.Conn {
	t.Helper()
	jr, err := loopback.Join(ctx, audioPeer(t), base, "r1", token)
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

// audioPeer returns a loopback peer with one send-and-receive audio
// transceiver, closed when the test ends.
func audioPeer(t *testing.T) *webrtc.PeerConnection {
	t.Helper()
	pc, err := loopback.NewPeerConnection()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	return pc
}

// newOffer returns a real pion peer on loopback and its complete offer
// (candidates gathered) of one sending audio m-line.
func newOffer(t *testing.T) (*webrtc.PeerConnection, string) {
	t.Helper()
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	pc, err := loopback.API(me).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	return pc, pc.LocalDescription().SDP
}

func TestToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	secret := "0123456789abcdef-secret"
	out, err := command(t, ctx, nil, "token", "--secret", secret, "--room", "r1", "--identity", "alice", "--ttl", "2h").Output()
	if err != nil {
		t.Fatal(err)
	}
	c, err := token.Verify([]byte(secret), strings.TrimSpace(string(out)), "r1", time.Now())
	if err != nil || c.Identity != "alice" || time.Until(c.Expiry) < 110*time.Minute {
		t.Fatalf("token %q: %+v, %v", out, c, err)
	}

	// Environment twins fill what the command line leaves out; the command
	// line wins.
	out, err = command(t, ctx, []string{"SOTTO_SECRET=" + secret, "SOTTO_ROOM=r2", "SOTTO_IDENTITY=eve"}, "token", "--identity", "bob").Output()
	if err != nil {
		t.Fatal(err)
	}
	c, err = token.Verify([]byte(secret), strings.TrimSpace(string(out)), "r2", time.Now())
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
		{"ttl not positive", []string{"token", "--secret", secret, "--room", "r1", "--identity", "a", "--ttl", "-1h"}, 1},
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

func TestParseServeEnv(t *testing.T) {
	t.Setenv("SOTTO_MAX_PARTICIPANTS", "4")
	t.Setenv("SOTTO_PUBLIC_IP", "203.0.113.1,203.0.113.2")
	t.Setenv("SOTTO_DROP_TIMEOUT", "3s")
	o, err := parseServe([]string{"--max-participants", "8", "--http", "127.0.0.1:0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.MaxParticipants != 8 || len(o.cfg.Media.PublicIPs) != 2 || o.cfg.DropTimeout != 3*time.Second || o.cfg.HTTP.Addr != "127.0.0.1:0" {
		t.Fatalf("options %+v", o)
	}
	// An empty --media-ip is every interface, whatever --http says.
	if o, err := parseServe([]string{"--media-ip", ""}, io.Discard); err != nil || o.cfg.Media.IP != "0.0.0.0" {
		t.Fatalf("--media-ip '': %q, %v", o.cfg.Media.IP, err)
	}
	t.Setenv("SOTTO_MAX_ROOMS", "many")
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "SOTTO_MAX_ROOMS") {
		t.Fatalf("bad env value: %v", err)
	}
}
