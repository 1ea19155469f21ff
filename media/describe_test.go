package media

import (
	"errors"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"
)

const browserOffer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
	"a=group:BUNDLE 0 1 2\r\na=fingerprint:sha-256 AA:BB\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111 63 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:cfrag\r\na=ice-pwd:cpwdcpwdcpwdcpwdcpwdcpwd\r\n" +
	"a=setup:actpass\r\na=rtcp-mux\r\na=rtcp-rsize\r\na=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n" +
	"a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n" +
	"a=rtcp-fb:111 nack\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\na=rtpmap:0 PCMU/8000\r\n" +
	"a=ssrc:1234 cname:x\r\na=sendrecv\r\n" +
	"m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=rtpmap:96 VP8/90000\r\na=sendrecv\r\n" +
	"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sctp-port:5000\r\n"

// TestAnswerToABrowserOffer: the answer takes the audio with Opus alone,
// the client's payload type and extension ID, and rejects the rest in
// place; offers then add legs that carry a publisher or sit inactive.
func TestAnswerToABrowserOffer(t *testing.T) {
	rd, err := parseRemote(browserOffer)
	if err != nil {
		t.Fatal(err)
	}
	if rd.ice.Ufrag != "cfrag" || len(rd.fingerprints) != 1 || rd.setup != "actpass" || !rd.bundle || len(rd.lines) != 3 {
		t.Fatalf("parsed %+v", rd)
	}
	if m := rd.lines[0]; m.opusPT != 111 || !m.nack || m.levelID != 1 || !m.rsize || m.ssrc != 1234 || !m.sends() {
		t.Errorf("audio m-line %+v", m)
	}
	n := newNegotiation(rd)
	answer := n.describe(false, "sha-256 CC:DD", []string{"candidate:1 1 udp 2130706431 192.0.2.1 7882 typ host"})
	var d sdp.SessionDescription
	if err := d.UnmarshalString(answer); err != nil {
		t.Fatalf("the answer does not parse: %v\n%s", err, answer)
	}
	for _, want := range []string{
		"a=ice-lite", "a=fingerprint:sha-256 CC:DD", "a=group:BUNDLE 0\r\n", "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
		"a=setup:active", "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1", "a=rtcp-fb:111 nack",
		"a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=rtcp-mux", "a=rtcp-rsize", "a=recvonly",
		"a=candidate:1 1 udp 2130706431 192.0.2.1 7882 typ host", "a=end-of-candidates",
		"m=video 0 UDP/TLS/RTP/SAVPF 96\r\n", "m=application 0 UDP/DTLS/SCTP webrtc-datachannel\r\n",
	} {
		if !strings.Contains(answer, want) {
			t.Errorf("answer lacks %q:\n%s", want, answer)
		}
	}
	for _, bad := range []string{"red/", "PCMU", "transport-cc", "sdes:mid"} {
		if strings.Contains(answer, bad) {
			t.Errorf("answer has %q:\n%s", bad, answer)
		}
	}

	// Two legs: one carries a publisher, one is free.
	pub := &publisher{id: "p_alice", trackID: "audio-p_alice"}
	busy, free := &leg{ssrc: 77, offered: pub}, &leg{ssrc: 78}
	n.addLeg(busy)
	n.addLeg(free)
	if busy.mid == free.mid || busy.mid == "0" || busy.mid == "1" || busy.mid == "2" {
		t.Errorf("leg mids %q, %q collide with the client's", busy.mid, free.mid)
	}
	offer := n.describe(true, "sha-256 CC:DD", nil)
	sections := strings.Split(offer, "m=")
	if len(sections) != 6 {
		t.Fatalf("offer has %d m-lines, want 5:\n%s", len(sections)-1, offer)
	}
	if !strings.Contains(offer, "a=group:BUNDLE 0 "+busy.mid+" "+free.mid+"\r\n") || !strings.Contains(offer, "a=setup:actpass") {
		t.Errorf("offer bundle or setup:\n%s", offer)
	}
	if s := sections[4]; !strings.Contains(s, "a=msid:p_alice audio-p_alice") || !strings.Contains(s, "a=ssrc:77 cname:p_alice") || !strings.Contains(s, "a=sendonly") {
		t.Errorf("busy leg:\n%s", s)
	}
	if s := sections[5]; strings.Contains(s, "a=ssrc:") || strings.Contains(s, "msid") || !strings.Contains(s, "a=inactive") {
		t.Errorf("free leg:\n%s", s)
	}
	if !strings.Contains(offer, "o=- ") || strings.Contains(offer, " 1 IN IP4") {
		t.Errorf("the offer's version did not move on:\n%s", offer)
	}
	reparsed, err := parseRemote(offer)
	if err != nil || n.sameLines(reparsed) != nil {
		t.Errorf("the offer is not the session's own m-lines: %v, %v", err, n.sameLines(reparsed))
	}
}

func TestParseRemoteRefuses(t *testing.T) {
	strip := func(prefix string) string {
		var out []string
		for _, l := range strings.Split(browserOffer, "\r\n") {
			if !strings.HasPrefix(l, prefix) {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\r\n")
	}
	for name, offer := range map[string]string{
		"garbage":        "not sdp",
		"no ufrag":       strip("a=ice-ufrag"),
		"no fingerprint": strip("a=fingerprint"),
		"no mid":         strip("a=mid:0"),
	} {
		if _, err := parseRemote(offer); !errors.Is(err, ErrInvalidSDP) {
			t.Errorf("%s: err = %v, want ErrInvalidSDP", name, err)
		}
	}
	// The relay is the DTLS client unless the client insists on being it.
	for offered, want := range map[string]string{"actpass": "active", "passive": "active", "active": "passive"} {
		rd, err := parseRemote(strings.Replace(browserOffer, "a=setup:actpass", "a=setup:"+offered, 1))
		if err != nil {
			t.Fatal(err)
		}
		if n := newNegotiation(rd); n.setup != want || !strings.Contains(n.describe(false, "sha-256 X", nil), "a=setup:"+want) {
			t.Errorf("relay setup %q for a client offering %s, want %s", n.setup, offered, want)
		}
	}
}

// FuzzParseRemote: no description makes the parser or the writer panic,
// and what parses is answered with SDP that parses.
func FuzzParseRemote(f *testing.F) {
	f.Add(browserOffer)
	f.Add(strings.Replace(browserOffer, "a=group:BUNDLE 0 1 2\r\n", "", 1))
	f.Add(strings.Replace(browserOffer, "a=extmap:3 urn:ietf:params:rtp-hdrext:sdes:mid", "a=extmap:", 1))
	f.Fuzz(func(t *testing.T, offer string) {
		rd, err := parseRemote(offer)
		if err != nil {
			return
		}
		n := newNegotiation(rd)
		n.addLeg(&leg{ssrc: 1, offered: &publisher{id: "p", trackID: "audio-p"}})
		for _, asOffer := range []bool{false, true} {
			var d sdp.SessionDescription
			if err := d.UnmarshalString(n.describe(asOffer, "sha-256 AA", []string{"candidate:1 1 udp 1 192.0.2.1 1 typ host"})); err != nil {
				t.Fatalf("the relay wrote SDP that does not parse: %v", err)
			}
		}
	})
}
