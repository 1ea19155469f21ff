package turn

import (
	"net"
	"net/netip"
	"testing"
)

func TestDenied(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		reason string // empty: admitted
	}{
		// The addresses the issue names.
		{"127.0.0.1", reasonLoopback},
		{"::1", reasonLoopback},
		{"::ffff:127.0.0.1", reasonLoopback},
		{"10.0.0.1", reasonPrivate},
		{"169.254.169.254", reasonMetadata},
		{"0.0.0.0", reasonUnspecified},
		{"::", reasonUnspecified},

		// IPv4 special-purpose ranges, edges included.
		{"0.1.2.3", reasonThisNetwork},
		{"10.255.255.255", reasonPrivate},
		{"100.64.0.1", reasonSharedCGNAT},
		{"100.100.100.200", reasonSharedCGNAT},
		{"100.127.255.255", reasonSharedCGNAT},
		{"127.255.255.254", reasonLoopback},
		{"169.254.0.1", reasonLinkLocal},
		{"169.254.170.2", reasonLinkLocal},
		{"168.63.129.16", reasonAzureWire},
		{"172.16.0.1", reasonPrivate},
		{"172.31.255.255", reasonPrivate},
		{"192.0.0.8", reasonIETFv4},
		{"192.0.0.192", reasonMetadata},
		{"192.0.2.1", reasonDoc},
		{"192.88.99.1", reasonRelay6to4},
		{"192.168.1.1", reasonPrivate},
		{"198.18.0.1", reasonBenchmark},
		{"198.19.255.255", reasonBenchmark},
		{"198.51.100.7", reasonDoc},
		{"203.0.113.9", reasonDoc},
		{"224.0.0.1", reasonMulticast},
		{"239.255.255.250", reasonMulticast},
		{"240.0.0.1", reasonReserved},
		{"255.255.255.255", reasonBroadcast},

		// IPv4-mapped forms are judged as the IPv4 address.
		{"::ffff:10.1.2.3", reasonPrivate},
		{"::ffff:169.254.169.254", reasonMetadata},
		{"::ffff:0.0.0.0", reasonUnspecified},
		{"::ffff:255.255.255.255", reasonBroadcast},
		{"::ffff:8.8.8.8", ""},

		// IPv6 special-purpose ranges.
		{"::2", reasonV4Compatible},
		{"::127.0.0.1", reasonV4Compatible},
		{"::ffff:0:7f00:1", reasonV4Translated},
		{"64:ff9b::7f00:1", reasonNAT64},
		{"64:ff9b::a00:1", reasonNAT64},
		{"64:ff9b::a9fe:a9fe", reasonNAT64},
		{"64:ff9b::808:808", ""},
		{"64:ff9b:1::1", reasonNAT64Local},
		{"100::1", reasonDiscard},
		{"2001::1", reasonIETFv6},
		{"2001:2::1", reasonIETFv6},
		{"2001:db8::1", reasonDoc},
		{"2002:7f00:1::1", reason6to4},
		{"2002:a9fe:a9fe::1", reason6to4},
		{"2002:808:808::1", ""},
		{"3fff::1", reasonDoc},
		{"5f00::1", reasonSRv6},
		{"fc00::1", reasonULA},
		{"fd12:3456::1", reasonULA},
		{"fd00:ec2::254", reasonMetadata},
		{"fe80::1", reasonLinkLocal},
		{"fe80::1%eth0", reasonLinkLocal},
		{"fec0::1", reasonSiteLocal},
		{"ff02::1", reasonMulticast},
		{"ff0e::1", reasonMulticast},

		// Ordinary public addresses pass.
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"192.0.1.1", ""},
		{"223.255.255.255", ""},
		{"2606:4700:4700::1111", ""},
		{"2a00:1450:4001::200e", ""},
	} {
		addr := netip.MustParseAddr(tc.addr)
		reason, denied := Denied(addr)
		if denied != (tc.reason != "") || reason != tc.reason {
			t.Errorf("Denied(%s) = %q, %v; want %q, %v", tc.addr, reason, denied, tc.reason, tc.reason != "")
		}
	}
	if _, denied := Denied(netip.Addr{}); !denied {
		t.Error("Denied(invalid) admitted the zero Addr")
	}
}

