package media

import "sync"

// maxPacketSize bounds the RTP packets the relay handles. WebRTC keeps RTP
// under the path MTU (pion sends at most 1200 bytes of payload); Opus frames
// are far smaller.
const maxPacketSize = 1500

// maxHistoryPacket is the largest packet a history keeps. Larger ones are
// forwarded but not kept, so a NACK for one goes unanswered.
const maxHistoryPacket = 1200

// historyBytesPerPacket is the ring space a history has per packet it is
// sized for: a voice packet (Opus at up to 64 kbit/s with its SFrame
// header and tag, RTP header and extensions) fits many times over; packets
// of music at high rates take more, and the history then reaches back
// fewer packets.
const historyBytesPerPacket = 256

// history keeps the last packets of one published track, by sequence
// number, so a subscriber's NACK can be answered without asking the
// publisher. Packets lie back to back in one ring of bytes allocated once:
// written in sequence, they cost the cache lines they fill rather than a
// fixed slot each, which keeps a relay with many publishers out of main
// memory. The publisher's packet path stores; a NACK from a subscriber on
// another path (ICE-TCP) loads; a mutex is cheaper than anything lock-free
// here because it is almost never contended.
type history struct {
	mu      sync.Mutex
	ring    []byte
	written uint64         // bytes ever written to the ring: where the next packet goes, unwrapped
	index   []historyEntry // by sequence number modulo its length
}

type historyEntry struct {
	at  uint64 // unwrapped ring position of the packet
	seq uint16
	n   uint16 // 0 = empty
}

// newHistory keeps up to size packets, fewer when they are large.
func newHistory(size int) *history {
	return &history{
		ring:  make([]byte, max(size*historyBytesPerPacket, maxHistoryPacket)),
		index: make([]historyEntry, size),
	}
}

func (h *history) store(seq uint16, pkt []byte) {
	e := &h.index[int(seq)%len(h.index)]
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(pkt) > maxHistoryPacket {
		e.n = 0
		return
	}
	size := uint64(len(h.ring))
	// A packet never wraps: one that would is written at the ring's start.
	if off := h.written % size; off+uint64(len(pkt)) > size {
		h.written += size - off
	}
	copy(h.ring[h.written%size:], pkt)
	*e = historyEntry{at: h.written, seq: seq, n: uint16(len(pkt))}
	h.written += uint64(len(pkt))
}

// load copies the packet with sequence number seq into dst and returns its
// length, or 0 if the history no longer holds it.
func (h *history) load(seq uint16, dst []byte) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.index[int(seq)%len(h.index)]
	size := uint64(len(h.ring))
	// Later packets overwrite a packet once the ring has gone round past
	// its start.
	if e.n == 0 || e.seq != seq || h.written-e.at > size {
		return 0
	}
	off := e.at % size
	return copy(dst, h.ring[off:off+uint64(e.n)])
}
