package turn

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/wait"
)

// coturnTool finds one of coturn's test utilities (Debian package coturn).
// CI installs it, so there its absence is a failure, not a skip.
func coturnTool(t *testing.T, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not on PATH (install the Debian package coturn): %v", name, err)
		}
		t.Skipf("%s not on PATH (install the Debian package coturn)", name)
	}
	return bin
}

var uclientTotals = regexp.MustCompile(`tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)

// runUclient runs turnutils_uclient against s with a bounded runtime, logs
// its output and returns it with the final sent/received message counts (-1
// when it printed none) and its exit error.
func runUclient(t *testing.T, s *Server, user, pass string, flags ...string) (out string, sent, recv int, err error) {
	t.Helper()
	bin := coturnTool(t, "turnutils_uclient")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"-u", user, "-w", pass, "-p", strconv.Itoa(s.UDPAddr().Port)}, flags...)
	args = append(args, "127.0.0.1")
	b, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	out = string(b)
	t.Logf("turnutils_uclient %v: err=%v\n%s", args, err, out)
	if ctx.Err() != nil {
		t.Fatalf("turnutils_uclient did not finish in time")
	}
	sent, recv = -1, -1
	for l := range strings.Lines(out) {
		if m := uclientTotals.FindStringSubmatch(l); m != nil {
			sent, _ = strconv.Atoi(m[1])
			recv, _ = strconv.Atoi(m[2])
		}
	}
	return out, sent, recv, err
}

// TestUclientRelays has coturn's own test client allocate on our server with
// REST credentials minted by Credentials and exchange data through relays:
// client to client (both legs relayed, admitted by the own-relay exception
// under the default policy) over UDP and TCP, and to coturn's test peer on
// loopback (admitted by an Allow list). Without the Allow list the same
// peer, a non-relay port on the relay's own loopback address, gets nothing.
func TestUclientRelays(t *testing.T) {
	const msgs = 10
	for _, tc := range []struct {
		name   string
		flags  []string
		peer   bool
		denied bool
	}{
		{name: "udp/client-to-client", flags: []string{"-y"}},
		{name: "tcp/client-to-client", flags: []string{"-t", "-y"}},
		{name: "udp/peer", peer: true},
		{name: "tcp/peer", flags: []string{"-t"}, peer: true},
		{name: "udp/peer-denied", peer: true, denied: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var allow []netip.Prefix
			flags := append([]string{"-c", "-n", strconv.Itoa(msgs), "-m", "1", "-l", "120"}, tc.flags...)
			if tc.peer {
				if !tc.denied {
					allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
				}
				flags = append(flags, "-e", "127.0.0.1", "-r", strconv.Itoa(startPeer(t)))
			}
			s := newTestServer(t, func(c *Config) { c.Allow = allow })
			user, pass := validCredentials("uclient")

			_, sent, recv, err := runUclient(t, s, user, pass, flags...)
			if tc.denied {
				if recv > 0 || s.Stats().DroppedPackets == 0 {
					t.Fatalf("received %d messages from a refused peer; stats %+v", recv, s.Stats())
				}
				return
			}
			if err != nil {
				t.Fatalf("turnutils_uclient failed: %v", err)
			}
			if sent < msgs || recv < 1 {
				t.Fatalf("sent %d, received %d messages through the relay; want >= %d sent and some received", sent, recv, msgs)
			}
			if st := s.Stats(); st.AllocationsCreated == 0 || st.BadCredentials != 0 {
				t.Fatalf("stats %+v: want allocations and no credential refusals", st)
			}
		})
	}
}

// TestUclientDeniedPeer: coturn's client asking for a permission (-s, Send
// indications) or a channel towards a refused peer is turned away with the
// answers docs/TURN.md describes: pion/turn v4 cannot send RFC 8656's 403,
// so CreatePermission fails without an error code and ChannelBind with 401.
// The relay is on 127.0.0.2, so the peer on 127.0.0.1 is plain loopback.
func TestUclientDeniedPeer(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.RelayIP = net.IPv4(127, 0, 0, 2) })
	user, pass := validCredentials("uclient")
	for _, tc := range []struct {
		name, want string
		flags      []string
	}{
		{"udp/create-permission", "create permission error 0", []string{"-s"}},
		{"tcp/create-permission", "create permission error 0", []string{"-s", "-t"}},
		{"udp/channel-bind", "channel bind: error 401", nil},
		{"tcp/channel-bind", "channel bind: error 401", []string{"-t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			flags := append([]string{"-c", "-n", "3", "-m", "1", "-e", "127.0.0.1", "-r", strconv.Itoa(startPeer(t))}, tc.flags...)
			out, _, recv, err := runUclient(t, s, user, pass, flags...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("turnutils_uclient err = %v, want a non-zero exit", err)
			}
			if recv > 0 {
				t.Fatalf("received %d messages from a refused peer", recv)
			}
			if !strings.Contains(out, tc.want) {
				t.Fatalf("turnutils_uclient did not report %q; if pion now answers 403, update docs/TURN.md", tc.want)
			}
			after := s.Stats()
			if after.DeniedPeer <= before.DeniedPeer || after.AllocationsCreated == before.AllocationsCreated {
				t.Fatalf("stats before %+v after %+v: want allocations and more denied peers", before, after)
			}
		})
	}
}

// startPeer runs turnutils_peer (a UDP echo peer) on free loopback ports.
// It binds the port it is given and the next one, and cannot be given port
// 0: so borrow a free pair from the kernel, hand it over, and try again with
// another pair if something else took one of them in between.
func startPeer(t *testing.T) int {
	t.Helper()
	bin := coturnTool(t, "turnutils_peer")
	for range 5 {
		port, ok := freePortPair(t)
		if !ok {
			continue
		}
		var out strings.Builder
		cmd := exec.Command(bin, "-L", "127.0.0.1", "-p", strconv.Itoa(port))
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		if !waitBound(port, exited) {
			_ = cmd.Process.Kill()
			<-exited
			t.Logf("turnutils_peer did not bind %d: %s", port, out.String())
			continue
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		return port
	}
	t.Fatal("turnutils_peer did not start on any of 5 port pairs")
	return 0
}

// waitBound waits until port is bound (the peer is ready) and reports
// false if the peer exits or does not bind in time.
func waitBound(port int, exited <-chan struct{}) bool {
	deadline := time.Now().Add(wait.Timeout)
	for !portTaken(port) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-exited:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return true
}

// freePortPair finds a loopback UDP port p such that p and p+1 are free.
func freePortPair(t *testing.T) (int, bool) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	if port == 65535 || portTaken(port+1) {
		return 0, false
	}
	return port, true
}

// portTaken reports whether a loopback UDP port is bound by someone.
func portTaken(port int) bool {
	c, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

// TestUclientRefused: a wrong password and an expired credential (correctly
// signed) are refused, over UDP and TCP, and nothing is allocated.
func TestUclientRefused(t *testing.T) {
	s := newTestServer(t, nil)
	user, _ := validCredentials("mallory")
	expUser, expPass, _ := Credentials(testSecret, "mallory", time.Hour, time.Now().Add(-2*time.Hour))
	for _, tc := range []struct {
		name, user, pass string
		tcp              bool
	}{
		{"udp/wrong-password", user, "d3JvbmcgcGFzc3dvcmQ=", false},
		{"tcp/wrong-password", user, "d3JvbmcgcGFzc3dvcmQ=", true},
		{"udp/expired", expUser, expPass, false},
		{"tcp/expired", expUser, expPass, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats()
			flags := []string{"-y", "-c", "-n", "2", "-m", "1"}
			if tc.tcp {
				flags = append(flags, "-t")
			}
			_, _, recv, err := runUclient(t, s, tc.user, tc.pass, flags...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("turnutils_uclient err = %v, want a non-zero exit", err)
			}
			if recv > 0 {
				t.Fatalf("received %d messages with a refused credential", recv)
			}
			after := s.Stats()
			if after.BadCredentials <= before.BadCredentials || after.AllocationsCreated != before.AllocationsCreated {
				t.Fatalf("stats before %+v after %+v: want more credential refusals, no allocation", before, after)
			}
		})
	}
}
