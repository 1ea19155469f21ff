package turn

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
)

// TestRelayGenerator: relay sockets bind inside the range, mark their port
// live while open, and refuse a requested port outside the range.
func TestRelayGenerator(t *testing.T) {
	p := newPolicy(nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil)
	g := &relayGenerator{
		bindIP: net.IPv4(127, 0, 0, 1), advertiseIP: net.IPv4(192, 0, 2, 1),
		minPort: testRelayPortMin, maxPort: testRelayPortMax, policy: p, dropped: new(atomic.Uint64),
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	conn, addr, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		t.Fatal(err)
	}
	port := addr.(*net.UDPAddr).Port
	if port < testRelayPortMin || port > testRelayPortMax || !addr.(*net.UDPAddr).IP.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Fatalf("relay address %s: want the advertised IP and a port in range", addr)
	}
	if !p.isRelayPort(uint16(port)) {
		t.Fatal("open relay port not marked live")
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if p.isRelayPort(uint16(port)) {
		t.Fatal("closed relay port still marked live")
	}
	if err := conn.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	if _, _, err := g.AllocatePacketConn("udp4", testRelayPortMax+1); err == nil {
		t.Fatal("requested port outside the range was bound")
	}
	if _, _, err := g.AllocateConn("tcp4", 0); err == nil {
		t.Fatal("TCP relay allocated")
	}
}

// BenchmarkRelayWriteTo is the per-packet send path of a relay socket
// (policy check plus the UDP write); the check must add no allocation.
func BenchmarkRelayWriteTo(b *testing.B) {
	p := newPolicy(nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil)
	sink, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	sinkPort := sink.LocalAddr().(*net.UDPAddr).Port
	p.setRelayPort(uint16(sinkPort), true) // the sink plays another relay
	g := &relayGenerator{
		bindIP: net.IPv4(127, 0, 0, 1), advertiseIP: net.IPv4(127, 0, 0, 1),
		minPort: testRelayPortMin, maxPort: testRelayPortMax, policy: p, dropped: new(atomic.Uint64),
	}
	conn, _, err := g.AllocatePacketConn("udp4", 0)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sinkPort}
	payload := make([]byte, 160)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.WriteTo(payload, to); err != nil {
			b.Fatal(err)
		}
	}
}
