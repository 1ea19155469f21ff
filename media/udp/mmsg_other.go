//go:build !linux

package udp

import "syscall"

// Without recvmmsg and sendmmsg a batch is one datagram per system call.
const mmsgSupported = false

type mmsgReader struct{}

func newMmsgReader(syscall.RawConn, int) *mmsgReader { panic("udp: no recvmmsg on this system") }

func (*mmsgReader) read([]Message) (int, error) { panic("udp: no recvmmsg on this system") }

type mmsgWriter struct{}

func newMmsgWriter(syscall.RawConn, int) (*mmsgWriter, error) {
	panic("udp: no sendmmsg on this system")
}

func (*mmsgWriter) write([]Message) (int, error) { panic("udp: no sendmmsg on this system") }
