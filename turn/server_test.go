package turn

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	pionturn "github.com/pion/turn/v4"

	"github.com/sotto-voice/sotto/internal/wait"
)

var loopbackAllowed = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// newPeer is a plain UDP socket on loopback standing in for a remote peer.
func newPeer(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// exchange sends through relay to peer and back, checking both directions
// arrive from the right addresses. Payloads are longer than 4 bytes: pion's
// STUNConn (TCP framing) holds back a lone 8-byte ChannelData frame until
// more data arrives, a pion quirk that real media (RTP >= 12 bytes) never hits.
func exchange(t *testing.T, relay, peer net.PacketConn) {
	t.Helper()
	if _, err := relay.WriteTo([]byte("ping through the relay"), peer.LocalAddr()); err != nil {
		t.Fatalf("relay write to %s: %v", peer.LocalAddr(), err)
	}
	got, from := readWithin(t, peer)
	if string(got) != "ping through the relay" || from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got %q from %s, want ping from the relay %s", got, from, relay.LocalAddr())
	}
	if _, err := peer.WriteTo([]byte("pong through the relay"), from); err != nil {
		t.Fatal(err)
	}
	got, from = readWithin(t, relay)
	if string(got) != "pong through the relay" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("client got %q from %s, want pong from %s", got, from, peer.LocalAddr())
	}
}

// TestRelay: pion clients allocate over UDP and over TCP with minted
// credentials and exchange data with a loopback peer the Allow list admits.
func TestRelay(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Allow = loopbackAllowed })
	user, pass := validCredentials("alice")
	for name, newClient := range map[string]func(testing.TB, *Server, string, string) *pionturn.Client{
		"udp": newUDPClient, "tcp": newTCPClient,
	} {
		t.Run(name, func(t *testing.T) {
			relay := allocate(t, newClient(t, s, user, pass))
			port := relay.LocalAddr().(*net.UDPAddr).Port
			if port < testRelayPortMin || port > testRelayPortMax {
				t.Errorf("relay port %d outside %d-%d", port, testRelayPortMin, testRelayPortMax)
			}
			exchange(t, relay, newPeer(t))
			// The other subtest's allocation is released asynchronously
			// (pion's client does not wait for its final Refresh).
			wait.For(t, "one active allocation", func() bool { return s.Stats().AllocationsActive == 1 })
		})
	}
	if st := s.Stats(); st.AllocationsCreated != 2 {
		t.Errorf("stats %+v: want 2 allocations created", st)
	}
}

// xorPeerAddress encodes XOR-PEER-ADDRESS with an explicit family, so that
// IPv6 forms of IPv4 addresses (::ffff:127.0.0.1) travel as such; pion's
// own encoder would send them as plain IPv4.
type xorPeerAddress struct {
	ip   netip.Addr
	port uint16
}

const magicCookie = 0x2112A442 // RFC 8489 section 5

func (p xorPeerAddress) AddTo(m *stun.Message) error {
	key := binary.BigEndian.AppendUint32(nil, magicCookie)
	key = append(key, m.TransactionID[:]...)
	v := []byte{0, 0x01, 0, 0}
	ip := p.ip.AsSlice()
	if p.ip.Is6() {
		v[1] = 0x02
	}
	binary.BigEndian.PutUint16(v[2:], p.port^uint16(magicCookie>>16))
	for i := range ip {
		ip[i] ^= key[i]
	}
	m.Add(stun.AttrXORPeerAddress, append(v, ip...))
	return nil
}

