package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	pionice "github.com/pion/ice/v4"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v3"
	"github.com/pion/transport/v5/packetio"

	"github.com/sotto-voice/sotto/internal/wait"
	"github.com/sotto-voice/sotto/media/ice"
)

func listen(t *testing.T, cfg Config) *Transport {
	t.Helper()
	cfg.IP = net.IPv4(127, 0, 0, 1)
	tr, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// recorder is a session's handler: it keeps what it hears and answers
// every RTP packet with a copy under SSRC 0x5070, through the Writer.
type recorder struct {
	s            atomic.Pointer[Session]
	mu           sync.Mutex
	rtp          []rtp.Packet
	rtcp         [][]byte
	connectivity []bool
	failures     []string
}

func (r *recorder) RTP(pkt []byte, h *rtp.Header, _ time.Time, w *Writer) {
	var p rtp.Packet
	if err := p.Unmarshal(append([]byte(nil), pkt...)); err != nil || p.SSRC != h.SSRC || p.SequenceNumber != h.SequenceNumber {
		panic(fmt.Sprintf("handler got a packet its header does not describe: %v", err))
	}
	r.mu.Lock()
	r.rtp = append(r.rtp, p)
	r.mu.Unlock()
	buf := w.Buffer()
	n := copy(buf, pkt)
	buf[8], buf[9], buf[10], buf[11] = 0, 0, 0x50, 0x70
	w.WriteRTP(r.s.Load(), n)
}

func (r *recorder) RTCP(pkt []byte, _ time.Time, _ *Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rtcp = append(r.rtcp, append([]byte(nil), pkt...))
}

func (r *recorder) Connectivity(c bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.connectivity = append(r.connectivity, c)
}

func (r *recorder) Failed(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, reason)
}

func (r *recorder) snapshot() (rtps int, rtcps int, conn []bool, fails []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rtp), len(r.rtcp), append([]bool(nil), r.connectivity...), append([]string(nil), r.failures...)
}

// client is a WebRTC client built from pion's parts, not its
// PeerConnection: a full ICE agent (controlling), a DTLS client, SRTP
// contexts from the handshake.
type client struct {
	agent  *pionice.Agent
	conn   net.Conn
	dtls   *dtls.Conn
	tx, rx *srtp.Context
	media  chan []byte // what is not DTLS, as the client's demultiplexer sorts it
}

// demux reads the client's ICE connection: DTLS to the handshake's
// connection, the rest to c.media, as a WebRTC stack's demultiplexer does.
func (c *client) demux(dtlsIn *packetio.Buffer) {
	buf := make([]byte, MaxPacket)
	for {
		n, err := c.conn.Read(buf)
		if err != nil {
			dtlsIn.Close()
			close(c.media)
			return
		}
		if buf[0] >= 20 && buf[0] <= 63 {
			_, _ = dtlsIn.Write(buf[:n], nil)
			continue
		}
		c.media <- append([]byte(nil), buf[:n]...)
	}
}

// bufferConn is a net.PacketConn reading from a buffer and writing to an
// ICE connection: the client's DTLS transport.
type bufferConn struct {
	in   *packetio.Buffer
	conn net.Conn
}

func (b *bufferConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, _, err := b.in.Read(p, nil)
	return n, b.conn.RemoteAddr(), err
}
func (b *bufferConn) WriteTo(p []byte, _ net.Addr) (int, error) { return b.conn.Write(p) }
func (b *bufferConn) Close() error                              { return b.in.Close() }
func (b *bufferConn) LocalAddr() net.Addr                       { return b.conn.LocalAddr() }
func (b *bufferConn) SetDeadline(t time.Time) error             { return b.in.SetReadDeadline(t) }
func (b *bufferConn) SetReadDeadline(t time.Time) error         { return b.in.SetReadDeadline(t) }
func (b *bufferConn) SetWriteDeadline(time.Time) error          { return nil }

type clientOptions struct {
	tcp           bool
	wrongFP       bool // the relay is told another fingerprint than the client's
	relayIsClient bool // the relay takes the DTLS client role
}

