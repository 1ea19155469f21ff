package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/client"
	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/token"
)

// Fault tests: a real "sotto serve" process and SDK callers over loopback,
// and something breaks mid-call: the server is killed or stopped and
// started again on the same ports, one caller's media path is cut, one
// caller's process freezes. Each test reports the recovery it measured.

const faultSecret = "fault-test-secret-0123456789"

// faultServer is a "sotto serve" that can be killed and started again on
// the same ports.
type faultServer struct {
	t       *testing.T
	ctx     context.Context
	args    []string
	current *served
}

// startFaultServer runs "sotto serve" on free loopback ports (HTTP and
// media UDP; no ICE-TCP, no TURN) with the test's secret.
func startFaultServer(t *testing.T, ctx context.Context) *faultServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpPort := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
	pc.Close()
	fs := &faultServer{t: t, ctx: ctx, args: []string{"serve", "--http", httpAddr, "--udp-port", udpPort,
		"--tcp-port", "-1", "--turn=false", "--secret", faultSecret}}
	fs.start()
	return fs
}

func (fs *faultServer) start() {
	fs.t.Helper()
	fs.current = startServeCmd(fs.t, command(fs.t, fs.ctx, nil, fs.args...))
}

func (fs *faultServer) url() string     { return fs.current.url }
func (fs *faultServer) udpPort() string { return fs.current.ports[0] }

func (fs *faultServer) token(room, identity string) string {
	fs.t.Helper()
	tok, err := token.Mint([]byte(faultSecret), token.Claims{Room: room, Identity: identity, Expiry: time.Now().Add(time.Hour)})
	if err != nil {
		fs.t.Fatal(err)
	}
	return tok
}

// stop ends the server with sig and waits for it to exit.
func (fs *faultServer) stop(sig syscall.Signal) {
	fs.t.Helper()
	if err := fs.current.cmd.Process.Signal(sig); err != nil {
		fs.t.Fatal(err)
	}
	select {
	case <-fs.current.exited:
	case <-time.After(wait.Timeout):
		fs.t.Fatalf("sotto serve still running %v after %v", wait.Timeout, sig)
	}
}

// joinCaller joins name to room on fs's server, or fails the test.
func joinCaller(t *testing.T, ctx context.Context, fs *faultServer, room, name string) *caller {
	t.Helper()
	c := newCaller(t, name)
	if err := c.join(ctx, fs.url(), fs.token(room, name)); err != nil {
		t.Fatalf("%s: join: %v", name, err)
	}
	return c
}

// testServerRestart: three callers talk; the server stops with sig and a
// new one starts on the same ports; every caller hears every other again
// within 5 s of the new server's start, with new keys and no decryption
// failure, in the same Call.
func testServerRestart(t *testing.T, sig syscall.Signal) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*wait.Timeout)
	defer cancel()
	fs := startFaultServer(t, ctx)
	var callers []*caller
	for _, name := range []string{"alice", "bob", "carol"} {
		callers = append(callers, joinCaller(t, ctx, fs, "restart", name))
	}
	waitHearsAll(t, ctx, callers, time.Now())

	stopped := time.Now()
	fs.stop(sig)
	down := time.Since(stopped)
	fs.start()
	restarted := time.Now()
	worst := waitHearsAll(t, ctx, callers, restarted)
	t.Logf("%v: server down %v; every caller hears every other %v after the restart (%v after the stop)",
		sig, down.Round(time.Millisecond), worst.Round(time.Millisecond), time.Since(stopped).Round(time.Millisecond))
	if worst > 5*time.Second {
		t.Errorf("callers heard each other again %v after the restart, want within 5 s", worst)
	}
	for _, c := range callers {
		if _, ok := c.event(func(e client.Event) bool { _, ok := e.(client.Reconnected); return ok }); !ok {
			t.Errorf("%s: no Reconnected event", c.name)
		}
		if _, ok := c.event(func(e client.Event) bool { _, ok := e.(client.ParticipantLeft); return ok }); ok {
			t.Errorf("%s was told someone left", c.name)
		}
		if err := c.current().Err(); err != nil {
			t.Errorf("%s: call ended: %v", c.name, err)
		}
	}
	checkNoDecryptFailures(t, callers)
}

func TestFaultServerKilledAndRestarted(t *testing.T) { testServerRestart(t, syscall.SIGKILL) }

func TestFaultServerStoppedAndRestarted(t *testing.T) { testServerRestart(t, syscall.SIGTERM) }

// childStatus is what a caller process reports on its stdout, every 100 ms.
type childStatus struct {
	Heard           map[string]int64 `json:"heard"` // identity -> unix nanoseconds of the last frame
	ICERestarts     uint64           `json:"ice_restarts"`
	Rejoins         uint64           `json:"rejoins"`
	DecryptFailures uint64           `json:"decrypt_failures"`
}

// Environment of a caller process: the test binary runs as one when
// callerEnv is set (see TestMain).
const (
	callerEnv      = "SOTTO_TEST_CALLER"
	callerURLEnv   = "SOTTO_TEST_CALLER_URL"
	callerTokenEnv = "SOTTO_TEST_CALLER_TOKEN"
)

