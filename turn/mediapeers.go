package turn

import (
	"fmt"
	"net"
	"net/netip"
)

// MediaPeers returns the transport addresses at which callers reach a media
// server's UDP port mediaUDP: its bound IP (unless it listens on all
// interfaces) and each address in publicIPs (what it advertises behind a
// 1:1 NAT), all at that port. These belong in Config.AllowPeers: the media
// server usually sits on this host's own, loopback or private address, which
// the relay otherwise refuses, so relay-only callers could not reach it.
func MediaPeers(mediaUDP net.Addr, publicIPs []string) ([]netip.AddrPort, error) {
	bound, err := netip.ParseAddrPort(mediaUDP.String())
	if err != nil {
		return nil, fmt.Errorf("media address %s: %w", mediaUDP, err)
	}
	var peers []netip.AddrPort
	add := func(ip netip.Addr) {
		ap := netip.AddrPortFrom(ip.WithZone("").Unmap(), bound.Port())
		for _, p := range peers {
			if p == ap {
				return
			}
		}
		peers = append(peers, ap)
	}
	if !bound.Addr().IsUnspecified() {
		add(bound.Addr())
	}
	for _, s := range publicIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("media public IP %q: %w", s, err)
		}
		add(ip)
	}
	return peers, nil
}
