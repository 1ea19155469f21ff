package media

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"

	"github.com/sotto-voice/sotto/media/ice"
	"github.com/sotto-voice/sotto/media/transport"
)

// The direct path's SDP (offer/answer, RFC 3264 and JSEP, RFC 8829): what
// the relay reads from a client's description and the answers and offers
// it writes. The relay is an ICE-lite agent (a=ice-lite) with host
// candidates only, bundles everything on one transport with RTCP muxed,
// and states Opus with the format opusFmtp, NACK feedback and the RFC 6464
// audio level when the client offers them, under the client's payload
// type and extension ID on every m-line, as BUNDLE requires.

// opusFmtp is the Opus format the relay states (RFC 7587): frames of at
// least 10 ms, and in-band FEC, with which a receiver conceals a lost
// packet from the next one.
const opusFmtp = "minptime=10;useinbandfec=1"

// remoteMLine is what the relay takes from one m-line of a client's
// description.
type remoteMLine struct {
	mid     string
	media   string // audio, video, application
	port    int
	proto   string
	formats []string
	dir     string // sendrecv, sendonly, recvonly, inactive
	opusPT  int    // -1: no Opus
	nack    bool   // NACK feedback offered for Opus
	levelID uint8  // audio-level extension ID; 0 = none
	rsize   bool   // a=rtcp-rsize
	ssrc    uint32 // first a=ssrc; 0 = none declared
}

// sends reports whether the client sends media on the m-line.
func (m *remoteMLine) sends() bool { return m.dir == "sendrecv" || m.dir == "sendonly" }

// usable reports whether the relay can take part in the m-line: audio
// with Opus, not rejected.
func (m *remoteMLine) usable() bool { return m.media == "audio" && m.port != 0 && m.opusPT >= 0 }

// remoteDescription is what the relay takes from a client's description.
type remoteDescription struct {
	ice          ice.Credentials
	fingerprints []transport.Fingerprint
	setup        string // a=setup of the first usable m-line (or the session)
	bundle       bool
	cryptex      bool // a=cryptex (RFC 9335) for the session, or on every usable m-line
	lines        []remoteMLine
}

// parseRemote reads a client's offer or answer. It fails with
// ErrInvalidSDP for SDP that does not parse or lacks ICE credentials or a
// fingerprint where an m-line is usable.
func parseRemote(text string) (*remoteDescription, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidSDP, err)
	}
	rd := &remoteDescription{}
	sessUfrag, _ := d.Attribute("ice-ufrag")
	sessPwd, _ := d.Attribute("ice-pwd")
	sessSetup, _ := d.Attribute("setup")
	sessFP := fingerprints(d.Attributes)
	for _, a := range d.Attributes {
		if a.Key == "group" && strings.HasPrefix(a.Value, "BUNDLE") {
			rd.bundle = true
		}
	}
	_, rd.cryptex = d.Attribute(sdp.AttrKeyCryptex)
	mediaCryptex, usable := true, false
	for _, md := range d.MediaDescriptions {
		m := remoteMLine{
			media:   md.MediaName.Media,
			port:    md.MediaName.Port.Value,
			proto:   strings.Join(md.MediaName.Protos, "/"),
			formats: md.MediaName.Formats,
			dir:     "sendrecv", // RFC 4566's default
			opusPT:  -1,
		}
		m.mid, _ = md.Attribute(sdp.AttrKeyMID)
		for _, a := range md.Attributes {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				m.dir = a.Key
			case "rtpmap":
				pt, enc, _ := strings.Cut(a.Value, " ")
				if n, err := strconv.Atoi(pt); err == nil && n >= 0 && n < 128 && m.opusPT < 0 &&
					strings.HasPrefix(strings.ToLower(strings.TrimSpace(enc)), "opus/48000") {
					m.opusPT = n
				}
			case "rtcp-rsize":
				m.rsize = true
			case "extmap":
				// a=extmap:<id>[/<direction>] <uri> [<attributes>]
				f := strings.Fields(a.Value)
				if len(f) < 2 || f[1] != sdp.AudioLevelURI {
					break
				}
				id, _, _ := strings.Cut(f[0], "/")
				if n, err := strconv.Atoi(id); err == nil && n > 0 && n < 256 {
					m.levelID = uint8(n)
				}
			case "ssrc":
				ssrc, _, _ := strings.Cut(a.Value, " ")
				if n, err := strconv.ParseUint(ssrc, 10, 32); err == nil && m.ssrc == 0 {
					m.ssrc = uint32(n)
				}
			}
		}
		for _, a := range md.Attributes {
			// After the rtpmap lines, wherever they are: a=rtcp-fb:<pt> nack
			if a.Key == "rtcp-fb" && m.opusPT >= 0 && a.Value == strconv.Itoa(m.opusPT)+" nack" {
				m.nack = true
			}
		}
		if m.usable() && rd.ice.Ufrag == "" {
			ufrag, ok := md.Attribute("ice-ufrag")
			if !ok {
				ufrag = sessUfrag
			}
			pwd, ok := md.Attribute("ice-pwd")
			if !ok {
				pwd = sessPwd
			}
			rd.ice = ice.Credentials{Ufrag: ufrag, Pwd: pwd}
			if rd.fingerprints = fingerprints(md.Attributes); len(rd.fingerprints) == 0 {
				rd.fingerprints = sessFP
			}
			if rd.setup, ok = md.Attribute("setup"); !ok {
				rd.setup = sessSetup
			}
		}
		if m.usable() {
			_, ok := md.Attribute(sdp.AttrKeyCryptex)
			mediaCryptex, usable = mediaCryptex && ok, true
		}
		rd.lines = append(rd.lines, m)
	}
	rd.cryptex = rd.cryptex || usable && mediaCryptex
	for _, m := range rd.lines {
		if !m.usable() {
			continue
		}
		switch {
		case rd.ice.Ufrag == "" || rd.ice.Pwd == "":
			return nil, fmt.Errorf("%w: no ICE credentials", ErrInvalidSDP)
		case len(rd.fingerprints) == 0:
			return nil, fmt.Errorf("%w: no DTLS fingerprint", ErrInvalidSDP)
		case m.mid == "":
			return nil, fmt.Errorf("%w: audio m-line without a=mid", ErrInvalidSDP)
		}
	}
	return rd, nil
}