// runTestCaller is a caller process: it joins, talks, and reports what it
// hears until its stdin closes, then leaves.
func runTestCaller() int {
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	call, err := client.Join(ctx, os.Getenv(callerURLEnv), os.Getenv(callerTokenEnv), &client.Options{IPFilter: loopbackOnly})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "caller: join:", err)
		return 1
	}
	name := os.Getenv(callerEnv)
	var mu sync.Mutex
	heard := make(map[string]int64)
	go func() {
		for f := range call.Frames() {
			mu.Lock()
			heard[f.From.Identity] = f.Received.UnixNano()
			mu.Unlock()
		}
	}()
	go func() {
		for range call.Events() {
		}
	}()
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if call.WriteFrame([]byte(name+" speaking"), 20*time.Millisecond) != nil {
				return
			}
		}
	}()
	go func() {
		enc := json.NewEncoder(os.Stdout)
		for range time.Tick(100 * time.Millisecond) {
			st := call.Stats()
			mu.Lock()
			s := childStatus{Heard: heard, ICERestarts: st.ICERestarts, Rejoins: st.Rejoins, DecryptFailures: st.DecryptFailures()}
			err := enc.Encode(s)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = call.Leave()
	return 0
}

// callerProcess is a caller running in a process of its own.
type callerProcess struct {
	name  string
	cmd   *exec.Cmd
	stdin interface{ Close() error }

	mu     sync.Mutex
	status childStatus
}

func startCallerProcess(t *testing.T, ctx context.Context, fs *faultServer, room, name string) *callerProcess {
	t.Helper()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), callerEnv+"="+name, callerURLEnv+"="+fs.url(), callerTokenEnv+"="+fs.token(room, name))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &callerProcess{name: name, cmd: cmd, stdin: stdin}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var s childStatus
			if json.Unmarshal(sc.Bytes(), &s) == nil {
				p.mu.Lock()
				p.status = s
				p.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// Only this test's own process, by its PID.
		_ = syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		_ = stdin.Close()
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	return p
}

func (p *callerProcess) snapshot() childStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// heardAfter reports whether the caller process heard identity after t0.
func (p *callerProcess) heardAfter(identity string, t0 time.Time) bool {
	return p.snapshot().Heard[identity] > t0.UnixNano()
}

// udpPorts returns the local ports of the UDP sockets process pid holds.
func udpPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	inodes := make(map[string]bool)
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && len(link) > 8 && link[:8] == "socket:[" {
			inodes[link[8:len(link)-1]] = true
		}
	}
	var ports []int
	for _, table := range []string{"udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			var sl, local, remote, st, queues, tr, retr, uid, timeout, inode string
			if _, err := fmt.Sscan(sc.Text(), &sl, &local, &remote, &st, &queues, &tr, &retr, &uid, &timeout, &inode); err != nil || !inodes[inode] {
				continue
			}
			if port, err := strconv.ParseUint(local[len(local)-4:], 16, 16); err == nil {
				ports = append(ports, int(port))
			}
		}
		f.Close()
	}
	return ports
}

// iptablesPath finds iptables, or skips the test without it (fails it
// under CI, where it must be installed).
func iptablesPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/iptables", "/sbin/iptables"} {
		if _, err := os.Stat(p); err == nil {
			if err := exec.Command(p, "-w", "-S", "OUTPUT").Run(); err == nil {
				return p
			}
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("iptables (usable, as root) is needed to cut a caller's path")
	}
	t.Skip("iptables not usable here")
	return ""
}

