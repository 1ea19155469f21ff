package turn

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestMediaPeers(t *testing.T) {
	for _, c := range []struct {
		name   string
		addr   net.Addr
		public []string
		want   []string
	}{
		{"loopback", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 7882}, nil, []string{"127.0.0.1:7882"}},
		{"private behind NAT", &net.UDPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 7882}, []string{"198.51.100.7"},
			[]string{"10.0.0.5:7882", "198.51.100.7:7882"}},
		{"all interfaces", &net.UDPAddr{IP: net.IPv6unspecified, Port: 7882}, []string{"198.51.100.7", "2001:db8::7"},
			[]string{"198.51.100.7:7882", "[2001:db8::7]:7882"}},
		{"all interfaces, no public IP", &net.UDPAddr{IP: net.IPv4zero, Port: 7882}, nil, nil},
		{"mapped and repeated", &net.UDPAddr{IP: net.ParseIP("::ffff:192.168.1.2"), Port: 9}, []string{"192.168.1.2"},
			[]string{"192.168.1.2:9"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := MediaPeers(c.addr, c.public)
			if err != nil {
				t.Fatal(err)
			}
			var want []netip.AddrPort
			for _, s := range c.want {
				want = append(want, netip.MustParseAddrPort(s))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("MediaPeers = %v, want %v", got, want)
			}
		})
	}
	if _, err := MediaPeers(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, []string{"not-an-ip"}); err == nil {
		t.Fatal("bad public IP accepted")
	}
}
