package media

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestSpeechDetectorHysteresis(t *testing.T) {
	var d speechDetector
	ms := func(n int) int64 { return int64(n) * int64(time.Millisecond) }
	feed := func(from, to int, level uint8) {
		for at := from; at < to; at += 20 {
			d.observe(ms(at), level)
		}
	}
	expect := func(at int, wantChanged, wantSpeaking bool) {
		t.Helper()
		changed, speaking := d.evaluate(ms(at))
		if changed != wantChanged || speaking != wantSpeaking {
			t.Fatalf("at %d ms: changed %v speaking %v, want %v %v", at, changed, speaking, wantChanged, wantSpeaking)
		}
	}

	feed(1000, 1100, 30) // a 100 ms burst is not speech
	expect(1100, false, false)
	feed(1100, 1500, 120) // quiet
	expect(1500, false, false)
	feed(1500, 1760, 40) // 260 ms of voice
	expect(1760, true, true)
	expect(1800, false, true)
	// Pauses between words shorter than 500 ms keep the state.
	feed(1760, 2100, 127)
	feed(2100, 2200, 20)
	expect(2200, false, true)
	// Quiet packets and no packets at all both end speech after 500 ms.
	feed(2200, 2600, 127)
	expect(2600, false, true)
	expect(2700, true, false)
	expect(5000, false, false)
	// Level exactly at the threshold counts as voice.
	feed(6000, 6300, speakingLevel)
	expect(6300, true, true)
}

func TestReceptionReport(t *testing.T) {
	var r reception
	now := time.Unix(1000, 0)
	if _, ok := r.report(now); ok {
		t.Fatal("report before any packet")
	}
	h := &rtp.Header{SSRC: 42, SequenceNumber: 65529, Timestamp: 4294967000}
	recv := func(seq uint16) {
		// 20 ms per sequence number, in wall time and in RTP time.
		step := seq - h.SequenceNumber
		h.SequenceNumber = seq
		h.Timestamp += uint32(step) * 960
		now = now.Add(time.Duration(step) * 20 * time.Millisecond)
		r.update(now, h, true)
	}
	// 65530..65535 then 0..9 across the wrap, with 3 and 4 lost.
	for s := uint16(65530); s != 10; s++ {
		if s != 3 && s != 4 {
			recv(s)
		}
	}
	rep, ok := r.report(now)
	if !ok {
		t.Fatal("no report")
	}
	if rep.SSRC != 42 || rep.LastSequenceNumber != 1<<16|9 || rep.TotalLost != 2 {
		t.Errorf("report %+v: want ssrc 42, last seq %d, lost 2", rep, 1<<16|9)
	}
	if want := uint8(2 * 256 / 16); rep.FractionLost != want {
		t.Errorf("fraction lost %d, want %d", rep.FractionLost, want)
	}
	if rep.Jitter != 0 {
		t.Errorf("jitter %d for perfectly paced packets", rep.Jitter)
	}
	// The next interval has no loss.
	for s := uint16(10); s < 20; s++ {
		recv(s)
	}
	if rep, _ = r.report(now); rep.FractionLost != 0 || rep.TotalLost != 2 {
		t.Errorf("second report %+v: want fraction 0, total 2", rep)
	}
}

func TestHistory(t *testing.T) {
	h := newHistory(4)
	buf := make([]byte, maxPacketSize)
	for seq := uint16(100); seq < 106; seq++ {
		h.store(seq, []byte{byte(seq)})
	}
	for seq := uint16(102); seq < 106; seq++ {
		if n := h.load(seq, buf); n != 1 || buf[0] != byte(seq) {
			t.Errorf("load(%d) = %d bytes %v", seq, n, buf[:n])
		}
	}
	if n := h.load(101, buf); n != 0 {
		t.Errorf("load(101) found an overwritten packet")
	}
	big := bytes.Repeat([]byte{1}, maxHistoryPacket+1)
	h.store(106, big)
	if n := h.load(106, buf); n != 0 {
		t.Errorf("an oversized packet was kept")
	}
	if n := h.load(102, buf); n != 0 {
		t.Errorf("the slot of an oversized packet still answers for its old packet")
	}
}

// TestHistoryRing: large packets fill the ring before the index, and the
// history then answers for the packets the ring still holds, whole.
func TestHistoryRing(t *testing.T) {
	h := newHistory(8) // 8 packets of 256 bytes: 2048 bytes of ring
	buf := make([]byte, maxPacketSize)
	pkt := func(seq uint16) []byte { return bytes.Repeat([]byte{byte(seq)}, 700) }
	for seq := uint16(0); seq < 5; seq++ {
		h.store(seq, pkt(seq))
	}
	// 700-byte packets: two fit in the ring, the third starts it again.
	for seq := uint16(0); seq < 5; seq++ {
		n := h.load(seq, buf)
		switch {
		case seq < 3 && n != 0:
			t.Errorf("load(%d) = %d bytes of a packet the ring overwrote", seq, n)
		case seq >= 3 && !bytes.Equal(buf[:n], pkt(seq)):
			t.Errorf("load(%d) = %d bytes, want packet %d whole", seq, n, seq)
		}
	}
}

