package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/packetio"

	"github.com/sotto-voice/sotto/media/ice"
)

// Handler is what a session's owner hears from the transport. RTP and
// RTCP are called on the goroutine that read the packet, one packet at a
// time per goroutine; they must not block, and may send through w, which
// is valid only during the call. Connectivity and Failed come from the
// transport's own goroutines and must not block either.
type Handler interface {
	// RTP is a decrypted RTP packet: pkt is header and payload, h the
	// parsed header. Both are valid only during the call.
	RTP(pkt []byte, h *rtp.Header, now time.Time, w *Writer)
	// RTCP is a decrypted compound RTCP packet, valid only during the call.
	RTCP(pkt []byte, now time.Time, w *Writer)
	// Connectivity reports that the client fell silent (false) or is
	// heard again (true); the first connection is not reported.
	Connectivity(connected bool)
	// Failed reports that the session is lost, once ("ICE failed": silent
	// too long; "peer connection closed": the client closed DTLS; "peer
	// connection failed": the DTLS handshake failed). The session is not
	// closed: its owner closes it.
	Failed(reason string)
}

// Role is the relay's DTLS role in a session (RFC 5763 a=setup).
type Role int

const (
	// Passive: the client connects (a=setup:passive), the relay is the
	// DTLS server: the relay's answer to a client that offers active.
	Passive Role = iota
	// Active: the relay connects (a=setup:active) once ICE has a path:
	// the relay's answer to a client's actpass or passive.
	Active
)

// Fingerprint is one a=fingerprint of the client's description.
type Fingerprint struct {
	Algorithm string // "sha-256", as in the SDP
	Value     string // colon-separated hex
}

// SessionConfig is what a session knows from the offer and answer.
type SessionConfig struct {
	Local ice.Credentials // the relay's, in its answer
	// Fingerprints are the client's certificate fingerprints; the DTLS
	// handshake fails unless the client's certificate matches one.
	Fingerprints []Fingerprint
	Role         Role
	// Cryptex: both sides said a=cryptex (RFC 9335), so the header
	// extensions and CSRCs of RTP are encrypted both ways.
	Cryptex bool
	Logger  *slog.Logger
}

// maxPaths bounds the addresses a session keeps: a client checks a few
// candidate pairs, and an ICE restart brings new ones.
const maxPaths = 8

// path is one way to the client: a UDP address or an ICE-TCP connection.
type path struct {
	addr netip.AddrPort // UDP
	tcp  *tcpConn
}

// Session is one participant's media transport.
type Session struct {
	t            *Transport
	h            Handler
	role         Role
	cryptex      bool
	fingerprints []Fingerprint
	log          *slog.Logger

	mu        sync.Mutex
	local     ice.Credentials
	integrity *ice.Integrity // of local.Pwd
	paths     []*path
	closed    bool
	restarted bool // no check has come under the credentials of Restart yet

	selected  atomic.Pointer[path] // where packets to the client go
	pathReady chan struct{}        // closed when the first path is selected
	heard     atomic.Int64         // unix ns: last authenticated packet
	everHeard atomic.Bool
	silent    bool // owned by the monitor
	failed    atomic.Bool

	ready atomic.Bool   // the SRTP contexts are in place
	ended atomic.Bool   // Close was called
	rxMu  sync.Mutex    // held while a packet of the client's is handled
	rx    *srtp.Context // decrypts what the client sends
	early [][]byte      // packets that came before the keys
	txMu  sync.Mutex
	tx    *srtp.Context // encrypts what the relay sends
	txBuf []byte        // Session.WriteRTCP's output, under txMu
	txHdr rtcp.Header

	dtlsIn   *packetio.Buffer // DTLS records from the client, for the handshake
	dtlsAddr net.Addr
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when the DTLS goroutine ends
}

// ErrNotConnected is returned for a packet sent before the session has a
// path and keys.
var ErrNotConnected = errors.New("transport: session not connected")

// ErrClosed is returned by NewSession on a closed transport.
var ErrClosed = errors.New("transport: closed")

// NewSession starts a session: it answers the checks made with its
// credentials and runs the DTLS handshake when the client comes.
func (t *Transport) NewSession(cfg SessionConfig, h Handler) (*Session, error) {
	s := &Session{
		t:            t,
		h:            h,
		role:         cfg.Role,
		cryptex:      cfg.Cryptex,
		fingerprints: cfg.Fingerprints,
		log:          cmpLogger(cfg.Logger, t.log),
		local:        cfg.Local,
		integrity:    ice.NewIntegrity(cfg.Local.Pwd),
		pathReady:    make(chan struct{}),
		txBuf:        make([]byte, MaxPacket),
		dtlsIn:       packetio.NewBuffer(),
		dtlsAddr:     t.udp.LocalAddr(),
		done:         make(chan struct{}),
	}
	// A handshake's flights are a few KB; more is a flood.
	s.dtlsIn.SetLimitSize(64 << 10)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.heard.Store(time.Now().UnixNano())
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	if _, taken := t.byUfrag[cfg.Local.Ufrag]; taken {
		t.mu.Unlock()
		return nil, fmt.Errorf("transport: ICE ufrag %q already in use", cfg.Local.Ufrag)
	}
	t.byUfrag[cfg.Local.Ufrag] = s
	t.sessions[s] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		defer close(s.done)
		s.runDTLS()
	}()
	return s, nil
}

