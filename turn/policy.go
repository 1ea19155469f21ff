package turn

import (
	"net"
	"net/netip"
	"sync/atomic"
)

// Reasons Denied gives. They name the IANA special-purpose registry entry (or
// the cloud service) that makes a destination unsafe to relay to.
const (
	reasonInvalid      = "invalid address"
	reasonThisNetwork  = "this network (0.0.0.0/8, RFC 791)"
	reasonPrivate      = "private network (RFC 1918)"
	reasonSharedCGNAT  = "shared address space / carrier-grade NAT (100.64.0.0/10, RFC 6598)"
	reasonLoopback     = "loopback"
	reasonMetadata     = "cloud instance metadata service"
	reasonAzureWire    = "Azure platform WireServer (168.63.129.16)"
	reasonLinkLocal    = "link-local"
	reasonIETFv4       = "IETF protocol assignments (192.0.0.0/24, RFC 6890)"
	reasonDoc          = "documentation range"
	reasonRelay6to4    = "deprecated 6to4 relay anycast (192.88.99.0/24, RFC 7526)"
	reasonBenchmark    = "benchmarking (198.18.0.0/15, RFC 2544)"
	reasonMulticast    = "multicast"
	reasonReserved     = "reserved (240.0.0.0/4, RFC 1112)"
	reasonBroadcast    = "limited broadcast (255.255.255.255)"
	reasonUnspecified  = "unspecified address"
	reasonV4Compatible = "IPv4-compatible IPv6 (::/96, deprecated, RFC 4291)"
	reasonV4Translated = "IPv4-translated IPv6 (::ffff:0:0:0/96, RFC 2765)"
	reasonNAT64        = "NAT64 address embedding a refused IPv4 address (64:ff9b::/96, RFC 6052)"
	reasonNAT64Local   = "local-use NAT64 prefix (64:ff9b:1::/48, RFC 8215)"
	reasonDiscard      = "discard-only / dummy prefix (100::/64, 100:0:0:1::/64, RFC 6666, RFC 9780)"
	reasonIETFv6       = "IETF protocol assignments incl. Teredo (2001::/23, RFC 2928, RFC 4380)"
	reason6to4         = "6to4 address embedding a refused IPv4 address (2002::/16, RFC 3056)"
	reasonSRv6         = "SRv6 SIDs (5f00::/16, RFC 9602)"
	reasonULA          = "unique local address (fc00::/7, RFC 4193)"
	reasonSiteLocal    = "deprecated site-local (fec0::/10, RFC 3879)"
)

type deniedRange struct {
	prefix netip.Prefix
	reason string
}

