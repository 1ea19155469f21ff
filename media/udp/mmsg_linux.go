package udp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const mmsgSupported = true

// mmsghdr is struct mmsghdr of recvmmsg(2) and sendmmsg(2); Go pads it to
// its alignment as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// mmsgBatch is what one batched system call needs, allocated once.
type mmsgBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrInet6 // room for either family
}

func newMmsgBatch(size int) mmsgBatch {
	b := mmsgBatch{
		hdrs:  make([]mmsghdr, size),
		iovs:  make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrInet6, size),
	}
	for i := range b.hdrs {
		b.hdrs[i].hdr.Iov = &b.iovs[i]
		b.hdrs[i].hdr.SetIovlen(1)
		b.hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	}
	return b
}

// point sets message i's buffer.
func (b *mmsgBatch) point(i int, buf []byte) {
	b.iovs[i].Base = unsafe.SliceData(buf)
	b.iovs[i].SetLen(len(buf))
}

type mmsgReader struct {
	raw   syscall.RawConn
	batch mmsgBatch
	recv  func(fd uintptr) bool // r.recvmmsg, bound once
	n     int                   // messages asked for, then received
	errno syscall.Errno
}

func newMmsgReader(raw syscall.RawConn, size int) *mmsgReader {
	r := &mmsgReader{raw: raw, batch: newMmsgBatch(size)}
	r.recv = r.recvmmsg
	return r
}

// recvmmsg and sendmmsg run as raw system calls, without telling the Go
// scheduler: they never block (the socket is non-blocking), but a
// sendmmsg of a full batch takes longer than the 20 µs after which the
// scheduler would hand the goroutine's P to another thread, and that
// handoff, a thread woken and put back to sleep per batch, cost more than
// the batch itself.
func (r *mmsgReader) recvmmsg(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.batch.hdrs[0])), uintptr(r.n), 0, 0, 0)
		switch {
		case e == unix.EAGAIN:
			return false // wait until readable
		case e == unix.EINTR:
			continue
		}
		r.n, r.errno = int(n), e
		return true
	}
}

func (r *mmsgReader) read(ms []Message) (int, error) {
	r.n = min(len(ms), len(r.batch.hdrs))
	for i := range r.n {
		if len(ms[i].Buf) == 0 {
			return 0, errors.New("udp: read into an empty buffer")
		}
		r.batch.point(i, ms[i].Buf)
		r.batch.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		r.batch.hdrs[i].hdr.Flags = 0
	}
	if err := r.raw.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	for i := range r.n {
		ms[i].N = int(r.batch.hdrs[i].len)
		ms[i].Addr = addrPort(&r.batch.names[i])
	}
	return r.n, nil
}

// addrPort reads a sockaddr_in or sockaddr_in6.
func addrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	if sa.Family == unix.AF_INET {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	}
	// The zone (scope ID) is dropped: the relay answers from the address
	// the datagram came to, and link-local peers are not served.
	return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
}

type mmsgWriter struct {
	raw   syscall.RawConn
	v6    bool // the socket is AF_INET6 (dual-stack or IPv6 only)
	batch mmsgBatch
	send  func(fd uintptr) bool // w.sendmmsg, bound once
	off   int                   // first message of this call
	end   int                   // one past the last message of this call
	sent  int
	errno syscall.Errno
}

func newMmsgWriter(raw syscall.RawConn, size int) (*mmsgWriter, error) {
	w := &mmsgWriter{raw: raw, batch: newMmsgBatch(size)}
	w.send = w.sendmmsg
	var serr error
	if err := raw.Control(func(fd uintptr) {
		var sa unix.Sockaddr
		if sa, serr = unix.Getsockname(int(fd)); serr == nil {
			_, w.v6 = sa.(*unix.SockaddrInet6)
		}
	}); err != nil {
		return nil, fmt.Errorf("udp: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("udp: getsockname: %w", serr)
	}
	return w, nil
}

func (w *mmsgWriter) sendmmsg(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&w.batch.hdrs[w.off])), uintptr(w.end-w.off), 0, 0, 0)
		switch {
		case e == unix.EAGAIN:
			return false // wait until writable
		case e == unix.EINTR:
			continue
		}
		w.sent, w.errno = int(n), e
		return true
	}
}

// setName writes addr as message i's destination, in the socket's family.
func (w *mmsgWriter) setName(i int, addr netip.AddrPort) bool {
	sa := &w.batch.names[i]
	ip := addr.Addr()
	port := (*[2]byte)(unsafe.Pointer(&sa.Port))[:]
	if w.v6 {
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: ip.As16()}
		binary.BigEndian.PutUint16(port, addr.Port())
		w.batch.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		return true
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return false
	}
	sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
	*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: ip.As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], addr.Port())
	w.batch.hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
	return true
}

func (w *mmsgWriter) write(ms []Message) (failed int, err error) {
	for len(ms) > 0 {
		chunk := ms[:min(len(ms), len(w.batch.hdrs))]
		ms = ms[len(chunk):]
		// Datagrams the socket's family cannot carry fail here; the rest
		// are packed together.
		k := 0
		for i := range chunk {
			if !w.setName(k, chunk[i].Addr) {
				failed++
				err = cmpErr(err, fmt.Errorf("udp: send to %v: %w", chunk[i].Addr, unix.EAFNOSUPPORT))
				continue
			}
			w.batch.point(k, chunk[i].Buf)
			k++
		}
		for w.off, w.end = 0, k; w.off < w.end; {
			if e := w.raw.Write(w.send); e != nil {
				return failed + (w.end - w.off) + len(ms), e
			}
			if w.errno != 0 {
				// The first datagram of the call failed: skip it.
				failed++
				err = cmpErr(err, os.NewSyscallError("sendmmsg", w.errno))
				w.off++
				continue
			}
			w.off += w.sent
		}
	}
	return failed, err
}