// connect starts a session on tr for a new client and connects the client.
func connect(t *testing.T, tr *Transport, opts clientOptions) (*client, *Session, *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
	defer cancel()
	cert, fp, err := newCertificate()
	if err != nil {
		t.Fatal(err)
	}
	relayCreds, clientCreds := ice.NewCredentials(), ice.NewCredentials()
	network, port := pionice.NetworkTypeUDP4, tr.UDPAddr().Port
	if opts.tcp {
		network, port = pionice.NetworkTypeTCP4, tr.TCPAddr().Port
	}
	agent, err := pionice.NewAgentWithOptions(
		pionice.WithNetworkTypes([]pionice.NetworkType{network}),
		pionice.WithIncludeLoopback(),
		pionice.WithMulticastDNSMode(pionice.MulticastDNSModeDisabled),
		pionice.WithLocalCredentials(clientCreds.Ufrag, clientCreds.Pwd),
		pionice.WithIPFilter(func(ip net.IP) bool { return ip.IsLoopback() }),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Close() })
	c := &client{agent: agent}

	rec := &recorder{}
	clientFP := strings.TrimPrefix(fp, "sha-256 ")
	if opts.wrongFP {
		_, other, _ := newCertificate()
		clientFP = strings.TrimPrefix(other, "sha-256 ")
	}
	role := Passive
	if opts.relayIsClient {
		role = Active
	}
	s, err := tr.NewSession(SessionConfig{
		Local: relayCreds, Role: role,
		Fingerprints: []Fingerprint{{Algorithm: "sha-256", Value: clientFP}},
	}, rec)
	if err != nil {
		t.Fatal(err)
	}
	rec.s.Store(s)
	t.Cleanup(s.Close)

	if err := agent.OnCandidate(func(pionice.Candidate) {}); err != nil {
		t.Fatal(err)
	}
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	line := ice.HostCandidate(netip.MustParseAddr("127.0.0.1"), port, opts.tcp)
	cand, err := pionice.UnmarshalCandidate(strings.TrimPrefix(line, "candidate:"))
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.AddRemoteCandidate(cand); err != nil {
		t.Fatal(err)
	}
	conn, err := agent.Dial(ctx, relayCreds.Ufrag, relayCreds.Pwd)
	if err != nil {
		t.Fatalf("ICE: %v", err)
	}
	c.conn = conn
	c.media = make(chan []byte, 256)
	dtlsIn := packetio.NewBuffer()
	go c.demux(dtlsIn)

	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || fingerprintOf(raw[0]) != tr.Fingerprint() {
			return errors.New("not the relay's certificate")
		}
		return nil
	}
	opt := []dtls.Option{
		dtls.WithCertificates(cert),
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(verify),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM),
		dtls.WithExtendedMasterSecret(dtls.RequireExtendedMasterSecret),
	}
	pc := &bufferConn{in: dtlsIn, conn: conn}
	if opts.relayIsClient {
		server := []dtls.ServerOption{dtls.WithClientAuth(dtls.RequireAnyClientCert)}
		for _, o := range opt {
			server = append(server, o)
		}
		c.dtls, err = dtls.ServerWithOptions(pc, conn.RemoteAddr(), server...)
	} else {
		client := make([]dtls.ClientOption, 0, len(opt))
		for _, o := range opt {
			client = append(client, o)
		}
		c.dtls, err = dtls.ClientWithOptions(pc, conn.RemoteAddr(), client...)
	}
	if err == nil {
		err = c.dtls.HandshakeContext(ctx)
	}
	if opts.wrongFP {
		return c, s, rec
	}
	if err != nil {
		t.Fatalf("DTLS: %v", err)
	}
	state, _ := c.dtls.ConnectionState()
	cfg := srtp.Config{Profile: srtp.ProtectionProfileAeadAes128Gcm}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, !opts.relayIsClient); err != nil {
		t.Fatal(err)
	}
	if c.tx, err = srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, cfg.Profile); err != nil {
		t.Fatal(err)
	}
	if c.rx, err = srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, cfg.Profile); err != nil {
		t.Fatal(err)
	}
	return c, s, rec
}

func (c *client) sendRTP(t *testing.T, seq uint16, payload string) {
	t.Helper()
	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 0xc11e}, Payload: []byte(payload)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := c.tx.EncryptRTP(nil, pkt, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.Write(enc); err != nil {
		t.Fatal(err)
	}
}

