package media

import (
	"fmt"
	"strings"
)

// checkOffer reads a client's initial offer: it must parse and carry an
// audio m-line with Opus that sends (sendrecv or sendonly) or, for a
// listen-only participant, only receives (recvonly). It returns the
// description and the participant's publication: the first sending Opus
// m-line, or nil for a listen-only participant, which publishes nothing.
// Media on any other m-line is dropped and counted.
func checkOffer(offer string) (*remoteDescription, *remoteMLine, error) {
	if strings.TrimSpace(offer) == "" {
		return nil, nil, fmt.Errorf("%w: empty offer", ErrInvalidSDP)
	}
	rd, err := parseRemote(offer)
	if err != nil {
		return nil, nil, err
	}
	sawAudio, sending, listening, receiving := false, false, false, false
	for i := range rd.lines {
		m := &rd.lines[i]
		if m.media != "audio" || m.port == 0 {
			continue
		}
		sawAudio = true
		sending = sending || m.sends()
		receiving = receiving || m.dir == "recvonly"
		switch {
		case m.dir == "inactive" || !m.usable():
		case m.dir == "recvonly":
			listening = true
		default:
			return rd, m, nil
		}
	}
	switch {
	case !sawAudio:
		return nil, nil, fmt.Errorf("%w: no audio m-line", ErrInvalidSDP)
	case sending:
		return nil, nil, ErrUnsupportedCodec
	case listening:
		return rd, nil, nil
	case receiving:
		return nil, nil, ErrUnsupportedCodec
	default:
		return nil, nil, fmt.Errorf("%w: no audio m-line that sends or receives", ErrInvalidSDP)
	}
}