func cmpLogger(a, b *slog.Logger) *slog.Logger {
	if a != nil {
		return a
	}
	return b
}

// Restart takes new ICE credentials (an ICE restart): checks must use them
// from now on. The DTLS session and the keys stay; the current path stays
// until a check comes under the new credentials. That check is the
// client's new agent speaking, which may already have dropped the old
// path (pion's does as it restarts), so the relay sends there at once
// rather than waiting for a nomination or for media.
func (s *Session) Restart(local ice.Credentials) error {
	// Lock order: a session's mu, then the transport's.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.t.mu.Lock()
	defer s.t.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if other, taken := s.t.byUfrag[local.Ufrag]; taken && other != s {
		return fmt.Errorf("transport: ICE ufrag %q already in use", local.Ufrag)
	}
	delete(s.t.byUfrag, s.local.Ufrag)
	s.t.byUfrag[local.Ufrag] = s
	s.local = local
	s.integrity = ice.NewIntegrity(local.Pwd)
	s.restarted = true
	return nil
}

// Close ends the session: it stops answering its client, says goodbye
// over DTLS if the handshake was done, and forgets its keys. The handler
// is not called after Close returns, except by a packet already being
// handled.
func (s *Session) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	paths := s.paths
	s.paths = nil
	s.mu.Unlock()
	s.failed.Store(true) // no Failed after a deliberate close
	s.ended.Store(true)

	s.t.mu.Lock()
	if s.t.byUfrag[s.local.Ufrag] == s {
		delete(s.t.byUfrag, s.local.Ufrag)
	}
	for _, p := range paths {
		if p.tcp == nil && s.t.byAddr[p.addr] == s {
			delete(s.t.byAddr, p.addr)
		}
	}
	delete(s.t.sessions, s)
	s.t.mu.Unlock()

	s.cancel()
	<-s.done
	for _, p := range paths {
		if p.tcp != nil {
			p.tcp.close()
		}
	}
	s.ready.Store(false)
	s.rxMu.Lock()
	s.rx, s.early = nil, nil
	s.rxMu.Unlock()
	s.txMu.Lock()
	s.tx = nil
	s.txMu.Unlock()
}

// checked records an authenticated check from p; nominate makes p the
// path packets to the client take. The first path checked is taken until
// the client nominates one, and so is the first after a Restart.
func (s *Session) checked(p path, nominate bool, now time.Time) {
	s.heard.Store(now.UnixNano())
	s.everHeard.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	var known *path
	for _, q := range s.paths {
		if *q == p {
			known = q
			break
		}
	}
	if known == nil {
		np := p // a new path is kept; p itself stays on the stack
		known = &np
		if len(s.paths) == maxPaths {
			s.dropOldestPath()
		}
		s.paths = append(s.paths, known)
		if p.tcp == nil {
			s.t.mu.Lock()
			s.t.byAddr[p.addr] = s
			s.t.mu.Unlock()
		}
	}
	cur := s.selected.Load()
	if nominate || cur == nil || s.restarted {
		s.selected.Store(known)
		s.restarted = false
	}
	if cur == nil {
		close(s.pathReady)
	}
}

// dropOldestPath forgets the oldest path that is not selected; s.mu held.
func (s *Session) dropOldestPath() {
	sel := s.selected.Load()
	for i, q := range s.paths {
		if q == sel {
			continue
		}
		s.paths = append(s.paths[:i], s.paths[i+1:]...)
		if q.tcp == nil {
			s.t.mu.Lock()
			if s.t.byAddr[q.addr] == s {
				delete(s.t.byAddr, q.addr)
			}
			s.t.mu.Unlock()
		} else {
			q.tcp.close()
		}
		return
	}
}

// lostTCP forgets a TCP connection that closed.
func (s *Session) lostTCP(c *tcpConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.paths {
		if q.tcp == c {
			s.paths = append(s.paths[:i], s.paths[i+1:]...)
			s.selected.CompareAndSwap(q, nil)
			return
		}
	}
}

// authenticate checks a request's MESSAGE-INTEGRITY against the session's
// password and appends the response to dst. The client's half of USERNAME
// is not compared with its description's: the relay's half and password
// change with every ICE restart, which is what discards stale checks, and
// a client may restart its own agent on its side (pion does when it
// applies an offer before its transport started).
func (s *Session) authenticate(r *ice.Request, from netip.AddrPort, dst []byte) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !r.Authentic(s.integrity) {
		return dst, false
	}
	return r.AppendSuccess(dst, from, s.integrity), true
}

