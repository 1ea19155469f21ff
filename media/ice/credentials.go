package ice

import (
	"crypto/rand"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// Credentials are one side's ICE username fragment and password (RFC 8445
// section 5.3), as the a=ice-ufrag and a=ice-pwd lines carry them.
type Credentials struct {
	Ufrag, Pwd string
}

// iceChars are the characters RFC 8839 allows in ufrag and pwd.
const iceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// NewCredentials returns fresh random credentials: a 16-character ufrag
// (96 bits) and a 32-character password (192 bits), well above RFC 8839's
// minimums of 24 and 128 bits.
func NewCredentials() Credentials {
	return Credentials{Ufrag: randomString(16), Pwd: randomString(32)}
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = iceChars[b[i]%64]
	}
	return string(b)
}

// Candidate priorities (RFC 8445 section 5.1.2.1): host candidates, UDP
// above TCP. A passive TCP host candidate takes RFC 6544's local
// preference (direction 4, other 8191), and a type preference below UDP's
// so that a client uses TCP only when UDP fails, as pion and browsers do.
const (
	udpTypePreference = 126
	tcpTypePreference = 99
	udpLocalPref      = 65535
	tcpLocalPref      = 4<<13 | 8191
)

func priority(typePref, localPref uint32) uint32 {
	const component = 1
	return typePref<<24 | localPref<<8 | (256 - component)
}

// HostCandidate is the candidate attribute value ("candidate:...") of the
// relay's host candidate on ip and port: UDP, or passive ICE-TCP (RFC
// 6544). Only component 1 exists, since media and RTCP share the port
// (rtcp-mux).
func HostCandidate(ip netip.Addr, port int, tcp bool) string {
	proto, prio, extra := "udp", priority(udpTypePreference, udpLocalPref), ""
	if tcp {
		proto, prio, extra = "tcp", priority(tcpTypePreference, tcpLocalPref), " tcptype passive"
	}
	ip = ip.Unmap()
	foundation := crc32.ChecksumIEEE([]byte("host" + ip.String() + proto))
	return fmt.Sprintf("candidate:%d 1 %s %d %s %d typ host%s", foundation, proto, prio, ip, port, extra)
}
