package impair

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Config says how much a Conn loses.
type Config struct {
	LossUp   float64 // fraction of the datagrams written that are dropped, in [0, 1]
	LossDown float64 // fraction of the datagrams arriving that are dropped, in [0, 1]
	// Seed picks the random sequences deciding which datagrams are lost,
	// one per direction: the same seed loses the same datagrams, counted
	// in order, in each direction.
	Seed uint64
}

// Validate reports a loss fraction outside [0, 1].
func (c Config) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"uplink", c.LossUp}, {"downlink", c.LossDown}} {
		if !(f.v >= 0 && f.v <= 1) { // NaN fails too
			return fmt.Errorf("impair: %s loss %v is not a fraction in [0, 1]", f.name, f.v)
		}
	}
	return nil
}

// Stats counts a Conn's datagrams by direction.
type Stats struct {
	Sent, DroppedUp       uint64 // written and handed to the socket; written and dropped
	Received, DroppedDown uint64 // arrived and returned; arrived and dropped
}

// Conn is a UDP socket that loses datagrams as its Config says. It is a
// net.PacketConn, and also reads and writes netip.AddrPort addresses, the
// allocation-free path pion's ICE takes.
type Conn struct {
	udp  *net.UDPConn
	up   dropper
	down dropper

	sent, droppedUp, received, droppedDown atomic.Uint64
	stop                                   func() bool // detaches from the context
}

// dropper decides, datagram after datagram, which ones are lost.
type dropper struct {
	mu   sync.Mutex
	rng  *rand.Rand
	loss float64
}

func (d *dropper) drop() bool {
	if d.loss == 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rng.Float64() < d.loss
}

// Listen opens a UDP socket on address (host:port, port 0 for any) that
// loses datagrams as cfg says. It is closed when ctx ends, or by Close.
func Listen(ctx context.Context, address string, cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	laddr, err := net.ResolveUDPAddr("udp", address)
	if err != nil {
		return nil, fmt.Errorf("impair: listen on %q: %w", address, err)
	}
	udp, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return nil, fmt.Errorf("impair: %w", err)
	}
	c := &Conn{
		udp:  udp,
		up:   dropper{rng: rand.New(rand.NewPCG(cfg.Seed, 1)), loss: cfg.LossUp},
		down: dropper{rng: rand.New(rand.NewPCG(cfg.Seed, 2)), loss: cfg.LossDown},
	}
	c.stop = context.AfterFunc(ctx, func() { udp.Close() })
	return c, nil
}

// Stats returns the counts so far.
func (c *Conn) Stats() Stats {
	return Stats{
		Sent:        c.sent.Load(),
		DroppedUp:   c.droppedUp.Load(),
		Received:    c.received.Load(),
		DroppedDown: c.droppedDown.Load(),
	}
}

// ReadFrom returns the next datagram that is not dropped.
func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.udp.ReadFrom(b)
		if err != nil || !c.dropArrival() {
			return n, addr, err
		}
	}
}

// ReadFromAddrPort is ReadFrom without allocating an address.
func (c *Conn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		n, addr, err := c.udp.ReadFromUDPAddrPort(b)
		if err != nil || !c.dropArrival() {
			return n, addr, err
		}
	}
}

func (c *Conn) dropArrival() bool {
	if c.down.drop() {
		c.droppedDown.Add(1)
		return true
	}
	c.received.Add(1)
	return false
}

// WriteTo sends b to addr, unless it is dropped: then it reports success,
// as a datagram lost on the way would.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.dropDeparture() {
		return len(b), nil
	}
	return c.udp.WriteTo(b, addr)
}

// WriteToAddrPort is WriteTo with a netip.AddrPort.
func (c *Conn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if c.dropDeparture() {
		return len(b), nil
	}
	return c.udp.WriteToUDPAddrPort(b, addr)
}

func (c *Conn) dropDeparture() bool {
	if c.up.drop() {
		c.droppedUp.Add(1)
		return true
	}
	c.sent.Add(1)
	return false
}

// Close closes the socket.
func (c *Conn) Close() error {
	c.stop()
	return c.udp.Close()
}

// LocalAddr is the socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.udp.LocalAddr() }

// SetDeadline sets the socket's read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.udp.SetDeadline(t) }

// SetReadDeadline sets the socket's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.udp.SetReadDeadline(t) }

// SetWriteDeadline sets the socket's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.udp.SetWriteDeadline(t) }