// checkLiveness reports a client that fell silent, came back or is given
// up; the monitor calls it.
func (s *Session) checkLiveness(now time.Time) {
	if s.failed.Load() {
		return
	}
	silence := now.Sub(time.Unix(0, s.heard.Load()))
	disconnected := s.t.cfg.DisconnectedAfter
	switch {
	case silence >= disconnected+s.t.cfg.FailedAfter:
		s.fail("ICE failed")
	case silence >= disconnected:
		if s.everHeard.Load() && !s.silent {
			s.silent = true
			s.h.Connectivity(false)
		}
	case s.silent:
		s.silent = false
		s.h.Connectivity(true)
	}
}

// fail reports the session lost, once.
func (s *Session) fail(reason string) {
	if s.failed.CompareAndSwap(false, true) {
		s.h.Failed(reason)
	}
}

// maxEarly bounds the packets kept from a client that sends media before
// the relay has its keys: the newest, 320 ms of audio at most.
const maxEarly = 16

// receive handles an SRTP or SRTCP packet from the client. The session's
// packets are handled one at a time, whichever goroutine reads them, so
// its handler needs no locking of its own. The client may send before the
// relay's side of the handshake has installed the keys (it finishes after
// the relay's last flight): such packets wait for the keys.
func (s *Session) receive(b []byte, from path, now time.Time, w *Writer) {
	s.rxMu.Lock()
	defer s.rxMu.Unlock()
	if s.rx == nil {
		if s.ended.Load() {
			s.t.counters.stale.Add(1)
			return
		}
		var keep []byte
		if len(s.early) == maxEarly {
			// Audio that waited this long is stale: the newest packets are
			// kept, so that what follows them is continuous.
			keep = s.early[0][:0]
			s.early = append(s.early[:0], s.early[1:]...)
			s.t.counters.stale.Add(1)
		}
		s.early = append(s.early, append(keep, b...))
		return
	}
	s.decrypt(b, &from, now, w)
}

// follow makes from, where the client's media comes from, the path the
// relay sends on. The client chooses its path: it sends on the pair it
// picked, and may do so before it nominates it (pion does after an ICE
// restart, when its old path is already closed). Only a path an
// authenticated check came over is taken.
func (s *Session) follow(from path) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.paths {
		if *q == from {
			s.selected.Store(q)
			return
		}
	}
}

// decrypt decrypts one packet in place and hands it to the handler; s.rxMu
// held, s.rx set. An authentic packet from a path other than the selected
// one moves the relay there first (follow); from is nil for a packet kept
// from before the keys.
func (s *Session) decrypt(b []byte, from *path, now time.Time, w *Writer) {
	// RFC 5761: RTCP packet types 192-223 share the port with RTP.
	if len(b) >= 2 && b[1] >= 192 && b[1] <= 223 {
		out, err := s.rx.DecryptRTCP(b, b, &w.rxRTCP)
		if err != nil {
			s.t.counters.unauthentic.Add(1)
			return
		}
		s.heardFrom(from, now)
		s.h.RTCP(out, now, w)
		return
	}
	out, err := s.rx.DecryptRTP(b, b, &w.rxRTP)
	if err != nil {
		s.t.counters.unauthentic.Add(1)
		return
	}
	s.heardFrom(from, now)
	s.h.RTP(out, &w.rxRTP, now, w)
}

// heardFrom records an authentic packet from the client.
func (s *Session) heardFrom(from *path, now time.Time) {
	s.heard.Store(now.UnixNano())
	if from != nil {
		if sel := s.selected.Load(); sel == nil || *sel != *from {
			s.follow(*from)
		}
	}
}

var errNoContext = errors.New("transport: no SRTP context")

// WriteRTCP encrypts and sends one compound RTCP packet at once, from any
// goroutine; the packet path sends through its Writer instead.
func (s *Session) WriteRTCP(pkt []byte) error {
	p := s.selected.Load()
	if p == nil || !s.ready.Load() {
		return ErrNotConnected
	}
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if s.tx == nil {
		return ErrNotConnected
	}
	out, err := s.tx.EncryptRTCP(s.txBuf[:0], pkt, &s.txHdr)
	if err != nil {
		return fmt.Errorf("transport: encrypt RTCP: %w", err)
	}
	return s.sendRaw(p, out)
}

// sendRaw sends b as it is on p, at once.
func (s *Session) sendRaw(p *path, b []byte) error {
	if p.tcp != nil {
		if !p.tcp.send(b) {
			s.t.counters.writeErrors.Add(1)
			return errTCPQueueFull
		}
		return nil
	}
	if _, err := s.t.udp.WriteToUDPAddrPort(b, p.addr); err != nil {
		s.t.counters.writeErrors.Add(1)
		return fmt.Errorf("transport: send: %w", err)
	}
	return nil
}

// srtpProfile maps the DTLS-SRTP profile negotiated to pion/srtp's.
func srtpProfile(p dtls.SRTPProtectionProfile) (srtp.ProtectionProfile, error) {
	switch p {
	case dtls.SRTP_AEAD_AES_128_GCM:
		return srtp.ProtectionProfileAeadAes128Gcm, nil
	case dtls.SRTP_AES128_CM_HMAC_SHA1_80:
		return srtp.ProtectionProfileAes128CmHmacSha1_80, nil
	}
	return 0, fmt.Errorf("transport: SRTP profile %#x not offered", uint16(p))
}