// request performs an authenticated TURN request from c's socket: a first
// attempt fetches the nonce, the second carries the long-term credential.
func request(t *testing.T, c *pionturn.Client, s *Server, user, pass string, method stun.Method, attrs ...stun.Setter) *stun.Message {
	t.Helper()
	build := func(extra ...stun.Setter) *stun.Message {
		setters := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		setters = append(setters, extra...)
		m, err := stun.Build(append(setters, stun.Fingerprint)...)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	res, err := c.PerformTransaction(build(), s.UDPAddr(), false)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var nonce stun.Nonce
	var realm stun.Realm
	if err := nonce.GetFrom(res.Msg); err != nil {
		t.Fatalf("%s challenge without nonce: %v", method, res.Msg)
	}
	if err := realm.GetFrom(res.Msg); err != nil {
		t.Fatalf("%s challenge without realm: %v", method, res.Msg)
	}
	res, err = c.PerformTransaction(build(stun.NewUsername(user), realm, nonce,
		stun.NewLongTermIntegrity(user, realm.String(), pass)), s.UDPAddr(), false)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return res.Msg
}

// deniedTargets are the denied kinds, each in the wire form its
// literal suggests (IPv6 family for the IPv6 literals, the mapped one
// included).
var deniedTargets = []string{"127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.1", "169.254.169.254", "0.0.0.0", "::"}

// TestDeniedPeers: under the default policy, CreatePermission and
// ChannelBind towards each denied kind of address are refused, and a
// client's send to one never goes out. The server's relay address is
// 127.0.0.2 here, so 127.0.0.1 is a plain loopback address.
//
// RFC 8656 wants 403 (Forbidden) for both refusals; pion/turn v4 cannot send
// it (docs/TURN.md, "What a refused client sees"). The test pins what it
// does send instead, so that a pion upgrade that changes it fails here and
// the documentation gets updated with it.
func TestDeniedPeers(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.RelayIP = net.IPv4(127, 0, 0, 2) })
	user, pass := validCredentials("eve")
	c := newUDPClient(t, s, user, pass)
	relay := allocate(t, c)

	for i, target := range deniedTargets {
		peer := xorPeerAddress{ip: netip.MustParseAddr(target), port: 9}
		res := request(t, c, s, user, pass, stun.MethodCreatePermission, peer)
		if res.Type.Class != stun.ClassErrorResponse {
			t.Errorf("CreatePermission to %s: %s, want an error response", target, res.Type)
		}
		// An authenticated answer without ERROR-CODE.
		if code, ok := errorCode(res); ok {
			t.Errorf("CreatePermission to %s: error %d; pion/turn v4 sends none, update docs/TURN.md", target, code)
		}
		if err := stun.NewLongTermIntegrity(user, DefaultRealm, pass).Check(res); err != nil {
			t.Errorf("CreatePermission to %s: refusal not signed with the credential: %v", target, err)
		}

		res = request(t, c, s, user, pass, stun.MethodChannelBind, stun.RawAttribute{
			Type: stun.AttrChannelNumber, Value: []byte{0x40, byte(i), 0, 0},
		}, peer)
		if res.Type.Class != stun.ClassErrorResponse {
			t.Errorf("ChannelBind to %s: %s, want an error response", target, res.Type)
		}
		// 401 without the NONCE and REALM of a credential challenge.
		if code, _ := errorCode(res); code != stun.CodeUnauthorized {
			t.Errorf("ChannelBind to %s: error %d; pion/turn v4 sends 401, update docs/TURN.md", target, code)
		}
		if res.Contains(stun.AttrNonce) || res.Contains(stun.AttrRealm) {
			t.Errorf("ChannelBind to %s: refusal %v looks like a credential challenge", target, res)
		}
	}
	if got, want := s.Stats().DeniedPeer, uint64(2*len(deniedTargets)); got != want {
		t.Errorf("DeniedPeer = %d, want %d", got, want)
	}

	// Control: the same request path admits the server's own relay IP.
	res := request(t, c, s, user, pass, stun.MethodCreatePermission, xorPeerAddress{ip: netip.MustParseAddr("127.0.0.2"), port: 9})
	if res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("CreatePermission to our relay IP: %s, want success", res.Type)
	}

	// pion's client surfaces the refusal, and nothing reaches the peer.
	peer := newPeer(t)
	if _, err := relay.WriteTo([]byte("leak attempt"), peer.LocalAddr()); err == nil {
		t.Error("client write to a loopback peer succeeded")
	}
	if st := s.Stats(); st.AllocationsActive != 1 {
		t.Errorf("stats %+v: the allocation should survive refused permissions", st)
	}
}

// errorCode returns the ERROR-CODE of res, if it has one.
func errorCode(res *stun.Message) (stun.ErrorCode, bool) {
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(res); err != nil {
		return 0, false
	}
	return ec.Code, true
}

// TestAllowList: an Allow list admits what it names (in any form) and
// nothing else.
func TestAllowList(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.RelayIP = net.IPv4(127, 0, 0, 2)
		c.Allow = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	})
	user, pass := validCredentials("ops")
	c := newUDPClient(t, s, user, pass)
	allocate(t, c)
	for target, admitted := range map[string]bool{
		"10.0.0.1": true, "::ffff:10.0.0.1": true, "10.255.0.9": true, "::1": true,
		"127.0.0.1": false, "169.254.169.254": false, "192.168.0.1": false, "::": false,
	} {
		res := request(t, c, s, user, pass, stun.MethodCreatePermission, xorPeerAddress{ip: netip.MustParseAddr(target), port: 9})
		if got := res.Type.Class == stun.ClassSuccessResponse; got != admitted {
			t.Errorf("CreatePermission to %s: %s, want admitted=%v", target, res.Type, admitted)
		}
	}
}