func fingerprints(attrs []sdp.Attribute) []transport.Fingerprint {
	var fps []transport.Fingerprint
	for _, a := range attrs {
		if a.Key != "fingerprint" {
			continue
		}
		if alg, v, ok := strings.Cut(a.Value, " "); ok {
			fps = append(fps, transport.Fingerprint{Algorithm: alg, Value: strings.TrimSpace(v)})
		}
	}
	return fps
}

// localMLine is one m-line of the relay's side of a session: one of the
// client's (the relay receives the client's audio there, or nothing) or
// one the relay added to send a publisher's audio (a leg).
type localMLine struct {
	mid      string
	media    string
	proto    string
	formats  []string
	rejected bool   // port 0: not audio, or no Opus
	dir      string // the relay's direction on a client's m-line
	leg      *leg   // a relay-added m-line
}

// negotiation is the SDP state of one participant's session.
type negotiation struct {
	id        uint64 // o= session ID
	version   uint64 // o= version, one more per description
	local     ice.Credentials
	remoteICE ice.Credentials // the client's, from its last offer
	setup     string          // the relay's a=setup in answers: passive or active
	pt        uint8           // Opus payload type, the client's
	nack      bool
	levelID   uint8
	rsize     bool
	bundle    bool
	cryptex   bool // the client's offer said a=cryptex: so does the relay
	lines     []*localMLine
	nextMid   int
}

// newNegotiation starts a session from the client's offer.
func newNegotiation(rd *remoteDescription) *negotiation {
	n := &negotiation{
		id:        rand.Uint64() >> 1, // o= wants a positive 63-bit number
		local:     ice.NewCredentials(),
		remoteICE: rd.ice,
		// The relay connects, as answerers do (RFC 8842): its handshake
		// then ends when the client's last flight reaches it, so it never
		// sends media that the client cannot decrypt yet. As DTLS server it
		// would start sending when its own last flight left; if that flight
		// was lost, the client sat on a second of undecryptable media.
		setup:   "active",
		bundle:  rd.bundle,
		cryptex: rd.cryptex,
	}
	if rd.setup == "active" {
		n.setup = "passive"
	}
	var codecFrom *remoteMLine
	for i := range rd.lines {
		m := &rd.lines[i]
		l := &localMLine{mid: m.mid, media: m.media, proto: m.proto, formats: m.formats, rejected: !m.usable(), dir: "inactive"}
		if m.usable() {
			if m.sends() {
				l.dir = "recvonly"
			}
			if codecFrom == nil || (m.sends() && !codecFrom.sends()) {
				codecFrom = m
			}
		}
		n.lines = append(n.lines, l)
	}
	if codecFrom != nil {
		n.pt, n.nack, n.levelID, n.rsize = uint8(codecFrom.opusPT), codecFrom.nack, codecFrom.levelID, codecFrom.rsize
	}
	return n
}

