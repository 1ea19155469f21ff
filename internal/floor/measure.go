package floor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Spec is the traffic a measurement drives through the floor relay.
type Spec struct {
	// Publishers send one packet each every Interval (default 20 ms), all
	// in one burst per tick, as the load tester's shared scheduler does.
	Publishers int
	Interval   time.Duration
	// FanOut is the subscribers every packet goes to: callers per room
	// minus one.
	FanOut int
	// PayloadSize is the encrypted frame the RTP packet carries (default
	// 100 bytes: an Opus voice frame with its SFrame header and tag).
	PayloadSize int
	// Warmup runs before the measured Duration (default 1 s).
	Warmup   time.Duration
	Duration time.Duration
}

// Result is the relay process's cost over the measured part.
type Result struct {
	Forwarded uint64        // packets sent to subscribers
	Dropped   uint64        // packets the relay could not read, open or send
	CPU       time.Duration // the relay process's user + system CPU time
}

// CPUPerForwarded is the relay's CPU time per forwarded packet, in
// microseconds.
func (r Result) CPUPerForwarded() float64 {
	if r.Forwarded == 0 {
		return 0
	}
	return float64(r.CPU) / float64(time.Microsecond) / float64(r.Forwarded)
}

// Relay is a running floor relay child process with its subscribers.
type Relay struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
	addr  netip.AddrPort
	sinks []*net.UDPConn
	wg    sync.WaitGroup

	sender *net.UDPConn
	seq    []uint16
}

// Start starts cmd, which must run ServeRelay on its stdin and stdout, and
// connects fanOut subscribers to it.
func Start(cmd *exec.Cmd, fanOut int) (_ *Relay, err error) {
	if fanOut < 1 {
		return nil, errors.New("floor: fan-out must be at least 1")
	}
	r := &Relay{cmd: cmd}
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r.lines = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("floor: start relay: %w", err)
	}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	line, err := r.read("addr")
	if err != nil {
		return nil, err
	}
	if r.addr, err = netip.ParseAddrPort(line); err != nil {
		return nil, fmt.Errorf("floor: relay address %q: %w", line, err)
	}
	var subs []string
	for range fanOut {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, err
		}
		_ = c.SetReadBuffer(4 << 20)
		r.sinks = append(r.sinks, c)
		subs = append(subs, c.LocalAddr().String())
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			buf := make([]byte, maxPacket)
			for {
				if _, _, err := c.ReadFromUDPAddrPort(buf); errors.Is(err, net.ErrClosed) {
					return
				}
			}
		}()
	}
	if r.sender, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.addr)); err != nil {
		return nil, err
	}
	_ = r.sender.SetWriteBuffer(4 << 20)
	fmt.Fprintf(r.stdin, "subs %s\n", strings.Join(subs, ","))
	if _, err := r.read("ok"); err != nil {
		return nil, err
	}
	return r, nil
}

// read returns the rest of the next line from the relay, which must start
// with word.
func (r *Relay) read(word string) (string, error) {
	if !r.lines.Scan() {
		return "", fmt.Errorf("floor: relay ended before %q: %v", word, r.lines.Err())
	}
	line := r.lines.Text()
	rest, ok := strings.CutPrefix(line, word)
	if !ok {
		return "", fmt.Errorf("floor: relay said %q, want %q", line, word)
	}
	return strings.TrimSpace(rest), nil
}

// Stats returns the relay process's counters so far.
func (r *Relay) Stats() (Result, error) {
	fmt.Fprintln(r.stdin, "stats")
	line, err := r.read("stats")
	if err != nil {
		return Result{}, err
	}
	var cpu int64
	var res Result
	if _, err := fmt.Sscanf(line, "%d %d %d", &cpu, &res.Forwarded, &res.Dropped); err != nil {
		return Result{}, fmt.Errorf("floor: stats %q: %w", line, err)
	}
	res.CPU = time.Duration(cpu)
	return res, nil
}

// Drive sends packets, publishers at a time every interval, until ctx
// ends or total packets have been sent (0: no limit).
func (r *Relay) Drive(ctx context.Context, publishers int, interval time.Duration, payloadSize int, total int) error {
	if len(r.seq) < publishers {
		r.seq = append(r.seq, make([]uint16, publishers-len(r.seq))...)
	}
	pub := &publisher{gcm: key(0)}
	payload := make([]byte, payloadSize)
	pkt := make([]byte, maxPacket)
	t := time.NewTicker(interval)
	defer t.Stop()
	sent := 0
	for {
		for p := 0; p < publishers; p++ {
			if total > 0 && sent >= total {
				return nil
			}
			r.seq[p]++
			n := pub.packet(pkt, uint32(p+1), r.seq[p], uint32(r.seq[p])*960, payload)
			if _, err := r.sender.Write(pkt[:n]); err != nil {
				return fmt.Errorf("floor: send: %w", err)
			}
			sent++
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Close stops the relay and its subscribers.
func (r *Relay) Close() error {
	r.stdin.Close()
	err := r.cmd.Wait()
	if r.sender != nil {
		r.sender.Close()
	}
	for _, c := range r.sinks {
		c.Close()
	}
	r.wg.Wait()
	return err
}

// Measure starts the relay with cmd, drives spec's traffic through it and
// returns its cost over spec.Duration (after spec.Warmup).
func Measure(ctx context.Context, cmd *exec.Cmd, spec Spec) (Result, error) {
	if spec.Interval == 0 {
		spec.Interval = 20 * time.Millisecond
	}
	if spec.PayloadSize == 0 {
		spec.PayloadSize = 100
	}
	if spec.Warmup == 0 {
		spec.Warmup = time.Second
	}
	if spec.Publishers < 1 || spec.Duration <= 0 {
		return Result{}, errors.New("floor: want at least one publisher and a positive duration")
	}
	r, err := Start(cmd, spec.FanOut)
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	drive := func(d time.Duration) error {
		dctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return r.Drive(dctx, spec.Publishers, spec.Interval, spec.PayloadSize, 0)
	}
	if err := drive(spec.Warmup); err != nil {
		return Result{}, err
	}
	before, err := r.Stats()
	if err != nil {
		return Result{}, err
	}
	if err := drive(spec.Duration); err != nil {
		return Result{}, err
	}
	// Let the last burst through before reading the counters.
	time.Sleep(spec.Interval)
	after, err := r.Stats()
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	return Result{
		Forwarded: after.Forwarded - before.Forwarded,
		Dropped:   after.Dropped - before.Dropped,
		CPU:       after.CPU - before.CPU,
	}, nil
}
