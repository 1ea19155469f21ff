package media

import (
	"fmt"
	"strings"

	"github.com/pion/sdp/v3"
)

// publication is what Join needs from a client's offer: the m-line that
// carries the participant's audio.
type publication struct {
	mid string
}

// checkOffer validates an initial offer before any PeerConnection exists:
// it must parse, carry an audio m-line that sends (sendrecv or sendonly),
// and offer Opus on it. The first such m-line is the participant's
// publication; media on any other m-line is dropped and counted.
func checkOffer(offer string) (publication, error) {
	if strings.TrimSpace(offer) == "" {
		return publication{}, fmt.Errorf("%w: empty offer", ErrInvalidSDP)
	}
	var desc sdp.SessionDescription
	if err := desc.UnmarshalString(offer); err != nil {
		return publication{}, fmt.Errorf("%w: %v", ErrInvalidSDP, err)
	}
	sawAudio := false
	for _, m := range desc.MediaDescriptions {
		if m.MediaName.Media != "audio" || m.MediaName.Port.Value == 0 {
			continue
		}
		sawAudio = true
		if !sends(m) {
			continue
		}
		if !hasOpus(m) {
			continue
		}
		mid, ok := m.Attribute(sdp.AttrKeyMID)
		if !ok || mid == "" {
			return publication{}, fmt.Errorf("%w: audio m-line without a=mid", ErrInvalidSDP)
		}
		return publication{mid: mid}, nil
	}
	switch {
	case !sawAudio:
		return publication{}, fmt.Errorf("%w: no audio m-line", ErrInvalidSDP)
	case anySending(desc.MediaDescriptions):
		return publication{}, ErrUnsupportedCodec
	default:
		return publication{}, fmt.Errorf("%w: no sendrecv or sendonly audio m-line", ErrInvalidSDP)
	}
}

func sends(m *sdp.MediaDescription) bool {
	for _, a := range m.Attributes {
		switch a.Key {
		case "recvonly", "inactive":
			return false
		case "sendrecv", "sendonly":
			return true
		}
	}
	return true // RFC 4566: sendrecv is the default
}

func anySending(ms []*sdp.MediaDescription) bool {
	for _, m := range ms {
		if m.MediaName.Media == "audio" && m.MediaName.Port.Value != 0 && sends(m) {
			return true
		}
	}
	return false
}

func hasOpus(m *sdp.MediaDescription) bool {
	for _, a := range m.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		// a=rtpmap:<pt> <encoding>/<clock>[/<channels>]
		_, enc, ok := strings.Cut(a.Value, " ")
		if !ok {
			continue
		}
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(enc)), "opus/48000") {
			return true
		}
	}
	return false
}
