package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// Message is one datagram of a batch.
type Message struct {
	// Buf is, for a read, the buffer to fill, whole; for a write, the
	// datagram.
	Buf []byte
	// N is the size of the datagram read.
	N int
	// Addr is the sender of a datagram read, or the destination of one
	// written.
	Addr netip.AddrPort
}

// Reader reads batches of datagrams from one socket. It is not safe for
// concurrent use.
type Reader struct {
	conn *net.UDPConn
	mmsg *mmsgReader // nil: one datagram per read
}

// NewReader returns a reader of up to size datagrams per batch from conn.
func NewReader(conn *net.UDPConn, size int) (*Reader, error) {
	return newReader(conn, size, mmsgSupported)
}

func newReader(conn *net.UDPConn, size int, batched bool) (*Reader, error) {
	if size < 1 {
		return nil, fmt.Errorf("udp: batch size %d", size)
	}
	r := &Reader{conn: conn}
	if batched {
		raw, err := conn.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("udp: %w", err)
		}
		r.mmsg = newMmsgReader(raw, size)
	}
	return r, nil
}

// Read waits for at least one datagram, then fills ms[:n] with the
// datagrams waiting, in their order of arrival, and returns n. A read that
// fails with a closed socket returns an error wrapping net.ErrClosed.
func (r *Reader) Read(ms []Message) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	if r.mmsg != nil {
		return r.mmsg.read(ms)
	}
	n, addr, err := r.conn.ReadFromUDPAddrPort(ms[0].Buf)
	if err != nil {
		return 0, err
	}
	ms[0].N, ms[0].Addr = n, addr
	return 1, nil
}

// Writer writes batches of datagrams to one socket. It is not safe for
// concurrent use.
type Writer struct {
	conn *net.UDPConn
	mmsg *mmsgWriter
}

// NewWriter returns a writer of up to size datagrams per system call to
// conn.
func NewWriter(conn *net.UDPConn, size int) (*Writer, error) {
	return newWriter(conn, size, mmsgSupported)
}

func newWriter(conn *net.UDPConn, size int, batched bool) (*Writer, error) {
	if size < 1 {
		return nil, fmt.Errorf("udp: batch size %d", size)
	}
	w := &Writer{conn: conn}
	if batched {
		raw, err := conn.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("udp: %w", err)
		}
		if w.mmsg, err = newMmsgWriter(raw, size); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// Write sends every datagram of ms, each to its address. A datagram the
// system refuses (an address it cannot reach, say) is skipped and the
// others are still sent: Write returns how many failed and the first
// error. A closed socket fails the rest of the batch with an error
// wrapping net.ErrClosed.
func (w *Writer) Write(ms []Message) (failed int, err error) {
	if w.mmsg != nil {
		return w.mmsg.write(ms)
	}
	for i := range ms {
		if _, e := w.conn.WriteToUDPAddrPort(ms[i].Buf, ms[i].Addr); e != nil {
			if errors.Is(e, net.ErrClosed) {
				return failed + len(ms) - i, e
			}
			failed++
			err = cmpErr(err, e)
		}
	}
	return failed, err
}

// cmpErr keeps the first error of a batch.
func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}
