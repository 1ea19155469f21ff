package transport

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/srtp/v3"
)

// newCertificate makes the transport's DTLS certificate: self-signed
// ECDSA P-256, as WebRTC endpoints use, identified by its SHA-256
// fingerprint in the SDP rather than by a chain.
func newCertificate() (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("transport: certificate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("transport: certificate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "sotto"},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.AddDate(1, 0, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("transport: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, fingerprintOf(der), nil
}

// fingerprintOf is "sha-256 " and the certificate's hash, colon-separated
// hex (RFC 8122).
func fingerprintOf(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	b.WriteString("sha-256 ")
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", c)
	}
	return b.String()
}

// verifyFingerprint checks the client's certificate against the
// fingerprints of its description. Only SHA-256 is accepted: every WebRTC
// stack offers it.
func (s *Session) verifyFingerprint(raw [][]byte, _ [][]*x509.Certificate) error {
	if len(raw) == 0 {
		return errors.New("transport: the client sent no certificate")
	}
	got := strings.TrimPrefix(fingerprintOf(raw[0]), "sha-256 ")
	for _, fp := range s.fingerprints {
		if strings.EqualFold(fp.Algorithm, "sha-256") && strings.EqualFold(fp.Value, got) {
			return nil
		}
	}
	return errors.New("transport: the client's certificate does not match its fingerprint")
}

// runDTLS runs the session's DTLS handshake, installs the SRTP keys it
// yields, then reads the connection until the client closes it. Records
// reach it through s.dtlsIn, from the goroutine reading the client's path.
func (s *Session) runDTLS() {
	conn := &dtlsPacketConn{s: s}
	opts := []dtls.Option{
		dtls.WithCertificates(s.t.cert),
		dtls.WithSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80),
		dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
		// Certificates are self-signed: the fingerprint is the identity.
		dtls.WithInsecureSkipVerify(true),
		dtls.WithVerifyPeerCertificate(s.verifyFingerprint),
		dtls.WithLoggerFactory(s.t.loggers),
	}
	var dc *dtls.Conn
	var err error
	if s.role == Passive {
		server := []dtls.ServerOption{
			dtls.WithClientAuth(dtls.RequireAnyClientCert),
			// Only addresses that passed an authenticated ICE check reach
			// DTLS, which is what the cookie exchange would prove: skip
			// its round trip.
			dtls.WithInsecureSkipVerifyHello(true),
		}
		for _, o := range opts {
			server = append(server, o)
		}
		dc, err = dtls.ServerWithOptions(conn, s.dtlsAddr, server...)
	} else {
		select {
		case <-s.pathReady:
		case <-s.ctx.Done():
			return
		}
		client := make([]dtls.ClientOption, 0, len(opts))
		for _, o := range opts {
			client = append(client, o)
		}
		dc, err = dtls.ClientWithOptions(conn, s.dtlsAddr, client...)
	}
	if err == nil {
		err = dc.HandshakeContext(s.ctx)
	}
	if err == nil {
		err = s.installKeys(dc)
	}
	if err != nil {
		if dc != nil {
			_ = dc.Close()
		}
		if s.ctx.Err() == nil {
			s.log.Debug("DTLS handshake", "err", err)
			s.fail("peer connection failed")
		}
		return
	}
	stop := context.AfterFunc(s.ctx, func() { _ = dc.Close() })
	defer stop()
	buf := make([]byte, MaxPacket)
	for {
		// WebRTC audio carries nothing over DTLS after the handshake
		// (no data channel): reading only sees the client's goodbye.
		if _, err := dc.Read(buf); err != nil {
			if s.ctx.Err() == nil {
				if !errors.Is(err, io.EOF) {
					s.log.Debug("DTLS read", "err", err)
				}
				s.fail("peer connection closed")
			}
			_ = dc.Close()
			return
		}
	}
}

// installKeys derives the session's SRTP keys from the handshake (RFC
// 5764 section 4.2) and puts the contexts in place.
func (s *Session) installKeys(dc *dtls.Conn) error {
	chosen, ok := dc.SelectedSRTPProtectionProfile()
	if !ok {
		return errors.New("transport: the client negotiated no SRTP profile")
	}
	profile, err := srtpProfile(chosen)
	if err != nil {
		return err
	}
	state, ok := dc.ConnectionState()
	if !ok {
		return errors.New("transport: no DTLS state after the handshake")
	}
	cfg := srtp.Config{Profile: profile}
	if err := cfg.ExtractSessionKeysFromDTLS(&state, s.role == Active); err != nil {
		return fmt.Errorf("transport: SRTP keys: %w", err)
	}
	defer func() {
		clear(cfg.Keys.LocalMasterKey)
		clear(cfg.Keys.LocalMasterSalt)
		clear(cfg.Keys.RemoteMasterKey)
		clear(cfg.Keys.RemoteMasterSalt)
	}()
	cryptex := srtp.Cryptex(srtp.CryptexModeDisabled)
	if s.cryptex {
		// Enabled, not Required: RFC 9335 lets a sender leave a packet
		// without extensions in the ordinary form.
		cryptex = srtp.Cryptex(srtp.CryptexModeEnabled)
	}
	// The replay window covers a repaired packet arriving well after the
	// packets that overtook it (the relay asks again for 2.5 s at most).
	rx, err := srtp.CreateContext(cfg.Keys.RemoteMasterKey, cfg.Keys.RemoteMasterSalt, profile,
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow), cryptex)
	if err != nil {
		return fmt.Errorf("transport: SRTP context: %w", err)
	}
	tx, err := srtp.CreateContext(cfg.Keys.LocalMasterKey, cfg.Keys.LocalMasterSalt, profile, cryptex)
	if err != nil {
		return fmt.Errorf("transport: SRTP context: %w", err)
	}
	s.txMu.Lock()
	s.tx = tx
	s.txMu.Unlock()
	s.ready.Store(true)
	s.rxMu.Lock()
	defer s.rxMu.Unlock()
	s.rx = rx
	if len(s.early) > 0 {
		w, err := s.t.newWriter(maxEarly)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, b := range s.early {
			s.decrypt(b, nil, now, w)
		}
		w.Flush()
		s.early = nil
	}
	return nil
}

// replayWindow is the SRTP and SRTCP replay window, in packets: 2.5 s of
// 20 ms audio, as long as the relay asks for a lost packet.
const replayWindow = 128

// dtlsPacketConn is the net.PacketConn pion's DTLS runs over: records in
// from the session's dtlsIn, out on the session's current path.
type dtlsPacketConn struct{ s *Session }

func (c *dtlsPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, err := c.s.dtlsIn.Read(b, nil)
	return n, c.s.dtlsAddr, err
}

func (c *dtlsPacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	p := c.s.selected.Load()
	if p == nil {
		return 0, ErrNotConnected
	}
	if err := c.s.sendRaw(p, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (c *dtlsPacketConn) Close() error                      { return c.s.dtlsIn.Close() }
func (c *dtlsPacketConn) LocalAddr() net.Addr               { return c.s.t.udp.LocalAddr() }
func (c *dtlsPacketConn) SetDeadline(t time.Time) error     { return c.s.dtlsIn.SetReadDeadline(t) }
func (c *dtlsPacketConn) SetReadDeadline(t time.Time) error { return c.s.dtlsIn.SetReadDeadline(t) }
func (c *dtlsPacketConn) SetWriteDeadline(time.Time) error  { return nil }