// Every entry of the deny table is reachable: no earlier entry shadows a
// later one entirely (which would make its reason dead text). The first or
// the last address of each prefix gets the entry's reason.
func TestDeniedTableOrder(t *testing.T) {
	for i, r := range deniedRanges {
		first, last := r.prefix.Addr(), lastAddr(r.prefix)
		rf, _ := Denied(first)
		rl, _ := Denied(last)
		if rf != r.reason && rl != r.reason {
			t.Errorf("entry %d %s: %s gets %q, %s gets %q; want %q", i, r.prefix, first, rf, last, rl, r.reason)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestPolicy(t *testing.T) {
	p := newPolicy(
		[]netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("::ffff:192.168.7.0/120")},
		[]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("0.0.0.0"), netip.MustParseAddr("8.8.4.4")},
		[]netip.AddrPort{netip.MustParseAddrPort("172.16.0.5:5000"), netip.MustParseAddrPort("127.0.0.1:7000")},
	)
	p.setRelayPort(40000, true)
	p.setRelayPort(40001, true)
	p.setRelayPort(40001, false)

	for _, tc := range []struct {
		addr string
		ip   bool // admitted by permitIP
		port uint16
		pkt  bool // admitted by permitAddr at port
	}{
		{"8.8.8.8", true, 53, true},
		{"10.1.2.3", true, 22, true},            // Allow list
		{"::ffff:10.1.2.3", true, 22, true},     // Allow list, mapped peer
		{"192.168.7.9", true, 22, true},         // Allow list given in mapped form
		{"10.2.0.1", false, 22, false},          // outside the Allow list
		{"127.0.0.1", true, 40000, true},        // own live relay
		{"::ffff:127.0.0.1", true, 40000, true}, // own live relay, mapped
		{"127.0.0.1", true, 40001, false},       // relay port no longer live
		{"127.0.0.1", true, 22, false},          // another port of our host
		{"127.0.0.2", false, 40000, false},      // not our relay IP
		{"0.0.0.0", false, 40000, false},        // unspecified never counts as self
		{"172.16.0.5", true, 5000, true},        // AllowPeers exact address
		{"172.16.0.5", true, 5001, false},       // AllowPeers other port
		{"::ffff:172.16.0.5", true, 5000, true}, // AllowPeers, mapped
		{"169.254.169.254", false, 80, false},   // metadata
		{"::1", false, 40000, false},            // v6 loopback is not our relay
		{"fe80::1%lo", false, 40000, false},     // zone ignored, still denied
	} {
		a := netip.MustParseAddr(tc.addr)
		if _, ok := p.permitIP(a); ok != tc.ip {
			t.Errorf("permitIP(%s) = %v, want %v", tc.addr, ok, tc.ip)
		}
		if ok := p.permitAddr(a, tc.port); ok != tc.pkt {
			t.Errorf("permitAddr(%s, %d) = %v, want %v", tc.addr, tc.port, ok, tc.pkt)
		}
	}

	if p.permitNetAddr(&net.TCPAddr{IP: net.IPv4(8, 8, 8, 8), Port: 1}) {
		t.Error("permitNetAddr admitted a non-UDP address")
	}
	if !p.permitNetAddr(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}) {
		t.Error("permitNetAddr refused our live relay (16-byte IPv4 form)")
	}
}

// BenchmarkPermitNetAddr is the per-packet policy check on relay sockets; it
// must not allocate.
func BenchmarkPermitNetAddr(b *testing.B) {
	p := newPolicy(nil, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil)
	p.setRelayPort(40000, true)
	public := &net.UDPAddr{IP: net.ParseIP("2a00:1450:4001::200e"), Port: 3478}
	self := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a := public
		if i%2 == 1 {
			a = self
		}
		if !p.permitNetAddr(a) {
			b.Fatal("refused")
		}
	}
}