// deniedRanges is the deny list, checked in order; more specific entries come
// first so that the reason names the most precise registry entry. IPv4-mapped,
// NAT64 and 6to4 addresses are handled by Denied before this table, by
// checking the IPv4 address they embed.
var deniedRanges = []deniedRange{
	// IPv4 (IANA IPv4 Special-Purpose Address Registry, plus cloud services).
	{netip.MustParsePrefix("0.0.0.0/32"), reasonUnspecified},
	{netip.MustParsePrefix("0.0.0.0/8"), reasonThisNetwork},
	{netip.MustParsePrefix("10.0.0.0/8"), reasonPrivate},
	{netip.MustParsePrefix("100.64.0.0/10"), reasonSharedCGNAT}, // also Alibaba metadata 100.100.100.200
	{netip.MustParsePrefix("127.0.0.0/8"), reasonLoopback},
	{netip.MustParsePrefix("169.254.169.254/32"), reasonMetadata}, // AWS, GCP, Azure, OpenStack, ...
	{netip.MustParsePrefix("169.254.0.0/16"), reasonLinkLocal},
	{netip.MustParsePrefix("168.63.129.16/32"), reasonAzureWire},
	{netip.MustParsePrefix("172.16.0.0/12"), reasonPrivate},
	{netip.MustParsePrefix("192.0.0.192/32"), reasonMetadata}, // Oracle Cloud
	{netip.MustParsePrefix("192.0.0.0/24"), reasonIETFv4},
	{netip.MustParsePrefix("192.0.2.0/24"), reasonDoc},
	{netip.MustParsePrefix("192.88.99.0/24"), reasonRelay6to4},
	{netip.MustParsePrefix("192.168.0.0/16"), reasonPrivate},
	{netip.MustParsePrefix("198.18.0.0/15"), reasonBenchmark},
	{netip.MustParsePrefix("198.51.100.0/24"), reasonDoc},
	{netip.MustParsePrefix("203.0.113.0/24"), reasonDoc},
	{netip.MustParsePrefix("224.0.0.0/4"), reasonMulticast},
	{netip.MustParsePrefix("255.255.255.255/32"), reasonBroadcast},
	{netip.MustParsePrefix("240.0.0.0/4"), reasonReserved},

	// IPv6 (IANA IPv6 Special-Purpose Address Registry, plus cloud services).
	{netip.MustParsePrefix("::/128"), reasonUnspecified},
	{netip.MustParsePrefix("::1/128"), reasonLoopback},
	{netip.MustParsePrefix("::/96"), reasonV4Compatible},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), reasonV4Translated},
	{netip.MustParsePrefix("64:ff9b:1::/48"), reasonNAT64Local},
	{netip.MustParsePrefix("100::/64"), reasonDiscard},
	{netip.MustParsePrefix("100:0:0:1::/64"), reasonDiscard},
	{netip.MustParsePrefix("2001:db8::/32"), reasonDoc},
	{netip.MustParsePrefix("2001::/23"), reasonIETFv6},
	{netip.MustParsePrefix("3fff::/20"), reasonDoc},
	{netip.MustParsePrefix("5f00::/16"), reasonSRv6},
	{netip.MustParsePrefix("fd00:ec2::254/128"), reasonMetadata}, // AWS IPv6 metadata
	{netip.MustParsePrefix("fc00::/7"), reasonULA},
	{netip.MustParsePrefix("fe80::/10"), reasonLinkLocal},
	{netip.MustParsePrefix("fec0::/10"), reasonSiteLocal},
	{netip.MustParsePrefix("ff00::/8"), reasonMulticast},
}

var (
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour   = netip.MustParsePrefix("2002::/16")

	// The table split by family, so the per-packet check scans only the
	// entries that can match.
	deniedV4, deniedV6 = splitByFamily(deniedRanges)
)

func splitByFamily(rs []deniedRange) (v4, v6 []deniedRange) {
	for _, r := range rs {
		if r.prefix.Addr().Is4() {
			v4 = append(v4, r)
		} else {
			v6 = append(v6, r)
		}
	}
	return v4, v6
}

// Denied reports whether the relay refuses addr as a peer by default, and
// why. It refuses every special-purpose range of the IANA IPv4 and IPv6
// Special-Purpose Address Registries that is not globally reachable
// (loopback, RFC 1918 private, CGNAT, link-local, multicast, unspecified,
// documentation, benchmarking, reserved, ULA, ...) and the cloud metadata
// endpoints (169.254.169.254, fd00:ec2::254, 192.0.0.192, 168.63.129.16).
// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is judged as the IPv4 address
// it maps; NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are refused
// when the IPv4 address they embed is. The reasons are listed in POLICY.md.
//
// A Server admits a denied address only when its Config.Allow or
// Config.AllowPeers names it, or when it is one of the server's own live
// relay addresses.
func Denied(addr netip.Addr) (reason string, denied bool) {
	if !addr.IsValid() {
		return reasonInvalid, true
	}
	addr = addr.WithZone("")
	if addr.Is4In6() {
		addr = addr.Unmap()
	}
	table := deniedV4
	if addr.Is6() {
		table = deniedV6
		b := addr.As16()
		switch {
		case nat64Prefix.Contains(addr):
			if _, d := Denied(netip.AddrFrom4([4]byte(b[12:16]))); d {
				return reasonNAT64, true
			}
			return "", false
		case sixToFour.Contains(addr):
			if _, d := Denied(netip.AddrFrom4([4]byte(b[2:6]))); d {
				return reason6to4, true
			}
			return "", false
		}
	}
	for i := range table {
		if table[i].prefix.Contains(addr) {
			return table[i].reason, true
		}
	}
	return "", false
}