// cutPath drops the loopback UDP between the local ports and the server's
// media port, both ways, with iptables rules that carry a comment naming
// this test and that are removed when the test ends, failed or not.
func cutPath(t *testing.T, ports []int, serverPort string) {
	t.Helper()
	ipt := iptablesPath(t)
	comment := fmt.Sprintf("sotto-fault-test-%d", os.Getpid())
	var rules [][]string
	for _, p := range ports {
		port := strconv.Itoa(p)
		rules = append(rules,
			[]string{"OUTPUT", "-o", "lo", "-p", "udp", "-s", "127.0.0.1", "-d", "127.0.0.1", "--sport", port, "--dport", serverPort, "-m", "comment", "--comment", comment, "-j", "DROP"},
			[]string{"OUTPUT", "-o", "lo", "-p", "udp", "-s", "127.0.0.1", "-d", "127.0.0.1", "--sport", serverPort, "--dport", port, "-m", "comment", "--comment", comment, "-j", "DROP"})
	}
	for _, r := range rules {
		t.Cleanup(func() {
			if out, err := exec.Command(ipt, append([]string{"-w", "-D"}, r...)...).CombinedOutput(); err != nil {
				t.Errorf("remove iptables rule %v: %v: %s", r, err, out)
			}
		})
		if out, err := exec.Command(ipt, append([]string{"-w", "-A"}, r...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables rule %v: %v: %s", r, err, out)
		}
	}
}

// One caller's media path is cut (its UDP 5-tuple with the relay blocked,
// as when its network changes): it restarts ICE on a new socket and is
// heard again within 3 s, without rejoining; the others keep hearing each
// other throughout and are never told it left.
func TestFaultCallerPathCut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	iptablesPath(t)
	fs := startFaultServer(t, ctx)
	alice := joinCaller(t, ctx, fs, "cut", "alice")
	bob := joinCaller(t, ctx, fs, "cut", "bob")
	dave := startCallerProcess(t, ctx, fs, "cut", "dave")
	start := time.Now()
	waitHearsAll(t, ctx, []*caller{alice, bob}, start)
	for _, c := range []*caller{alice, bob} {
		wait.Until(ctx, t, c.name+" hears dave", func() bool { _, ok := c.firstAfter("dave", start); return ok })
	}
	wait.Until(ctx, t, "dave hears alice and bob", func() bool {
		return dave.heardAfter("alice", start) && dave.heardAfter("bob", start)
	})

	ports := udpPorts(t, dave.cmd.Process.Pid)
	if len(ports) == 0 {
		t.Fatal("dave holds no UDP socket")
	}
	cut := time.Now()
	cutPath(t, ports, fs.udpPort())
	var back time.Duration
	for _, c := range []*caller{alice, bob} {
		wait.Until(ctx, t, c.name+" hears dave again", func() bool {
			at, ok := c.firstAfter("dave", cut.Add(200*time.Millisecond))
			if ok {
				back = max(back, at.Sub(cut))
			}
			return ok && c.longestGap("dave", cut, at) > 500*time.Millisecond
		})
	}
	wait.Until(ctx, t, "dave hears alice and bob again", func() bool {
		return dave.heardAfter("alice", cut.Add(back)) && dave.heardAfter("bob", cut.Add(back))
	})
	end := time.Now()
	st := dave.snapshot()
	t.Logf("path cut: dave heard again after %v (%d ICE restarts, %d rejoins); alice-bob longest gap %v",
		back.Round(time.Millisecond), st.ICERestarts, st.Rejoins, alice.longestGap("bob", cut, end).Round(time.Millisecond))
	if back > 3*time.Second {
		t.Errorf("dave heard again %v after the cut, want within 3 s", back)
	}
	if st.ICERestarts == 0 || st.Rejoins != 0 {
		t.Errorf("dave: %d ICE restarts, %d rejoins; want a restart, no rejoin", st.ICERestarts, st.Rejoins)
	}
	for _, pair := range [][2]*caller{{alice, bob}, {bob, alice}} {
		if gap := pair[0].longestGap(pair[1].name, cut, end); gap > 500*time.Millisecond {
			t.Errorf("%s lost %s for %v while dave's path was cut", pair[0].name, pair[1].name, gap)
		}
	}
	for _, c := range []*caller{alice, bob} {
		if _, ok := c.event(func(e client.Event) bool { _, ok := e.(client.ParticipantLeft); return ok }); ok {
			t.Errorf("%s was told someone left", c.name)
		}
	}
	checkNoDecryptFailures(t, []*caller{alice, bob})
	if st.DecryptFailures != 0 {
		t.Errorf("dave: %d decryption failures", st.DecryptFailures)
	}
}

// A caller whose process freezes (SIGSTOP: a laptop lid closing) is
// dropped within 10 s with reason timeout, and the others rekey it out and
// keep hearing each other.
func TestFaultFrozenCallerDropped(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*wait.Timeout)
	defer cancel()
	fs := startFaultServer(t, ctx)
	alice := joinCaller(t, ctx, fs, "freeze", "alice")
	bob := joinCaller(t, ctx, fs, "freeze", "bob")
	dave := startCallerProcess(t, ctx, fs, "freeze", "dave")
	start := time.Now()
	for _, c := range []*caller{alice, bob} {
		wait.Until(ctx, t, c.name+" hears dave", func() bool { _, ok := c.firstAfter("dave", start); return ok })
	}
	rekeys := map[*caller]uint64{alice: alice.current().Stats().Rekeys, bob: bob.current().Stats().Rekeys}

	frozen := time.Now()
	if err := syscall.Kill(dave.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	isDaveLeft := func(e client.Event) bool {
		l, ok := e.(client.ParticipantLeft)
		return ok && l.Participant.Identity == "dave"
	}
	var took time.Duration
	for _, c := range []*caller{alice, bob} {
		wait.Until(ctx, t, c.name+" is told dave left", func() bool { _, ok := c.event(isDaveLeft); return ok })
		took = max(took, time.Since(frozen))
		e, _ := c.event(isDaveLeft)
		if r := e.(client.ParticipantLeft).Reason; r != "timeout" {
			t.Errorf("%s: dave left with reason %q, want timeout", c.name, r)
		}
		wait.Until(ctx, t, c.name+" rekeys dave out", func() bool { return c.current().Stats().Rekeys > rekeys[c] })
	}
	t.Logf("frozen caller dropped after %v", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("frozen caller dropped after %v, want within 10 s", took)
	}
	waitHearsAll(t, ctx, []*caller{alice, bob}, time.Now())
	checkNoDecryptFailures(t, []*caller{alice, bob})
	if err := errors.Join(alice.current().Err(), bob.current().Err()); err != nil {
		t.Errorf("calls ended: %v", err)
	}
}
