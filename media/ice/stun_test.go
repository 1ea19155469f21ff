package ice

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/stun/v3"
)

// request builds a Binding request as a full agent (pion's STUN package)
// does: USERNAME, PRIORITY, ICE-CONTROLLING, optionally USE-CANDIDATE,
// MESSAGE-INTEGRITY with pwd, FINGERPRINT.
func request(t testing.TB, username, pwd string, nominate bool) *stun.Message {
	t.Helper()
	prio := make([]byte, 4)
	binary.BigEndian.PutUint32(prio, 1845501695)
	setters := []stun.Setter{
		stun.TransactionID, stun.BindingRequest, stun.NewUsername(username),
		stun.RawAttribute{Type: stun.AttrPriority, Value: prio},
		stun.RawAttribute{Type: stun.AttrICEControlling, Value: make([]byte, 8)},
	}
	if nominate {
		setters = append(setters, stun.RawAttribute{Type: stun.AttrUseCandidate})
	}
	setters = append(setters, stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestBindingRequestAndResponse(t *testing.T) {
	local := NewCredentials()
	key := NewIntegrity(local.Pwd)
	for _, from := range []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.7:40000"),
		netip.MustParseAddrPort("[::ffff:192.0.2.7]:40001"), // a dual-stack socket's view of IPv4
		netip.MustParseAddrPort("[2001:db8::1]:40002"),
	} {
		for _, nominate := range []bool{false, true} {
			m := request(t, local.Ufrag+":clientfrag", local.Pwd, nominate)
			var r Request
			if err := ParseBindingRequest(m.Raw, &r); err != nil {
				t.Fatal(err)
			}
			if string(r.LocalUfrag) != local.Ufrag || string(r.RemoteUfrag) != "clientfrag" {
				t.Errorf("USERNAME parsed as %q:%q", r.LocalUfrag, r.RemoteUfrag)
			}
			if r.UseCandidate != nominate || !r.Controlling || r.Priority != 1845501695 {
				t.Errorf("use-candidate %v controlling %v priority %d", r.UseCandidate, r.Controlling, r.Priority)
			}
			if !r.Authentic(key) {
				t.Error("a request signed with the password is not authentic")
			}
			if r.Authentic(NewIntegrity(local.Pwd + "x")) {
				t.Error("a request is authentic under another password")
			}

			// The response, read by pion's STUN package as a client would.
			resp := &stun.Message{Raw: r.AppendSuccess([]byte("prefix"), from, key)[len("prefix"):]}
			if err := resp.Decode(); err != nil {
				t.Fatal(err)
			}
			if resp.Type != stun.BindingSuccess || resp.TransactionID != m.TransactionID {
				t.Errorf("response type %v, transaction %x; want success, %x", resp.Type, resp.TransactionID, m.TransactionID)
			}
			if err := stun.NewShortTermIntegrity(local.Pwd).Check(resp); err != nil {
				t.Errorf("response integrity: %v", err)
			}
			if err := stun.Fingerprint.Check(resp); err != nil {
				t.Errorf("response fingerprint: %v", err)
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(resp); err != nil {
				t.Fatal(err)
			}
			got, _ := netip.AddrFromSlice(xor.IP)
			if got.Unmap() != from.Addr().Unmap() || xor.Port != int(from.Port()) {
				t.Errorf("XOR-MAPPED-ADDRESS %v:%d, want %v", xor.IP, xor.Port, from)
			}
		}
	}
}

func TestBadRequests(t *testing.T) {
	good := request(t, "relay:client", "password-password-password", true).Raw
	corrupt := func(i int) []byte {
		b := append([]byte(nil), good...)
		b[i] ^= 1
		return b
	}
	noCreds, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	noColon := request(t, "relayclient", "password-password-password", false).Raw
	response, err := stun.Build(stun.TransactionID, stun.BindingSuccess)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"empty":            {nil, ErrNotSTUN},
		"RTP":              {append([]byte{0x80, 111}, good[2:]...), ErrNotSTUN},
		"truncated":        {good[:len(good)-4], ErrMalformed},
		"bad length":       {append(append([]byte(nil), good...), 0, 0, 0, 0), ErrMalformed},
		"response":         {response.Raw, ErrNotBinding},
		"bad fingerprint":  {corrupt(len(good) - 1), ErrBadFingerprint},
		"no credentials":   {noCreds.Raw, ErrNoCredentials},
		"USERNAME without": {noColon, ErrMalformed},
	} {
		var r Request
		if err := ParseBindingRequest(tc.b, &r); err != tc.want {
			t.Errorf("%s: err = %v, want %v", name, err, tc.want)
		}
	}
	// A bit flipped before the FINGERPRINT's own check covers it is caught
	// by MESSAGE-INTEGRITY once the fingerprint is made to match.
	m := request(t, "relay:client", "password-password-password", true)
	m.Raw[len(m.Raw)-20] ^= 1 // inside MESSAGE-INTEGRITY's value
	binary.BigEndian.PutUint32(m.Raw[len(m.Raw)-4:], fingerprint(m.Raw[:len(m.Raw)-8]))
	var r Request
	if err := ParseBindingRequest(m.Raw, &r); err != nil {
		t.Fatal(err)
	}
	if r.Authentic(NewIntegrity("password-password-password")) {
		t.Error("a tampered request is authentic")
	}
}

func TestNoAllocations(t *testing.T) {
	local := NewCredentials()
	key := NewIntegrity(local.Pwd)
	m := request(t, local.Ufrag+":client", local.Pwd, true)
	from := netip.MustParseAddrPort("192.0.2.7:40000")
	out := make([]byte, 0, 256)
	var r Request
	if allocs := testing.AllocsPerRun(100, func() {
		if ParseBindingRequest(m.Raw, &r) != nil || !r.Authentic(key) {
			t.Fatal("request refused")
		}
		out = r.AppendSuccess(out[:0], from, key)
	}); allocs != 0 {
		t.Errorf("a check costs %v allocations", allocs)
	}
}

func TestCredentialsAndCandidates(t *testing.T) {
	a, b := NewCredentials(), NewCredentials()
	if a == b || len(a.Ufrag) != 16 || len(a.Pwd) != 32 {
		t.Errorf("credentials %+v, %+v", a, b)
	}
	for _, s := range []string{a.Ufrag, a.Pwd} {
		if strings.Trim(s, iceChars) != "" {
			t.Errorf("%q has characters ICE does not allow", s)
		}
	}
	udp := HostCandidate(netip.MustParseAddr("::ffff:127.0.0.1"), 7882, false)
	tcp := HostCandidate(netip.MustParseAddr("127.0.0.1"), 7881, true)
	if !strings.HasSuffix(udp, " 1 udp 2130706431 127.0.0.1 7882 typ host") {
		t.Errorf("UDP candidate %q", udp)
	}
	if !strings.HasSuffix(tcp, " 1 tcp 1671430143 127.0.0.1 7881 typ host tcptype passive") {
		t.Errorf("TCP candidate %q", tcp)
	}
}

// FuzzParseBindingRequest: no input makes the parser panic or read out of
// bounds, and what it accepts can be answered.
func FuzzParseBindingRequest(f *testing.F) {
	f.Add(request(f, "relay:client", "password-password-password", true).Raw)
	f.Add(request(f, "r:c", "pw", false).Raw)
	key := NewIntegrity("password-password-password")
	from := netip.MustParseAddrPort("192.0.2.7:40000")
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Request
		if ParseBindingRequest(b, &r) != nil {
			return
		}
		r.Authentic(key)
		r.AppendSuccess(nil, from, key)
	})
}
