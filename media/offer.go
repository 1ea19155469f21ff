package media

import (
	"fmt"
	"slices"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// The SDP decisions of the relay live in this file as functions of SDP text
// alone, so that they do not depend on how the media path is built.

// publication is what Join needs from a client's offer: the m-line that
// carries the participant's audio, if any.
type publication struct {
	mid string // "" for a listen-only participant, which publishes nothing
}

// checkOffer validates an initial offer before any PeerConnection exists:
// it must parse and carry an audio m-line with Opus that sends (sendrecv or
// sendonly) or, for a listen-only participant, only receives (recvonly).
// The first sending Opus m-line is the participant's publication; media on
// any other m-line is dropped and counted. An offer whose only Opus m-lines
// receive is a listen-only participant's: it publishes nothing.
func checkOffer(offer string) (publication, error) {
	if strings.TrimSpace(offer) == "" {
		return publication{}, fmt.Errorf("%w: empty offer", ErrInvalidSDP)
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(offer); err != nil {
		return publication{}, fmt.Errorf("%w: %v", ErrInvalidSDP, err)
	}
	sawAudio, sending, listening := false, false, false
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		sawAudio = true
		dir := direction(m)
		sending = sending || dir == "sendrecv" || dir == "sendonly"
		if dir == "inactive" || !hasOpus(m) {
			continue
		}
		mid, ok := m.Attribute(sdp.AttrKeyMID)
		if !ok || mid == "" {
			return publication{}, fmt.Errorf("%w: audio m-line without a=mid", ErrInvalidSDP)
		}
		if dir == "recvonly" {
			listening = true
			continue
		}
		return publication{mid: mid}, nil
	}
	switch {
	case !sawAudio:
		return publication{}, fmt.Errorf("%w: no audio m-line", ErrInvalidSDP)
	case sending:
		return publication{}, ErrUnsupportedCodec
	case listening:
		return publication{}, nil
	case anyReceiving(desc.MediaDescriptions):
		return publication{}, ErrUnsupportedCodec
	default:
		return publication{}, fmt.Errorf("%w: no audio m-line that sends or receives", ErrInvalidSDP)
	}
}

// direction is an m-line's direction attribute; RFC 4566 makes sendrecv
// the default.
func direction(m *sdp.MediaDescription) string {
	for _, a := range m.Attributes {
		switch a.Key {
		case "sendrecv", "sendonly", "recvonly", "inactive":
			return a.Key
		}
	}
	return "sendrecv"
}

func anyReceiving(ms []*sdp.MediaDescription) bool {
	for _, m := range ms {
		if m.MediaName.Media == "audio" && m.MediaName.Port.Value != 0 && direction(m) == "recvonly" {
			return true
		}
	}
	return false
}

func hasOpus(m *sdp.MediaDescription) bool { return len(opusPayloadTypes(m)) > 0 }

// opusPayloadTypes lists the payload types an m-line maps to Opus.
func opusPayloadTypes(m *sdp.MediaDescription) []string {
	var pts []string
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		// a=rtpmap:<pt> <encoding>/<clock>[/<channels>]
		pt, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(enc)), "opus/48000") {
			pts = append(pts, pt)
		}
	}
	return pts
}

// opusFormat is the Opus format the relay states for every Opus payload
// type in its answers and offers (RFC 7587): frames of 10 ms at least, and
// in-band forward error correction, which lets a receiver conceal a lost
// packet from the next one.
const opusFormat = "minptime=10;useinbandfec=1"

// forClient returns the copy of a description the relay sends (its answer
// or one of its offers) that states what the relay means where pion's
// words differ. pion requires its local description to stay the one it
// generated, so the statements go in the copy only; they change nothing in
// what the relay sends. Everything else, payload types and NACK feedback
// included (pion keeps NACK exactly when the client offered it), stays as
// pion wrote it.
func forClient(desc string) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(desc); err != nil {
		return "", fmt.Errorf("media: description for the client: %w", err)
	}
	for _, m := range d.MediaDescriptions {
		stateOpusFormat(m)
		stateNoTrack(m)
	}
	out, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("media: description for the client: %w", err)
	}
	return string(out), nil
}

// stateOpusFormat gives every Opus payload type of m exactly the fmtp line
// opusFormat. pion answers with the client's own fmtp line, or none.
func stateOpusFormat(m *sdp.MediaDescription) {
	pts := opusPayloadTypes(m)
	if len(pts) == 0 {
		return
	}
	attrs := make([]sdp.Attribute, 0, len(m.Attributes)+len(pts))
	for _, a := range m.Attributes {
		pt := formatOf(a.Value)
		if a.Key == "fmtp" && slices.Contains(pts, pt) {
			continue
		}
		attrs = append(attrs, a)
		if a.Key == "rtpmap" && slices.Contains(pts, pt) {
			attrs = append(attrs, sdp.NewAttribute("fmtp", pt+" "+opusFormat))
		}
	}
	m.Attributes = attrs
}

// stateNoTrack writes an m-line on which the relay sends no track as
// inactive. pion answers a listen-only client's recvonly m-line sendonly,
// with no track behind it, which would have the client expect one.
func stateNoTrack(m *sdp.MediaDescription) {
	if _, ok := m.Attribute("msid"); ok {
		return
	}
	for i, a := range m.Attributes {
		if a.Key == "sendonly" {
			m.Attributes[i] = sdp.NewPropertyAttribute("inactive")
		}
	}
}

// formatOf is the payload type an rtpmap or fmtp value is about: its first
// word.
func formatOf(value string) string {
	pt, _, _ := strings.Cut(value, " ")
	return pt
}

// sameMLines checks that a client's offer keeps the m-lines of the
// session's current remote description: the same mids, in the same order.
func sameMLines(current *webrtc.SessionDescription, offer string) error {
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(offer); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidSDP, err)
	}
	if current == nil {
		return fmt.Errorf("%w: no session to change yet", ErrInvalidSDP)
	}
	var cur sdp.SessionDescription
	if err := cur.UnmarshalString(current.SDP); err != nil {
		return fmt.Errorf("%w: current description: %v", ErrInvalidSDP, err)
	}
	if len(desc.MediaDescriptions) != len(cur.MediaDescriptions) {
		return fmt.Errorf("%w: the offer has %d m-lines, the session %d: a client offer may restart ICE, not change media",
			ErrInvalidSDP, len(desc.MediaDescriptions), len(cur.MediaDescriptions))
	}
	for i, m := range desc.MediaDescriptions {
		mid, _ := m.Attribute(sdp.AttrKeyMID)
		want, _ := cur.MediaDescriptions[i].Attribute(sdp.AttrKeyMID)
		if mid != want {
			return fmt.Errorf("%w: m-line %d has mid %q, the session %q", ErrInvalidSDP, i, mid, want)
		}
	}
	return nil
}