// TestOwnRelayException: with loopback denied and the relay on 127.0.0.1,
// two allocations still reach each other's relayed addresses; any other
// port on 127.0.0.1, inside the relay range or not, is unreachable in both
// directions.
func TestOwnRelayException(t *testing.T) {
	s := newTestServer(t, nil)
	ua, pa := validCredentials("alice")
	ub, pb := validCredentials("bob")
	relayA := allocate(t, newUDPClient(t, s, ua, pa))
	relayB := allocate(t, newTCPClient(t, s, ub, pb))

	// B's permission for A's relay comes first, so A's packet is accepted.
	if _, err := relayB.WriteTo([]byte("open sesame"), relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := relayA.WriteTo([]byte("hello bob"), relayB.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	got, from := readWithin(t, relayB)
	if string(got) != "hello bob" || from.String() != relayA.LocalAddr().String() {
		t.Fatalf("B got %q from %s", got, from)
	}
	if _, err := relayB.WriteTo([]byte("hello alice"), relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for {
		got, _ := readWithin(t, relayA)
		if string(got) == "hello alice" {
			break
		}
	}

	// Another service on the relay's host, outside the relay range.
	outside := newPeer(t)
	before := s.Stats().DroppedPackets
	if _, err := relayA.WriteTo([]byte("leak attempt"), outside.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the send to a non-relay port to be dropped", func() bool { return s.Stats().DroppedPackets > before })

	// A port inside the relay range that is not a live relay socket.
	inRange := testRelayPortMin
	for s.policy.isRelayPort(uint16(inRange)) {
		inRange++
	}
	before = s.Stats().DroppedPackets
	if _, err := relayA.WriteTo([]byte("leak attempt"), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: inRange}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the send to an idle in-range port to be dropped", func() bool { return s.Stats().DroppedPackets > before })

	// Inbound from the outside port is dropped too, though A holds a
	// permission for 127.0.0.1.
	before = s.Stats().DroppedPackets
	if _, err := outside.WriteTo([]byte("inject"), relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the inbound packet from a non-relay port to be dropped", func() bool { return s.Stats().DroppedPackets > before })

	// The relays still talk after all that, and nothing leaked: A reads
	// B's reply, never the injected packet.
	if _, err := relayA.WriteTo([]byte("still here"), relayB.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for {
		if got, _ := readWithin(t, relayB); string(got) == "still here" {
			break
		}
	}
	if _, err := relayB.WriteTo([]byte("me too"), relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for {
		got, _ := readWithin(t, relayA)
		if string(got) == "inject" {
			t.Fatal("a packet from a non-relay port reached the client")
		}
		if string(got) == "me too" {
			break
		}
	}
	_ = outside.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := outside.ReadFrom(make([]byte, 64)); err == nil {
		t.Fatalf("the non-relay port received %d bytes through the relay", n)
	}
}

func turnErrorCode(err error) int {
	var te *stun.TurnError
	if errors.As(err, &te) {
		return int(te.ErrorCodeAttr.Code)
	}
	return 0
}

// TestQuota: the allocation past the per-credential limit and the one past
// the server limit are refused with 486; the others keep relaying, and a
// freed slot can be taken again.
func TestQuota(t *testing.T) {
	s := newTestServer(t, func(c *Config) {
		c.Allow = loopbackAllowed
		c.MaxAllocationsPerUser = 2
		c.MaxAllocations = 3
	})
	u1, p1 := validCredentials("one")
	u2, p2 := validCredentials("two")
	u3, p3 := validCredentials("three")

	first := allocate(t, newUDPClient(t, s, u1, p1))
	allocate(t, newTCPClient(t, s, u1, p1))
	// Third for the same credential, over either transport: 486.
	for _, c := range []*pionturn.Client{newUDPClient(t, s, u1, p1), newTCPClient(t, s, u1, p1)} {
		if _, err := c.Allocate(); turnErrorCode(err) != int(stun.CodeAllocQuotaReached) {
			t.Fatalf("third allocation for one credential: %v, want 486", err)
		}
	}
	second := allocate(t, newUDPClient(t, s, u2, p2))
	// Fourth on the server: 486 for a fresh credential too.
	if _, err := newUDPClient(t, s, u3, p3).Allocate(); turnErrorCode(err) != 486 {
		t.Fatalf("allocation past the server limit: %v, want 486", err)
	}
	st := s.Stats()
	if st.RefusedQuotaUser != 2 || st.RefusedQuotaTotal != 1 || st.AllocationsActive != 3 {
		t.Fatalf("stats %+v: want 2 per-user and 1 total refusal, 3 active", st)
	}
	if r := st.Refused(); r[ReasonQuotaUser] != 2 || r[ReasonQuotaTotal] != 1 || len(r) != 4 {
		t.Fatalf("Refused() = %v", r)
	}

	// The admitted allocations keep working.
	exchange(t, first, newPeer(t))
	exchange(t, second, newPeer(t))

	// Releasing one frees a slot for the refused credential.
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the released allocation to be deleted", func() bool { return s.Stats().AllocationsActive == 2 })
	exchange(t, allocate(t, newUDPClient(t, s, u3, p3)), newPeer(t))
}

// TestBadCredentials: wrong password, expired, over-long, malformed or
// wrong-realm credentials are refused and counted; nothing is allocated.
func TestBadCredentials(t *testing.T) {
	s := newTestServer(t, nil)
	user, _ := validCredentials("alice")
	expUser, expPass, _ := Credentials(testSecret, "alice", time.Hour, time.Now().Add(-2*time.Hour))
	longUser := "99999999999:alice"
	otherUser, otherPass, _ := Credentials([]byte("another-secret-of-some-length"), "alice", time.Hour, time.Now())
	for name, cred := range map[string][2]string{
		"wrong password": {user, "AAAAAAAAAAAAAAAAAAAAAAAAAAA="},
		"expired":        {expUser, expPass},
		"too long":       {longUser, restPassword(testSecret, longUser)},
		"malformed":      {"alice", restPassword(testSecret, "alice")},
		"other secret":   {otherUser, otherPass},
	} {
		t.Run(name, func(t *testing.T) {
			before := s.Stats().BadCredentials
			for _, c := range []*pionturn.Client{newUDPClient(t, s, cred[0], cred[1]), newTCPClient(t, s, cred[0], cred[1])} {
				if _, err := c.Allocate(); err == nil {
					t.Fatal("allocation succeeded")
				}
			}
			if got := s.Stats().BadCredentials; got < before+2 {
				t.Errorf("BadCredentials %d -> %d, want +2", before, got)
			}
		})
	}
	if st := s.Stats(); st.AllocationsCreated != 0 {
		t.Errorf("stats %+v: allocations created with bad credentials", st)
	}
}

// TestICEServers: the list names our listeners and its credentials allocate.
func TestICEServers(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Host = "turn.example.org"; c.Allow = loopbackAllowed })
	list := s.ICEServers("carol", time.Hour)
	port := s.UDPAddr().Port
	want := []string{
		"stun:turn.example.org:" + strconv.Itoa(port),
		"turn:turn.example.org:" + strconv.Itoa(port) + "?transport=udp",
		"turn:turn.example.org:" + strconv.Itoa(port) + "?transport=tcp",
	}
	var urls []string
	for _, e := range list {
		urls = append(urls, e.URLs...)
	}
	if len(list) != 2 || !slices.Equal(urls, want) {
		t.Fatalf("ICEServers = %+v, want URLs %v", list, want)
	}
	exchange(t, allocate(t, newUDPClient(t, s, list[1].Username, list[1].Credential)), newPeer(t))
}

// TestQuotaReleasedOnFailure: a slot reserved by the quota check is given
// back when the allocation then fails (here: no free relay port, 508), so a
// credential at its limit is not locked out by failures.
func TestQuotaReleasedOnFailure(t *testing.T) {
	taken := newPeer(t)
	port := taken.LocalAddr().(*net.UDPAddr).Port
	s := newTestServer(t, func(c *Config) {
		c.RelayPortMin, c.RelayPortMax = port, port
		c.MaxAllocationsPerUser = 1
	})
	user, pass := validCredentials("alice")
	for range 2 {
		if _, err := newUDPClient(t, s, user, pass).Allocate(); turnErrorCode(err) != int(stun.CodeInsufficientCapacity) {
			t.Fatalf("allocation with the only relay port taken: %v, want 508", err)
		}
	}
	_ = taken.Close()
	allocate(t, newUDPClient(t, s, user, pass))
	if st := s.Stats(); st.RefusedQuotaUser != 0 || st.AllocationsActive != 1 {
		t.Fatalf("stats %+v: want the failed attempts to leave no quota behind", st)
	}
}