// role is the relay's DTLS role.
func (n *negotiation) role() transport.Role {
	if n.setup == "active" {
		return transport.Active
	}
	return transport.Passive
}

// addLeg appends a relay-added m-line for l, under a mid of its own.
func (n *negotiation) addLeg(l *leg) {
	for {
		mid := strconv.Itoa(n.nextMid)
		n.nextMid++
		if !n.midTaken(mid) {
			l.mid = mid
			n.lines = append(n.lines, &localMLine{mid: mid, media: "audio", proto: "UDP/TLS/RTP/SAVPF", leg: l})
			return
		}
	}
}

func (n *negotiation) midTaken(mid string) bool {
	for _, l := range n.lines {
		if l.mid == mid {
			return true
		}
	}
	return false
}

// sameLines checks that a client's description has the session's m-lines,
// by mid, in order.
func (n *negotiation) sameLines(rd *remoteDescription) error {
	if len(rd.lines) != len(n.lines) {
		return fmt.Errorf("%w: %d m-lines, the session has %d", ErrInvalidSDP, len(rd.lines), len(n.lines))
	}
	for i, m := range rd.lines {
		if m.mid != n.lines[i].mid {
			return fmt.Errorf("%w: m-line %d has mid %q, the session %q", ErrInvalidSDP, i, m.mid, n.lines[i].mid)
		}
	}
	return nil
}

// describe writes the relay's description: an answer (setup as
// negotiated) or an offer (actpass). candidates go on the first m-line of
// the bundle (on each m-line without one); fingerprint is the relay's
// certificate's.
func (n *negotiation) describe(offer bool, fingerprint string, candidates []string) string {
	n.version++
	var b strings.Builder
	line := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	line("v=0")
	line("o=- %d %d IN IP4 0.0.0.0", n.id, n.version)
	line("s=-")
	line("t=0 0")
	line("a=msid-semantic:WMS *")
	line("a=fingerprint:%s", fingerprint)
	line("a=ice-lite")
	if n.cryptex {
		line("a=cryptex")
	}
	if n.bundle {
		var mids []string
		for _, l := range n.lines {
			if !l.rejected {
				mids = append(mids, l.mid)
			}
		}
		line("a=group:BUNDLE %s", strings.Join(mids, " "))
	}
	setup := n.setup
	if offer {
		setup = "actpass"
	}
	first := true
	for _, l := range n.lines {
		if l.rejected {
			line("m=%s 0 %s %s", l.media, l.proto, strings.Join(l.formats, " "))
			line("c=IN IP4 0.0.0.0")
			if l.mid != "" {
				line("a=mid:%s", l.mid)
			}
			line("a=inactive")
			continue
		}
		line("m=audio 9 UDP/TLS/RTP/SAVPF %d", n.pt)
		line("c=IN IP4 0.0.0.0")
		line("a=setup:%s", setup)
		line("a=mid:%s", l.mid)
		line("a=ice-ufrag:%s", n.local.Ufrag)
		line("a=ice-pwd:%s", n.local.Pwd)
		line("a=rtcp-mux")
		if n.rsize {
			line("a=rtcp-rsize")
		}
		line("a=rtpmap:%d opus/48000/2", n.pt)
		line("a=fmtp:%d %s", n.pt, opusFmtp)
		if n.nack {
			line("a=rtcp-fb:%d nack", n.pt)
		}
		if n.levelID != 0 {
			line("a=extmap:%d %s", n.levelID, sdp.AudioLevelURI)
		}
		dir := l.dir
		if l.leg != nil {
			dir = "inactive"
			if pub := l.leg.offered; pub != nil {
				dir = "sendonly"
				line("a=ssrc:%d cname:%s", l.leg.ssrc, pub.id)
				line("a=ssrc:%d msid:%s %s", l.leg.ssrc, pub.id, pub.trackID)
				line("a=msid:%s %s", pub.id, pub.trackID)
			}
		}
		line("a=%s", dir)
		if first || !n.bundle {
			for _, c := range candidates {
				line("a=%s", c)
			}
			line("a=end-of-candidates")
			first = false
		}
	}
	return b.String()
}
