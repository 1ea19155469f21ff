package floor

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	headerLen = 12 // RTP header without extensions
	tagLen    = 16 // AES-GCM tag, as SRTP AEAD_AES_128_GCM
	maxPacket = 1500
)

// key derives the test key of a party: 0 is the publishers' (inbound)
// key, i > 0 subscriber i's. Fixed keys are fine: this is a yardstick,
// not a secure channel.
func key(i int) cipher.AEAD {
	sum := sha256.Sum256([]byte(fmt.Sprintf("sotto floor key %d", i)))
	block, err := aes.NewCipher(sum[:16])
	if err != nil {
		panic(err) // 16-byte key: cannot fail
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return gcm
}

// nonce is SRTP-like: the SSRC and sequence number, unique per packet of a
// stream.
func nonce(dst *[12]byte, hdr []byte) {
	*dst = [12]byte{}
	copy(dst[2:6], hdr[8:12])  // SSRC
	copy(dst[10:12], hdr[2:4]) // sequence number
}

// relay is the minimal forwarder.
type relay struct {
	conn      *net.UDPConn
	in        cipher.AEAD
	subs      []netip.AddrPort
	outs      []cipher.AEAD
	forwarded atomic.Uint64
	dropped   atomic.Uint64
}

// serve forwards until the socket is closed. Nothing in it allocates.
func (r *relay) serve() {
	buf := make([]byte, maxPacket)
	out := make([]byte, maxPacket)
	var n12 [12]byte
	for {
		n, _, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < headerLen+tagLen {
			r.dropped.Add(1)
			continue
		}
		hdr := buf[:headerLen]
		nonce(&n12, hdr)
		plain, err := r.in.Open(buf[headerLen:headerLen], n12[:], buf[headerLen:n], hdr)
		if err != nil {
			r.dropped.Add(1)
			continue
		}
		copy(out, hdr)
		for i, to := range r.subs {
			sealed := r.outs[i].Seal(out[headerLen:headerLen], n12[:], plain, out[:headerLen])
			if _, err := r.conn.WriteToUDPAddrPort(out[:headerLen+len(sealed)], to); err != nil {
				r.dropped.Add(1)
				continue
			}
			r.forwarded.Add(1)
		}
	}
}

// ServeRelay runs the floor relay as a child process speaks to its parent:
// it prints "addr HOST:PORT", then answers lines read from in until in
// ends:
//
//	subs ADDR,ADDR,...   forward every packet to these -> "ok"
//	stats                -> "stats CPU_NS FORWARDED DROPPED"
//
// CPU_NS is the process's user and system CPU time so far.
func ServeRelay(in io.Reader, out io.Writer) error {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return fmt.Errorf("floor relay: %w", err)
	}
	// Bursts of a whole tick's packets arrive at once; a large buffer
	// keeps the kernel from dropping them.
	_ = conn.SetReadBuffer(4 << 20)
	_ = conn.SetWriteBuffer(4 << 20)
	r := &relay{conn: conn, in: key(0)}
	started := false
	defer conn.Close()
	fmt.Fprintf(out, "addr %s\n", conn.LocalAddr())
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch cmd {
		case "subs":
			if started {
				fmt.Fprintln(out, "error subscribers already set")
				continue
			}
			for i, s := range strings.Split(arg, ",") {
				ap, err := netip.ParseAddrPort(s)
				if err != nil {
					fmt.Fprintf(out, "error %v\n", err)
					continue
				}
				r.subs = append(r.subs, ap)
				r.outs = append(r.outs, key(i+1))
			}
			started = true
			go r.serve()
			fmt.Fprintln(out, "ok")
		case "stats":
			fmt.Fprintf(out, "stats %d %d %d\n", processCPU().Nanoseconds(), r.forwarded.Load(), r.dropped.Load())
		default:
			fmt.Fprintf(out, "error unknown command %q\n", cmd)
		}
	}
	return sc.Err()
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// publisher encrypts packets as the relay's publishers do.
type publisher struct {
	gcm   cipher.AEAD
	nonce [12]byte // reused: a fresh array per packet would escape to the heap
}

// packet fills p with an encrypted packet of stream ssrc, number seq,
// carrying payload, and returns its length.
func (pub *publisher) packet(p []byte, ssrc uint32, seq uint16, ts uint32, payload []byte) int {
	p[0], p[1] = 0x80, 111
	binary.BigEndian.PutUint16(p[2:4], seq)
	binary.BigEndian.PutUint32(p[4:8], ts)
	binary.BigEndian.PutUint32(p[8:12], ssrc)
	nonce(&pub.nonce, p[:headerLen])
	sealed := pub.gcm.Seal(p[headerLen:headerLen], pub.nonce[:], payload, p[:headerLen])
	return headerLen + len(sealed)
}