// receive reads n packets from the relay and returns the RTP ones and the
// RTCP ones, decrypted.
func (c *client) receive(t *testing.T, n int) (rtps []rtp.Packet, rtcps [][]rtcp.Packet) {
	t.Helper()
	timeout := time.After(wait.Timeout)
	for len(rtps)+len(rtcps) < n {
		var b []byte
		select {
		case b = <-c.media:
		case <-timeout:
			t.Fatalf("client got %d packets of %d", len(rtps)+len(rtcps), n)
		}
		if b[1] >= 192 && b[1] <= 223 {
			dec, err := c.rx.DecryptRTCP(nil, b, nil)
			if err != nil {
				t.Fatalf("client decrypt RTCP: %v", err)
			}
			pkts, err := rtcp.Unmarshal(dec)
			if err != nil {
				t.Fatal(err)
			}
			rtcps = append(rtcps, pkts)
			continue
		}
		dec, err := c.rx.DecryptRTP(nil, b, nil)
		if err != nil {
			t.Fatalf("client decrypt RTP: %v", err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(dec); err != nil {
			t.Fatal(err)
		}
		rtps = append(rtps, p)
	}
	return rtps, rtcps
}

func TestMediaBothWays(t *testing.T) {
	for _, opts := range []clientOptions{{}, {tcp: true}, {relayIsClient: true}} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			tr := listen(t, Config{})
			c, s, rec := connect(t, tr, opts)
			// A burst right after the handshake, which may beat the
			// relay's keys: a few packets wait for them.
			for i := range maxEarly {
				c.sendRTP(t, uint16(100+i), fmt.Sprintf("frame %d", i))
			}
			echoes, _ := c.receive(t, maxEarly)
			for i, p := range echoes {
				if p.SSRC != 0x5070 || string(p.Payload) != fmt.Sprintf("frame %d", i) || p.SequenceNumber != uint16(100+i) {
					t.Errorf("echo %d: SSRC %x seq %d payload %q", i, p.SSRC, p.SequenceNumber, p.Payload)
				}
			}
			rec.mu.Lock()
			for i, p := range rec.rtp {
				if string(p.Payload) != fmt.Sprintf("frame %d", i) || p.SSRC != 0xc11e {
					t.Errorf("relay got %q from SSRC %x", p.Payload, p.SSRC)
				}
			}
			rec.mu.Unlock()

			// RTCP both ways: the client's report reaches the handler,
			// the relay's goes out from any goroutine.
			rr, _ := (&rtcp.ReceiverReport{SSRC: 0xc11e}).Marshal()
			enc, err := c.tx.EncryptRTCP(nil, rr, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.conn.Write(enc); err != nil {
				t.Fatal(err)
			}
			wait.For(t, "the client's RTCP", func() bool { _, n, _, _ := rec.snapshot(); return n == 1 })
			sr, _ := (&rtcp.SenderReport{SSRC: 0x5070, NTPTime: 42}).Marshal()
			if err := s.WriteRTCP(sr); err != nil {
				t.Fatal(err)
			}
			_, reports := c.receive(t, 1)
			if got, ok := reports[0][0].(*rtcp.SenderReport); !ok || got.SSRC != 0x5070 || got.NTPTime != 42 {
				t.Errorf("client got %v", reports[0])
			}
			if p := s.selected.Load(); p == nil || (p.tcp != nil) != opts.tcp {
				t.Errorf("selected path %+v, want TCP %v", p, opts.tcp)
			}

			// The client says goodbye over DTLS.
			_ = c.dtls.Close()
			wait.For(t, "Failed", func() bool { _, _, _, f := rec.snapshot(); return len(f) == 1 })
			if _, _, conn, f := rec.snapshot(); f[0] != "peer connection closed" || len(conn) != 0 {
				t.Errorf("failures %q, connectivity %v", f, conn)
			}
			if st := tr.Stats(); st.Unauthentic != 0 || st.Malformed != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestWrongFingerprintFails(t *testing.T) {
	tr := listen(t, Config{})
	_, _, rec := connect(t, tr, clientOptions{wrongFP: true})
	wait.For(t, "Failed", func() bool { _, _, _, f := rec.snapshot(); return len(f) == 1 })
	if _, _, _, f := rec.snapshot(); f[0] != "peer connection failed" {
		t.Errorf("failures %q", f)
	}
}

// TestSilentClient: a client that goes quiet is reported disconnected,
// heard again when it comes back, then given up when it goes for good.
func TestSilentClient(t *testing.T) {
	tr := listen(t, Config{DisconnectedAfter: 300 * time.Millisecond, FailedAfter: 600 * time.Millisecond})
	c, _, rec := connect(t, tr, clientOptions{})
	// pion's agent checks every 2 s: silent past 300 ms in between.
	wait.For(t, "disconnected", func() bool { _, _, conn, _ := rec.snapshot(); return len(conn) >= 1 })
	c.sendRTP(t, 1, "back")
	wait.For(t, "connected again", func() bool { _, _, conn, _ := rec.snapshot(); return len(conn) >= 2 })
	if err := c.agent.Close(); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "failed", func() bool { _, _, _, f := rec.snapshot(); return len(f) == 1 })
	_, _, conn, f := rec.snapshot()
	if conn[0] || !conn[1] || f[0] != "ICE failed" {
		t.Errorf("connectivity %v, failures %q", conn, f)
	}
}

// bindingRequest is a client's check with the given credentials.
func bindingRequest(t *testing.T, local, remote ice.Credentials) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(local.Ufrag+":"+remote.Ufrag),
		stun.NewShortTermIntegrity(local.Pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

// TestRestartAndBadInput: after an ICE restart only the new credentials
// are answered; junk, strangers and forgeries are dropped and counted.
func TestRestartAndBadInput(t *testing.T) {
	tr := listen(t, Config{})
	relay, cl := ice.NewCredentials(), ice.NewCredentials()
	rec := &recorder{}
	s, err := tr.NewSession(SessionConfig{Local: relay}, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := tr.NewSession(SessionConfig{Local: relay}, rec); err == nil {
		t.Error("two sessions share a ufrag")
	}
	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	answered := func(req []byte) bool {
		t.Helper()
		if _, err := sock.WriteTo(req, tr.UDPAddr()); err != nil {
			t.Fatal(err)
		}
		_ = sock.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, MaxPacket)
		n, _, err := sock.ReadFrom(buf)
		if err != nil {
			return false
		}
		m := &stun.Message{Raw: buf[:n]}
		return m.Decode() == nil && m.Type == stun.BindingSuccess
	}
	if !answered(bindingRequest(t, relay, cl)) {
		t.Fatal("a valid check went unanswered")
	}
	relay2, cl2 := ice.NewCredentials(), ice.NewCredentials()
	if err := s.Restart(relay2); err != nil {
		t.Fatal(err)
	}
	if answered(bindingRequest(t, relay, cl)) {
		t.Error("the old credentials are still answered")
	}
	if !answered(bindingRequest(t, relay2, cl2)) {
		t.Error("the new credentials are not answered")
	}
	if answered(bindingRequest(t, ice.Credentials{Ufrag: relay2.Ufrag, Pwd: "wrong-password-wrong-password"}, cl2)) {
		t.Error("a check signed with another password is answered")
	}
	if st := tr.Stats(); st.UnknownSource != 1 || st.Unauthentic != 1 {
		t.Errorf("after the checks: %+v, want 1 unknown source (old ufrag), 1 unauthentic", st)
	}

	// Junk, and media from an address that was never checked.
	stranger, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	for _, b := range [][]byte{{0xff, 1, 2, 3}, {}, {0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1}, {22, 254, 253, 0}} {
		if _, err := stranger.WriteTo(b, tr.UDPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, "the drops counted", func() bool {
		st := tr.Stats()
		return st.Malformed == 2 && st.UnknownSource == 3 && st.Unauthentic == 1
	})
	if _, _, conn, f := rec.snapshot(); len(conn) != 0 || len(f) != 0 {
		t.Errorf("connectivity %v, failures %v", conn, f)
	}
}

// TestCloseReleasesPorts: after Close the ports are free, and sessions
// can no longer be made.
func TestCloseReleasesPorts(t *testing.T) {
	tr, err := Listen(Config{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, _, _ := connect(t, tr, clientOptions{})
	c.sendRTP(t, 1, "one")
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.ListenUDP("udp", tr.UDPAddr()); err != nil {
		t.Errorf("UDP port held: %v", err)
	} else {
		c.Close()
	}
	if l, err := net.ListenTCP("tcp", tr.TCPAddr()); err != nil {
		t.Errorf("TCP port held: %v", err)
	} else {
		l.Close()
	}
	if _, err := tr.NewSession(SessionConfig{Local: ice.NewCredentials()}, &recorder{}); !errors.Is(err, ErrClosed) {
		t.Errorf("NewSession after Close: %v", err)
	}
}

// TestFollowsTheClientsPath: a client whose media comes from another of
// its checked addresses, not nominated, gets the relay's packets there
// from then on, as after an ICE restart where the client sends on its
// new pair before nominating it. An address never checked gets nothing.
func TestFollowsTheClientsPath(t *testing.T) {
	tr := listen(t, Config{})
	c, s, _ := connect(t, tr, clientOptions{})
	c.sendRTP(t, 1, "first")
	c.receive(t, 1)

	s.mu.Lock()
	relay := s.local
	s.mu.Unlock()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	send := func(b []byte) {
		t.Helper()
		if _, err := other.WriteTo(b, tr.UDPAddr()); err != nil {
			t.Fatal(err)
		}
	}
	packet := func(seq uint16, payload string) []byte {
		t.Helper()
		pkt, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, SSRC: 0xc11e}, Payload: []byte(payload)}).Marshal()
		enc, err := c.tx.EncryptRTP(nil, pkt, nil)
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}
	buf := make([]byte, MaxPacket)
	read := func() (rtp.Packet, bool) {
		_ = other.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := other.ReadFrom(buf)
			if err != nil {
				return rtp.Packet{}, false
			}
			if buf[0] < 4 {
				continue // the check's response
			}
			dec, err := c.rx.DecryptRTP(nil, buf[:n], nil)
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			var p rtp.Packet
			if err := p.Unmarshal(dec); err != nil {
				t.Fatal(err)
			}
			return p, true
		}
	}

	// Media from the other address before any check there: not the
	// client's path yet, so the echo goes the old way.
	send(packet(2, "unchecked"))
	if p, ok := read(); ok {
		t.Fatalf("an unchecked address got %q", p.Payload)
	}
	// A check (no nomination), then media: the relay follows.
	send(bindingRequest(t, relay, ice.NewCredentials()))
	send(packet(3, "moved"))
	p, ok := read()
	if !ok || string(p.Payload) != "moved" {
		t.Fatalf("after the move the other address got %q, %v", p.Payload, ok)
	}
	if st := tr.Stats(); st.UnknownSource != 1 {
		t.Errorf("stats %+v, want the unchecked packet as unknown source", st)
	}
}

// TestRestartMovesToTheFirstNewCheck: after an ICE restart the relay sends
// where the first check under the new credentials came from, nominated or
// not: the client's new agent may have dropped its old path already.
func TestRestartMovesToTheFirstNewCheck(t *testing.T) {
	tr := listen(t, Config{})
	c, s, _ := connect(t, tr, clientOptions{})
	c.sendRTP(t, 1, "first")
	c.receive(t, 1)

	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	relay := ice.NewCredentials()
	if err := s.Restart(relay); err != nil {
		t.Fatal(err)
	}
	report, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x5e1f}})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, MaxPacket)
	// readReport reads from other until the relay's report comes, skipping
	// the check's response.
	readReport := func() bool {
		t.Helper()
		_ = other.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		for {
			n, _, err := other.ReadFrom(buf)
			if err != nil {
				return false
			}
			if buf[0] < 4 {
				continue
			}
			dec, err := c.rx.DecryptRTCP(nil, buf[:n], nil)
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			pkts, err := rtcp.Unmarshal(dec)
			if err != nil || len(pkts) != 1 {
				t.Fatalf("relay's packet: %v %v", pkts, err)
			}
			return true
		}
	}
	// Until a check comes under the new credentials, the old path stays.
	if err := s.WriteRTCP(report); err != nil {
		t.Fatal(err)
	}
	if readReport() {
		t.Fatal("a report went to an address that never checked")
	}
	if _, err := other.WriteTo(bindingRequest(t, relay, ice.NewCredentials()), tr.UDPAddr()); err != nil {
		t.Fatal(err)
	}
	wait.For(t, "the relay to take the new check's path", func() bool {
		if err := s.WriteRTCP(report); err != nil {
			t.Fatal(err)
		}
		return readReport()
	})
}

// TestEarlyPacketsKeepTheNewest: packets that come before the keys wait
// for them, the newest maxEarly of them; older ones are stale audio.
func TestEarlyPacketsKeepTheNewest(t *testing.T) {
	tr := listen(t, Config{})
	s, err := tr.NewSession(SessionConfig{Local: ice.NewCredentials()}, &recorder{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	w, err := tr.newWriter(1)
	if err != nil {
		t.Fatal(err)
	}
	const extra = 3
	for i := range maxEarly + extra {
		s.receive([]byte{0x80, byte(i)}, path{}, time.Now(), w)
	}
	s.rxMu.Lock()
	defer s.rxMu.Unlock()
	if len(s.early) != maxEarly {
		t.Fatalf("%d packets kept, want %d", len(s.early), maxEarly)
	}
	for i, b := range s.early {
		if want := byte(i + extra); b[1] != want {
			t.Errorf("kept packet %d is packet %d, want %d", i, b[1], want)
		}
	}
	if st := tr.Stats(); st.Stale != extra || st.Unauthentic != 0 {
		t.Errorf("%+v: want %d stale, none unauthentic", st, extra)
	}
}
