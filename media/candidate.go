package media

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"

	"github.com/sotto-voice/sotto/api"
)

// ErrCandidate is wrapped by AddCandidate for a trickled candidate that
// does not belong to the participant's session: no m-line named, an m-line
// the session does not have, or another ICE username fragment than the
// session's.
var ErrCandidate = errors.New("candidate does not apply to this session")

// checkCandidate reports why a trickled candidate cannot apply to the
// session whose remote (client) description is remote, or nil. The rules
// are those of RTCPeerConnection.addIceCandidate: sdpMid, when present,
// names an m-line of the session; without it sdpMLineIndex does; one of
// them is required; usernameFragment, and the candidate line's own "ufrag"
// extension, when present, are the session's current fragment. An
// end-of-candidates marker without any of these fields applies to every
// m-line.
func checkCandidate(remote string, c api.ICECandidate) error {
	if c.Candidate == "" && c.SDPMid == nil && c.SDPMLineIndex == nil && c.UsernameFragment == nil {
		return nil
	}
	var d sdp.SessionDescription
	if err := d.UnmarshalString(remote); err != nil {
		return fmt.Errorf("media: check candidate: %w", err)
	}
	var m *sdp.MediaDescription
	switch {
	case c.SDPMid != nil:
		for _, md := range d.MediaDescriptions {
			if mid, ok := md.Attribute(sdp.AttrKeyMID); ok && mid == *c.SDPMid {
				m = md
				break
			}
		}
		if m == nil {
			return fmt.Errorf("%w: no m-line has sdpMid %s", ErrCandidate, strconv.Quote(*c.SDPMid))
		}
	case c.SDPMLineIndex != nil:
		if int(*c.SDPMLineIndex) >= len(d.MediaDescriptions) {
			return fmt.Errorf("%w: sdpMLineIndex %d, the session has %d m-lines", ErrCandidate, *c.SDPMLineIndex, len(d.MediaDescriptions))
		}
		m = d.MediaDescriptions[*c.SDPMLineIndex]
	default:
		return fmt.Errorf("%w: neither sdpMid nor sdpMLineIndex", ErrCandidate)
	}
	ufrag, ok := m.Attribute("ice-ufrag")
	if !ok {
		ufrag, _ = d.Attribute("ice-ufrag")
	}
	if c.UsernameFragment != nil && *c.UsernameFragment != ufrag {
		return fmt.Errorf("%w: usernameFragment %s is not the session's", ErrCandidate, strconv.Quote(*c.UsernameFragment))
	}
	// The candidate line may name its fragment too (browsers add "ufrag
	// ..."); pion would drop a mismatch without a word. A line that does
	// not parse is left to pion, which refuses it.
	if cand, err := ice.UnmarshalCandidate(strings.TrimPrefix(c.Candidate, "candidate:")); err == nil {
		if ext, ok := cand.GetExtension("ufrag"); ok && ext.Value != ufrag {
			return fmt.Errorf("%w: candidate ufrag %s is not the session's", ErrCandidate, strconv.Quote(ext.Value))
		}
	}
	return nil
}
