package srtp

import (
	"crypto/hmac"
	"encoding/binary"
)

// SealRTP protects the RTP packet in buf[:n], whose header is its first
// hdrLen bytes, in place, and returns the length of the SRTP packet;
// buf must have room for the tag. s is the state of the packet's stream as
// sent.
func (c *Context) SealRTP(buf []byte, n, hdrLen int, s *Stream) (int, error) {
	tagLen := c.profile.tagLen()
	if n+tagLen > len(buf) {
		return 0, ErrRoom
	}
	if hdrLen < 12 || hdrLen > n {
		return 0, ErrShort
	}
	ssrc := binary.BigEndian.Uint32(buf[8:12])
	i := s.index(binary.BigEndian.Uint16(buf[2:4]))
	t := &c.rtp
	if c.profile == AEADAES128GCM {
		t.rtpIV(true, ssrc, i)
		t.aead.Seal(buf[hdrLen:hdrLen], t.iv[:12], buf[hdrLen:n], buf[:hdrLen])
	} else {
		t.rtpIV(false, ssrc, i)
		t.xorKeyStream(buf[hdrLen:n])
		binary.BigEndian.PutUint32(t.word[:], uint32(i>>16))
		copy(buf[n:], t.tag(buf[:n])[:tagLen])
	}
	s.update(i)
	return n + tagLen, nil
}

// OpenRTP authenticates and decrypts the SRTP packet pkt, whose header is
// its first hdrLen bytes, in place, and returns the length of the RTP
// packet. s is the state of the packet's stream as received; a packet
// received before is refused.
func (c *Context) OpenRTP(pkt []byte, hdrLen int, s *Stream) (int, error) {
	tagLen := c.profile.tagLen()
	n := len(pkt) - tagLen
	if hdrLen < 12 || n < hdrLen {
		return 0, ErrShort
	}
	ssrc := binary.BigEndian.Uint32(pkt[8:12])
	i := s.index(binary.BigEndian.Uint16(pkt[2:4]))
	if s.started && !s.window.fresh(i) {
		return 0, ErrReplayed
	}
	t := &c.rtp
	if c.profile == AEADAES128GCM {
		t.rtpIV(true, ssrc, i)
		if _, err := t.aead.Open(pkt[hdrLen:hdrLen], t.iv[:12], pkt[hdrLen:], pkt[:hdrLen]); err != nil {
			return 0, ErrAuth
		}
	} else {
		binary.BigEndian.PutUint32(t.word[:], uint32(i>>16))
		if !hmac.Equal(t.tag(pkt[:n])[:tagLen], pkt[n:]) {
			return 0, ErrAuth
		}
		t.rtpIV(false, ssrc, i)
		t.xorKeyStream(pkt[hdrLen:n])
	}
	s.update(i)
	s.window.accept(i)
	return n, nil
}

// srtcpE marks an SRTCP index whose packet is encrypted.
const srtcpE = 1 << 31

// SealRTCP protects the compound RTCP packet in buf[:n] in place, with
// the next SRTCP index, and returns the length of the SRTCP packet; buf
// must have room for the index and the tag.
func (c *Context) SealRTCP(buf []byte, n int) (int, error) {
	tagLen := c.profile.tagLen()
	if n+4+tagLen > len(buf) {
		return 0, ErrRoom
	}
	if n < 8 {
		return 0, ErrShort
	}
	c.rtcpIndex = (c.rtcpIndex + 1) &^ srtcpE
	ssrc := binary.BigEndian.Uint32(buf[4:8])
	t := &c.rtcp
	binary.BigEndian.PutUint32(t.word[:], c.rtcpIndex|srtcpE)
	if c.profile == AEADAES128GCM {
		// RFC 7714 section 9: the header and the E flag with the index
		// are authenticated; the index follows the tag.
		t.rtcpIV(true, ssrc, c.rtcpIndex)
		copy(t.aad[:8], buf[:8])
		copy(t.aad[8:], t.word[:])
		t.aead.Seal(buf[8:8], t.iv[:12], buf[8:n], t.aad[:])
		copy(buf[n+tagLen:], t.word[:])
		return n + tagLen + 4, nil
	}
	t.rtcpIV(false, ssrc, c.rtcpIndex)
	t.xorKeyStream(buf[8:n])
	copy(buf[n:], t.word[:])
	copy(buf[n+4:], t.tag(buf[:n])[:tagLen])
	return n + 4 + tagLen, nil
}

// OpenRTCP authenticates and decrypts the SRTCP packet pkt in place and
// returns the length of the RTCP packet. A packet received before, by its
// SSRC and index, is refused.
func (c *Context) OpenRTCP(pkt []byte) (int, error) {
	tagLen := c.profile.tagLen()
	n := len(pkt) - 4 - tagLen
	if n < 8 {
		return 0, ErrShort
	}
	gcm := c.profile == AEADAES128GCM
	t := &c.rtcp
	if gcm {
		copy(t.word[:], pkt[len(pkt)-4:])
	} else {
		copy(t.word[:], pkt[n:n+4])
	}
	word := binary.BigEndian.Uint32(t.word[:])
	i := word &^ srtcpE
	ssrc := binary.BigEndian.Uint32(pkt[4:8])
	w := c.rtcpWindow(ssrc)
	if w == nil || !w.fresh(uint64(i)) {
		return 0, ErrReplayed
	}
	if gcm {
		t.rtcpIV(true, ssrc, i)
		if word&srtcpE == 0 {
			// Unencrypted SRTCP is not used by WebRTC endpoints.
			return 0, ErrAuth
		}
		copy(t.aad[:8], pkt[:8])
		copy(t.aad[8:], t.word[:])
		if _, err := t.aead.Open(pkt[8:8], t.iv[:12], pkt[8:n+tagLen], t.aad[:]); err != nil {
			return 0, ErrAuth
		}
	} else {
		if !hmac.Equal(t.tag(pkt[:n])[:tagLen], pkt[n+4:]) {
			return 0, ErrAuth
		}
		if word&srtcpE != 0 {
			t.rtcpIV(false, ssrc, i)
			t.xorKeyStream(pkt[8:n])
		}
	}
	w.accept(uint64(i))
	return n, nil
}

// rtcpWindow is the replay window of received SRTCP from ssrc, nil if too
// many SSRCs are known already.
func (c *Context) rtcpWindow(ssrc uint32) *replayWindow {
	for k := range c.rtcpSeen {
		if c.rtcpSeen[k].ssrc == ssrc {
			return &c.rtcpSeen[k].window
		}
	}
	if len(c.rtcpSeen) == maxRTCPStreams {
		return nil
	}
	c.rtcpSeen = append(c.rtcpSeen, rtcpState{ssrc: ssrc})
	return &c.rtcpSeen[len(c.rtcpSeen)-1].window
}
