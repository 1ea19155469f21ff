package transport

import (
	"errors"
	"net"
	"time"

	"github.com/sotto-voice/sotto/media/ice"
	"github.com/sotto-voice/sotto/media/udp"
)

// readUDP is the UDP socket's one goroutine: read a batch, handle each
// datagram, send what the handling produced in one batch.
func (t *Transport) readUDP(r *udp.Reader, w *Writer) {
	ms := make([]udp.Message, readBatch)
	for i := range ms {
		ms[i].Buf = make([]byte, MaxPacket)
	}
	for {
		n, err := r.Read(ms)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			t.log.Warn("transport: read UDP", "err", err)
			continue
		}
		now := time.Now()
		for i := range n {
			m := &ms[i]
			t.handle(m.Buf[:m.N], path{addr: m.Addr}, nil, now, w)
		}
		w.Flush()
	}
}

// handle demultiplexes one packet from p (RFC 7983). known is the session
// the path is bound to, if the caller knows it (an ICE-TCP connection);
// UDP addresses are looked up.
func (t *Transport) handle(b []byte, p path, known *Session, now time.Time, w *Writer) {
	if len(b) == 0 {
		t.counters.malformed.Add(1)
		return
	}
	switch c := b[0]; {
	case c < 4:
		t.handleSTUN(b, p, now, w)
		return
	case c >= 20 && c <= 63, c >= 128 && c <= 191:
	default:
		t.counters.malformed.Add(1)
		return
	}
	s := known
	if s == nil && p.tcp == nil {
		t.mu.RLock()
		s = t.byAddr[p.addr]
		t.mu.RUnlock()
	}
	if s == nil {
		t.counters.unknownSource.Add(1)
		return
	}
	if b[0] < 128 {
		// DTLS, for the handshake's goroutine; a full queue drops it as
		// the network might, and DTLS retransmits.
		if _, err := s.dtlsIn.Write(b, nil); err != nil {
			t.counters.writeErrors.Add(1)
		}
		s.heard.Store(now.UnixNano())
		return
	}
	s.receive(b, p, now, w)
}

// handleSTUN answers an ICE connectivity check: authenticated by the
// session its USERNAME names, it makes p one of the session's paths.
func (t *Transport) handleSTUN(b []byte, p path, now time.Time, w *Writer) {
	r := &w.check
	if err := ice.ParseBindingRequest(b, r); err != nil {
		if !errors.Is(err, ice.ErrNotBinding) {
			t.counters.malformed.Add(1)
		}
		// Binding indications (keepalives) and responses need no answer.
		return
	}
	t.mu.RLock()
	s := t.byUfrag[string(r.LocalUfrag)]
	t.mu.RUnlock()
	if s == nil {
		t.counters.unknownSource.Add(1)
		return
	}
	from := p.addr
	if p.tcp != nil {
		from = p.tcp.remote
	}
	buf := w.Buffer()
	resp, ok := s.authenticate(r, from, buf[:0])
	if !ok {
		t.counters.unauthentic.Add(1)
		return
	}
	if p.tcp != nil && !p.tcp.bind(s) {
		t.counters.unknownSource.Add(1)
		return
	}
	s.checked(p, r.UseCandidate, now)
	w.queue(&p, resp)
}
