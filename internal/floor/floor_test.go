package floor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sotto-voice/sotto/internal/wait"
)

// The test binary doubles as the relay process: run with SOTTO_FLOOR_RELAY
// set, it serves the relay instead of running tests.
func TestMain(m *testing.M) {
	if os.Getenv("SOTTO_FLOOR_RELAY") == "1" {
		if err := ServeRelay(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func relayCmd() *exec.Cmd {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "SOTTO_FLOOR_RELAY=1")
	cmd.Stderr = os.Stderr
	return cmd
}

func TestMeasureForwardsEveryPacket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	res, err := Measure(ctx, relayCmd(), Spec{Publishers: 8, FanOut: 3, Warmup: 200 * time.Millisecond, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// About 50 ticks of 8 packets, each to 3 subscribers.
	if res.Forwarded < 8*3*25 || res.Dropped != 0 || res.CPU <= 0 {
		t.Errorf("result %+v", res)
	}
	t.Logf("%d forwarded, %.1f µs CPU each", res.Forwarded, res.CPUPerForwarded())
}

func TestRelayDropsForgedPackets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	r, err := Start(relayCmd(), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A packet sealed with a subscriber's key, not the publishers', and a
	// runt: neither opens.
	pkt := make([]byte, maxPacket)
	forger := &publisher{gcm: key(1)}
	n := forger.packet(pkt, 1, 1, 960, make([]byte, 50))
	r.sender.Write(pkt[:n])
	r.sender.Write(pkt[:10])
	if err := r.Drive(ctx, 1, time.Millisecond, 50, 5); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait.Timeout)
	for {
		st, err := r.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Forwarded == 10 && st.Dropped == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want 10 forwarded and 2 dropped", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkFloor is the floor of the reference load's traffic: 80
// publishers (20 rooms x 4 callers) sending a packet every 20 ms, each
// forwarded to 3 subscribers. One op is one forwarded packet; cpu-µs/fwd
// is the relay process's CPU time per forwarded packet, the figure to
// compare with the server's server_cpu_us_per_forwarded_packet.
func BenchmarkFloor(b *testing.B) {
	for _, c := range []struct{ publishers, fanOut int }{{80, 3}, {40, 3}, {80, 15}} {
		b.Run(fmt.Sprintf("publishers=%d/fanout=%d", c.publishers, c.fanOut), func(b *testing.B) {
			r, err := Start(relayCmd(), c.fanOut)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ctx := context.Background()
			wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			r.Drive(wctx, c.publishers, 20*time.Millisecond, 100, 0)
			cancel()
			before, err := r.Stats()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			packets := (b.N + c.fanOut - 1) / c.fanOut
			if err := r.Drive(ctx, c.publishers, 20*time.Millisecond, 100, packets); err != nil {
				b.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
			b.StopTimer()
			after, err := r.Stats()
			if err != nil {
				b.Fatal(err)
			}
			res := Result{Forwarded: after.Forwarded - before.Forwarded, CPU: after.CPU - before.CPU}
			b.ReportMetric(res.CPUPerForwarded(), "cpu-µs/fwd")
		})
	}
}

// BenchmarkRelayPath runs the relay in this process, one packet at a time
// through real loopback sockets, to show that the path allocates nothing.
func BenchmarkRelayPath(b *testing.B) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	rl := &relay{conn: conn, in: key(0)}
	rl.subs = append(rl.subs, sink.LocalAddr().(*net.UDPAddr).AddrPort())
	rl.outs = append(rl.outs, key(1))
	done := make(chan struct{})
	go func() { defer close(done); rl.serve() }()
	defer func() { conn.Close(); <-done }()
	sender, err := net.DialUDP("udp4", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer sender.Close()
	pub := &publisher{gcm: key(0)}
	pkt := make([]byte, maxPacket)
	buf := make([]byte, maxPacket)
	payload := make([]byte, 100)
	sink.SetReadDeadline(time.Now().Add(time.Minute))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := pub.packet(pkt, 1, uint16(i), uint32(i)*960, payload)
		if _, err := sender.Write(pkt[:n]); err != nil {
			b.Fatal(err)
		}
		if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				b.Fatal("packet lost on loopback")
			}
			b.Fatal(err)
		}
	}
}
