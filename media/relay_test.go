package media

import (
	"bytes"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// TestMarshalLeg: the leg's packet, read back by pion, carries the leg's
// header fields, the level under the leg's extension ID (one-byte and
// two-byte forms) and the payload as it came; rtpPayload finds that
// payload again, padding or not.
func TestMarshalLeg(t *testing.T) {
	payload := []byte("sframe-encrypted opus")
	for _, levelID := range []uint8{0, 1, 14, 15, 200} {
		b := &binding{ssrc: 0xabcdef01, pt: 109, levelID: levelID}
		buf := make([]byte, maxPacketSize)
		n := marshalLeg(buf, b, true, 65535, 123456, payload, []byte{42})
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatalf("level ID %d: %v", levelID, err)
		}
		if p.SSRC != b.ssrc || p.PayloadType != 109 || !p.Marker || p.SequenceNumber != 65535 || p.Timestamp != 123456 {
			t.Errorf("level ID %d: header %+v", levelID, p.Header)
		}
		if !bytes.Equal(p.Payload, payload) {
			t.Errorf("level ID %d: payload %q", levelID, p.Payload)
		}
		if got := p.GetExtension(levelID); levelID != 0 && (len(got) != 1 || got[0] != 42) {
			t.Errorf("level ID %d: level %v", levelID, got)
		}
		if levelID == 0 && p.Extension {
			t.Error("an extension without a negotiated ID")
		}
		if got, ok := rtpPayload(buf[:n]); !ok || !bytes.Equal(got, payload) {
			t.Errorf("level ID %d: rtpPayload %q %v", levelID, got, ok)
		}
	}
	// Padding and CSRCs, as any sender may add.
	padded, _ := (&rtp.Packet{Header: rtp.Header{Version: 2, Padding: true, PaddingSize: 3, CSRC: []uint32{7, 8}}, Payload: payload}).Marshal()
	if got, ok := rtpPayload(padded); !ok || !bytes.Equal(got, payload) {
		t.Errorf("padded: %q %v", got, ok)
	}
	for _, bad := range [][]byte{nil, make([]byte, 11), {0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xbe, 0xde, 0, 9}, {0xa0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 200}} {
		if _, ok := rtpPayload(bad); ok {
			t.Errorf("rtpPayload accepted %x", bad)
		}
	}
	// A payload that would not fit with the SRTP tag is refused.
	if n := marshalLeg(make([]byte, 100), &binding{}, false, 1, 1, make([]byte, 80), nil); n != 0 {
		t.Errorf("an oversized packet was written (%d bytes)", n)
	}
}

// TestLegNumberingOutlastsTheSequenceSpace: a track keeps its packets on
// the leg, in order, through any number of sequence wraparounds, while a
// late packet from before its start there is refused.
func TestLegNumberingOutlastsTheSequenceSpace(t *testing.T) {
	l := &leg{}
	// A previous publisher wrote up to leg sequence 999 on this leg.
	l.lastAt.Store(time.Now().Add(-time.Second).UnixNano())
	l.lastSeq.Store(999)
	d := &downTrack{leg: l}
	now := time.Now()
	h := &rtp.Header{SequenceNumber: 50000, Timestamp: 1}
	first, _, ok := d.number(h, now)
	if !ok || first != 1000 {
		t.Fatalf("first packet at %d %v, want 1000", first, ok)
	}
	late := &rtp.Header{SequenceNumber: 49999}
	if _, _, ok := d.number(late, now); ok {
		t.Error("a packet from before the track's start on the leg was taken")
	}
	prev := first
	for i := 1; i < 200000; i++ {
		h.SequenceNumber++
		seq, _, ok := d.number(h, now)
		if !ok || seq != prev+1 {
			t.Fatalf("packet %d: leg sequence %d %v after %d", i, seq, ok, prev)
		}
		d.sent(seq, 0, now)
		prev = seq
	}
	// A late packet well into the track is its own (a repair), not the
	// previous publisher's.
	late.SequenceNumber = h.SequenceNumber - 100
	if seq, _, ok := d.number(late, now); !ok || seq != prev-100 {
		t.Errorf("a late packet of the track: %d %v", seq, ok)
	}
}
