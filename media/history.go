package media

import "sync"

// maxPacketSize bounds the RTP packets the relay handles. WebRTC keeps RTP
// under the path MTU (pion sends at most 1200 bytes of payload); Opus frames
// are far smaller.
const maxPacketSize = 1500

// historySlotSize is the room kept per packet in a history. Larger packets
// are forwarded but not kept, so a NACK for one goes unanswered.
const historySlotSize = 1200

// history keeps the last packets of one published track, by sequence number,
// in buffers allocated once, so a subscriber's NACK can be answered without
// asking the publisher. The publisher's goroutine stores, subscribers'
// RTCP goroutines load; a mutex is cheaper than anything lock-free here
// because it is almost never contended.
type history struct {
	mu    sync.Mutex
	slots []byte   // len(seqs) slots of historySlotSize bytes
	seqs  []uint16 // sequence number held by each slot
	lens  []uint16 // packet length in each slot; 0 = empty
}

func newHistory(size int) *history {
	return &history{
		slots: make([]byte, size*historySlotSize),
		seqs:  make([]uint16, size),
		lens:  make([]uint16, size),
	}
}

func (h *history) store(seq uint16, pkt []byte) {
	i := int(seq) % len(h.seqs)
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(pkt) > historySlotSize {
		h.lens[i] = 0
		return
	}
	copy(h.slots[i*historySlotSize:], pkt)
	h.seqs[i] = seq
	h.lens[i] = uint16(len(pkt))
}

// load copies the packet with sequence number seq into dst and returns its
// length, or 0 if the history no longer holds it.
func (h *history) load(seq uint16, dst []byte) int {
	i := int(seq) % len(h.seqs)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lens[i] == 0 || h.seqs[i] != seq {
		return 0
	}
	off := i * historySlotSize
	return copy(dst, h.slots[off:off+int(h.lens[i])])
}