func TestCheckOffer(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"a=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz\r\na=fingerprint:sha-256 01:02:03\r\n"
	for _, tc := range []struct {
		name, sdp string
		err       error
		mid       string
	}{
		{"opus", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=sendrecv\r\n", nil, "0"},
		{"sendonly second", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n" +
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:b\r\na=rtpmap:111 OPUS/48000/2\r\na=sendonly\r\n", nil, "b"},
		{"pcmu", head + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\n", ErrUnsupportedCodec, ""},
		{"no rtpmap", head + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\n", ErrUnsupportedCodec, ""},
		{"listen-only", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n", nil, ""},
		{"listen-only pcmu", head + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=rtpmap:0 PCMU/8000\r\na=recvonly\r\n", ErrUnsupportedCodec, ""},
		{"sends pcmu, receives opus", head + "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\na=rtpmap:0 PCMU/8000\r\na=sendonly\r\n" +
			"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:b\r\na=rtpmap:111 opus/48000/2\r\na=recvonly\r\n", ErrUnsupportedCodec, ""},
		{"inactive", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\na=inactive\r\n", ErrInvalidSDP, ""},
		{"rejected", head + "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n", ErrInvalidSDP, ""},
		{"no mid", head + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", ErrInvalidSDP, ""},
		{"video", head + "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=rtpmap:96 VP8/90000\r\n", ErrInvalidSDP, ""},
		{"no media", head, ErrInvalidSDP, ""},
		{"garbage", "\x00\x01not sdp", ErrInvalidSDP, ""},
		{"blank", " \r\n", ErrInvalidSDP, ""},
	} {
		_, pub, err := checkOffer(tc.sdp)
		if !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.err)
		}
		var mid string
		if pub != nil {
			mid = pub.mid
		}
		if mid != tc.mid {
			t.Errorf("%s: mid %q, want %q", tc.name, mid, tc.mid)
		}
	}
}

func TestRTCPParsing(t *testing.T) {
	compound, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 7}}},
		&rtcp.TransportLayerNack{SenderSSRC: 1, MediaSSRC: 7, Nacks: []rtcp.NackPair{
			{PacketID: 65534, LostPackets: 0b101}, // 65534, 65535, 1 (wraps)
			{PacketID: 300},
		}},
		&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 7},
		&rtcp.SenderReport{SSRC: 9, NTPTime: 0x0123456789abcdef},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []uint16
	forEachNACK(compound, func(media uint32, seq uint16) {
		if media != 7 {
			t.Errorf("media SSRC %d, want 7", media)
		}
		got = append(got, seq)
	})
	if want := []uint16{65534, 65535, 1, 300}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("NACKed %v, want %v", got, want)
	}
	if ntp, ok := senderReportNTP(compound); !ok || ntp != 0x0123456789abcdef {
		t.Errorf("sender report NTP %x %v", ntp, ok)
	}
	// Truncated or garbage input yields nothing and does not panic.
	for _, b := range [][]byte{compound[:len(compound)-3], {0x80}, {0xff, 0xff, 0xff, 0xff, 1, 2}} {
		forEachNACK(b, func(uint32, uint16) {})
		senderReportNTP(b)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		forEachNACK(compound, func(uint32, uint16) {})
		senderReportNTP(compound)
		forEachReportDelay(compound, func(uint32, uint32) {})
	}); allocs != 0 {
		t.Errorf("RTCP parsing allocates %v times", allocs)
	}
}

// TestRoundTripTime: the relay's sender report leaves at sent; the client
// holds it for 10 ms and reports it back, arriving 30 ms after sent. The
// round trip is the 20 ms on the wire, taken from the report blocks of
// receiver and sender reports alike.
func TestRoundTripTime(t *testing.T) {
	sent := time.Date(2026, 1, 2, 3, 4, 5, 600_000_000, time.UTC)
	arrived := sent.Add(30 * time.Millisecond)
	lsr := ntpMiddle(sent)
	dlsr := uint32(10 * 65536 / 1000) // 10 ms in 1/65536 s
	compound, err := rtcp.Marshal([]rtcp.Packet{
		&rtcp.SenderReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 7, LastSenderReport: lsr, Delay: dlsr}}},
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{
			{SSRC: 8}, // no sender report received yet: no sample
			{SSRC: 9, LastSenderReport: lsr, Delay: dlsr},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{}
	var blocks int
	forEachReportDelay(compound, func(lsr, dlsr uint32) {
		blocks++
		p.observeRTT(arrived, lsr, dlsr)
	})
	if blocks != 3 {
		t.Errorf("%d report blocks, want 3", blocks)
	}
	if rtt := time.Duration(p.rtt.Load()); rtt < 19*time.Millisecond || rtt > 21*time.Millisecond {
		t.Errorf("round trip %v, want 20ms", rtt)
	}
	// A sample from the future or from minutes ago is not believed.
	p.observeRTT(sent, lsr, dlsr)
	p.observeRTT(sent.Add(time.Minute), lsr, dlsr)
	if rtt := time.Duration(p.rtt.Load()); rtt < 19*time.Millisecond || rtt > 21*time.Millisecond {
		t.Errorf("round trip %v after bogus samples, want 20ms", rtt)
	}
}