// policy decides which peers a server's relays may exchange packets with:
// the Allow list first, then the exact addresses of Config.AllowPeers, then
// this server's own relay IPs, reachable only at live relay sockets (so two
// callers who both fall back to TURN reach each other and nothing else on
// the host), then the deny list.
type policy struct {
	allow []netip.Prefix
	// selfIPs are the addresses peers use to reach this server's relays:
	// the relay bind address and the advertised public address.
	selfIPs []netip.Addr
	// peers are exact transport addresses admitted despite the deny list.
	peers []netip.AddrPort
	// relayPorts is a bitmap of the ports of live relay sockets, read on
	// every relayed packet without locking.
	relayPorts [65536 / 64]atomic.Uint64
}

func newPolicy(allow []netip.Prefix, selfIPs []netip.Addr, peers []netip.AddrPort) *policy {
	p := &policy{}
	for _, pr := range allow {
		a := pr.Addr()
		if a.Is4In6() && pr.Bits() >= 96 {
			pr = netip.PrefixFrom(a.Unmap(), pr.Bits()-96)
		}
		p.allow = append(p.allow, pr.Masked())
	}
	for _, ip := range selfIPs {
		if ip.IsValid() && !ip.IsUnspecified() {
			p.selfIPs = append(p.selfIPs, ip.Unmap())
		}
	}
	for _, ap := range peers {
		p.peers = append(p.peers, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
	}
	return p
}

func (p *policy) setRelayPort(port uint16, live bool) {
	w, bit := &p.relayPorts[port/64], uint64(1)<<(port%64)
	if live {
		w.Or(bit)
	} else {
		w.And(^bit)
	}
}

func (p *policy) isRelayPort(port uint16) bool {
	return p.relayPorts[port/64].Load()&(uint64(1)<<(port%64)) != 0
}

func (p *policy) allowed(ip netip.Addr) bool {
	for _, pr := range p.allow {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

func (p *policy) isSelf(ip netip.Addr) bool {
	for _, s := range p.selfIPs {
		if s == ip {
			return true
		}
	}
	return false
}

func (p *policy) isExactPeerIP(ip netip.Addr) bool {
	for _, ap := range p.peers {
		if ap.Addr() == ip {
			return true
		}
	}
	return false
}

// permitIP is the CreatePermission / ChannelBind check. A TURN permission
// names an IP only, so our own relay IPs and the IPs of AllowPeers are
// admitted here and their ports are checked per packet by permitAddr.
func (p *policy) permitIP(ip netip.Addr) (reason string, ok bool) {
	ip = ip.WithZone("").Unmap()
	if p.allowed(ip) || p.isSelf(ip) || p.isExactPeerIP(ip) {
		return "", true
	}
	if reason, denied := Denied(ip); denied {
		return reason, false
	}
	return "", true
}

// permitAddr is the per-packet check on relay sockets. It allocates nothing.
// Our own relay IPs are reachable only at live relay ports even when they are
// public: traffic from the host to its own address skips the firewall in
// front of it, so every other service on the host stays out of reach.
func (p *policy) permitAddr(ip netip.Addr, port uint16) bool {
	ip = ip.WithZone("").Unmap()
	if p.allowed(ip) {
		return true
	}
	for _, ap := range p.peers {
		if ap.Addr() == ip && ap.Port() == port {
			return true
		}
	}
	if p.isSelf(ip) {
		return p.isRelayPort(port)
	}
	_, denied := Denied(ip)
	return !denied
}

// permitNetAddr is permitAddr for the net.Addr values relay sockets see.
func (p *policy) permitNetAddr(a net.Addr) bool {
	u, ok := a.(*net.UDPAddr)
	if !ok || u.Port < 0 || u.Port > 65535 {
		return false
	}
	ip, ok := netip.AddrFromSlice(u.IP)
	if !ok {
		return false
	}
	return p.permitAddr(ip, uint16(u.Port))
}
