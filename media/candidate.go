package media

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"

	"github.com/sotto-voice/sotto/api"
)

// ErrCandidate is wrapped by AddCandidate for a trickled candidate that
// does not belong to the participant's session: no m-line named, an m-line
// the session does not have, or another ICE username fragment than the
// session's.
var ErrCandidate = errors.New("candidate does not apply to this session")

// checkCandidate reports why a trickled candidate cannot apply to the
// session n, or nil. The rules are those of
// RTCPeerConnection.addIceCandidate: sdpMid, when present, names an m-line
// of the session; without it sdpMLineIndex does; one of them is required;
// usernameFragment, and the candidate line's own "ufrag" extension, when
// present, are the client's current fragment. An end-of-candidates marker
// without any of these fields applies to every m-line.
func checkCandidate(n *negotiation, c api.ICECandidate) error {
	if c.Candidate == "" && c.SDPMid == nil && c.SDPMLineIndex == nil && c.UsernameFragment == nil {
		return nil
	}
	switch {
	case c.SDPMid != nil:
		if *c.SDPMid == "" || !n.midTaken(*c.SDPMid) {
			return fmt.Errorf("%w: no m-line has sdpMid %s", ErrCandidate, strconv.Quote(*c.SDPMid))
		}
	case c.SDPMLineIndex != nil:
		if int(*c.SDPMLineIndex) >= len(n.lines) {
			return fmt.Errorf("%w: sdpMLineIndex %d, the session has %d m-lines", ErrCandidate, *c.SDPMLineIndex, len(n.lines))
		}
	default:
		return fmt.Errorf("%w: neither sdpMid nor sdpMLineIndex", ErrCandidate)
	}
	ufrag := n.remoteICE.Ufrag
	if c.UsernameFragment != nil && *c.UsernameFragment != ufrag {
		return fmt.Errorf("%w: usernameFragment %s is not the session's", ErrCandidate, strconv.Quote(*c.UsernameFragment))
	}
	if c.Candidate == "" {
		return nil
	}
	// The candidate line may name its fragment too (browsers add "ufrag
	// ...").
	cand, err := ice.UnmarshalCandidate(strings.TrimPrefix(c.Candidate, "candidate:"))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCandidate, err)
	}
	if ext, ok := cand.GetExtension("ufrag"); ok && ext.Value != ufrag {
		return fmt.Errorf("%w: candidate ufrag %s is not the session's", ErrCandidate, strconv.Quote(ext.Value))
	}
	return nil
}
