package transport

import (
	"errors"
	"net"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/sotto-voice/sotto/media/ice"
	"github.com/sotto-voice/sotto/media/udp"
)

// Writer is one reading goroutine's output: packets for any session are
// encrypted into the slots of a batch and sent together by Flush. The
// goroutine also decrypts with its Writer's scratch headers. A Writer is
// not safe for concurrent use.
type Writer struct {
	t    *Transport
	out  *udp.Writer
	bufs [][]byte
	msgs []udp.Message
	n    int // slots used

	txRTP  rtp.Header // scratch for encryption
	txRTCP rtcp.Header
	rxRTP  rtp.Header // the header of the packet being handled
	rxRTCP rtcp.Header
	check  ice.Request
}

func (t *Transport) newWriter(size int) (*Writer, error) {
	out, err := udp.NewWriter(t.udp, size)
	if err != nil {
		return nil, err
	}
	w := &Writer{t: t, out: out, bufs: make([][]byte, size), msgs: make([]udp.Message, size)}
	for i := range w.bufs {
		w.bufs[i] = make([]byte, MaxPacket)
	}
	return w, nil
}

// Buffer is where the next packet is to be built, with its whole capacity
// (MaxPacket); WriteRTP or WriteRTCP then sends its first n bytes. It
// stays valid until the Writer's next call.
func (w *Writer) Buffer() []byte {
	if w.n == len(w.bufs) {
		w.Flush()
	}
	return w.bufs[w.n]
}

// WriteRTP encrypts the RTP packet built in the first n bytes of Buffer
// for s, in place, and queues it. It reports false if s cannot send yet
// (no path or no keys) or the packet cannot be protected.
func (w *Writer) WriteRTP(s *Session, n int) bool { return w.write(s, n, false) }

// WriteRTCP is WriteRTP for a compound RTCP packet.
func (w *Writer) WriteRTCP(s *Session, n int) bool { return w.write(s, n, true) }

func (w *Writer) write(s *Session, n int, isRTCP bool) bool {
	p := s.selected.Load()
	if p == nil || !s.ready.Load() {
		return false
	}
	buf := w.bufs[w.n][:n]
	s.txMu.Lock()
	pkt, err := []byte(nil), errNoContext
	switch {
	case s.tx == nil:
	case isRTCP:
		pkt, err = s.tx.EncryptRTCP(buf, buf, &w.txRTCP)
	default:
		pkt, err = s.tx.EncryptRTP(buf, buf, &w.txRTP)
	}
	s.txMu.Unlock()
	if err != nil {
		return false
	}
	w.queue(p, pkt)
	return true
}

// queue sends pkt, which lies in the next slot, on p: with the batch over
// UDP, or at once into a TCP connection's queue (the slot stays free).
func (w *Writer) queue(p *path, pkt []byte) {
	if p.tcp != nil {
		if !p.tcp.send(pkt) {
			w.t.counters.writeErrors.Add(1)
		}
		return
	}
	w.msgs[w.n] = udp.Message{Buf: pkt, Addr: p.addr}
	w.n++
}

// Flush sends the batch.
func (w *Writer) Flush() {
	if w.n == 0 {
		return
	}
	failed, err := w.out.Write(w.msgs[:w.n])
	w.n = 0
	if failed > 0 {
		w.t.counters.writeErrors.Add(uint64(failed))
		if !errors.Is(err, net.ErrClosed) {
			w.t.log.Debug("transport: send", "failed", failed, "err", err)
		}
	}
}
