package loadtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/sotto-voice/sotto/internal/impair"
)

// Injected loss (Config.LossUp, Config.LossDown): each caller's media
// socket is an impair.Conn on the local address that reaches the server,
// so the loss happens on the caller's own path, both ways, and the relay
// has to repair it as it would on a real network.

// checkLoss validates the loss fractions and finds the address the
// callers' lossy sockets listen on.
func (c *Config) checkLoss() error {
	if c.LossUp == 0 && c.LossDown == 0 {
		return nil
	}
	if err := (impair.Config{LossUp: c.LossUp, LossDown: c.LossDown}).Validate(); err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	if c.RelayOnly {
		return errors.New("loadtest: injected loss applies to direct media; with relay-only, media leaves through TURN sockets of the SDK's own")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return fmt.Errorf("loadtest: server URL: %w", err)
	}
	// Connecting a UDP socket sends nothing; it only picks the route.
	var conn net.Conn
	for _, network := range []string{"udp4", "udp"} {
		if conn, err = net.Dial(network, net.JoinHostPort(u.Hostname(), "9")); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("loadtest: local address towards %s: %w", u.Hostname(), err)
	}
	c.lossIP = conn.LocalAddr().(*net.UDPAddr).IP
	return conn.Close()
}

// listenMedia returns the SDK's ListenMedia for a run with injected loss,
// nil for a run without: every socket loses its own random packets.
func (r *loadRun) listenMedia() func() (net.PacketConn, error) {
	if r.cfg.lossIP == nil {
		return nil
	}
	return func() (net.PacketConn, error) {
		cfg := impair.Config{LossUp: r.cfg.LossUp, LossDown: r.cfg.LossDown, Seed: r.lossSeed.Add(1)}
		// The call closes the socket when its media ends.
		conn, err := impair.Listen(context.Background(), net.JoinHostPort(r.cfg.lossIP.String(), "0"), cfg)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.lossy = append(r.lossy, conn)
		r.mu.Unlock()
		return conn, nil
	}
}

// reportLoss fills in the injected loss and the relay's repair of it, from
// the growth of the server's counters between before and after.
func (r *loadRun) reportLoss(rep *Report, before, after map[string]float64) {
	rep.LossUpPct, rep.LossDownPct = round3(100*r.cfg.LossUp), round3(100*r.cfg.LossDown)
	var st impair.Stats
	for _, c := range r.lossy {
		s := c.Stats()
		st.Sent += s.Sent
		st.DroppedUp += s.DroppedUp
		st.Received += s.Received
		st.DroppedDown += s.DroppedDown
	}
	rep.InjectedDroppedUp, rep.InjectedDroppedDown = st.DroppedUp, st.DroppedDown
	grew := func(name string) uint64 { return uint64(max(0, after[name]-before[name])) }
	rep.ServerUpstreamNACKs = grew(upstreamNACKs)
	rep.ServerUpstreamRecovered = grew(upstreamRepaired)
	rep.ServerUpstreamGivenUp = grew(upstreamGivenUp)
}
