package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

var (
	errNoTCPRelay     = errors.New("TCP relay allocations are not supported")
	errPortOutOfRange = errors.New("requested relay port outside the relay port range")
	errNoRelayPort    = errors.New("no free relay port in range")
)

// relayGenerator is a pion RelayAddressGenerator that binds relay sockets in
// [minPort, maxPort] on bindIP, advertises advertiseIP, and wraps each socket
// so that it only exchanges packets with peers the policy permits.
type relayGenerator struct {
	bindIP      net.IP
	advertiseIP net.IP
	minPort     int
	maxPort     int
	policy      *policy
	dropped     *atomic.Uint64
}

// Validate implements turn.RelayAddressGenerator.
func (g *relayGenerator) Validate() error {
	if g.minPort < 1 || g.maxPort > 65535 || g.minPort > g.maxPort {
		return fmt.Errorf("relay port range %d-%d is invalid", g.minPort, g.maxPort)
	}
	return nil
}

// AllocatePacketConn implements turn.RelayAddressGenerator.
func (g *relayGenerator) AllocatePacketConn(network string, requestedPort int) (net.PacketConn, net.Addr, error) {
	if requestedPort != 0 {
		if requestedPort < g.minPort || requestedPort > g.maxPort {
			return nil, nil, fmt.Errorf("%w: %d", errPortOutOfRange, requestedPort)
		}
		return g.bind(network, requestedPort)
	}
	span := g.maxPort - g.minPort + 1
	tries := min(span, 64)
	for range tries {
		conn, addr, err := g.bind(network, g.minPort+rand.IntN(span))
		if err == nil {
			return conn, addr, nil
		}
	}
	return nil, nil, fmt.Errorf("%w %d-%d after %d tries", errNoRelayPort, g.minPort, g.maxPort, tries)
}

func (g *relayGenerator) bind(network string, port int) (net.PacketConn, net.Addr, error) {
	//nolint:noctx // binding a local UDP socket does not block.
	conn, err := net.ListenPacket(network, net.JoinHostPort(g.bindIP.String(), strconv.Itoa(port)))
	if err != nil {
		return nil, nil, err
	}
	g.policy.setRelayPort(uint16(port), true)
	rc := &relayConn{PacketConn: conn, port: uint16(port), policy: g.policy, dropped: g.dropped}
	return rc, &net.UDPAddr{IP: g.advertiseIP, Port: port}, nil
}

// AllocateConn implements turn.RelayAddressGenerator; pion/turn v4's server
// has no TCP relaying (RFC 6062), so there is nothing to allocate.
func (g *relayGenerator) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

// relayConn is a relay socket that refuses to send to, and drops packets
// from, peers outside the policy. Permissions (checked by IP when created)
// already keep denied IPs out; this catches the port half of the exceptions
// (our own IP is reachable only at live relay ports) and any path that would
// bypass a permission check.
type relayConn struct {
	net.PacketConn
	port      uint16
	policy    *policy
	dropped   *atomic.Uint64
	closeOnce sync.Once
}

var errPeerDenied = errors.New("peer refused by relay policy")

// WriteTo implements net.PacketConn.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !c.policy.permitNetAddr(addr) {
		c.dropped.Add(1)
		return 0, errPeerDenied
	}
	return c.PacketConn.WriteTo(p, addr)
}

// ReadFrom implements net.PacketConn.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || c.policy.permitNetAddr(addr) {
			return n, addr, err
		}
		c.dropped.Add(1)
	}
}

// Close implements net.PacketConn. The port leaves the live set before the
// socket closes, so a later socket rebinding it is never unmarked.
func (c *relayConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		c.policy.setRelayPort(c.port, false)
		err = c.PacketConn.Close()
	})
	return err
}
