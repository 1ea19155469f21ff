package loadtest

import (
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// DefaultClip is the Ogg Opus clip callers play when Config.Audio is nil:
// six seconds of generated tones (see audio/ORIGIN.md).
//
//go:embed audio/clip.opus
var DefaultClip []byte

// FrameDuration is the length of one frame: the pace of every caller.
const FrameDuration = 20 * time.Millisecond

// OpusPackets splits an Ogg Opus stream (RFC 7845) into its audio packets,
// skipping the OpusHead and OpusTags headers. Every packet must hold
// exactly FrameDuration of audio, since callers send one per tick.
//
// pion's oggreader returns whole pages, which hold many packets each, so
// the packets are cut here from the pages' lacing values (RFC 3533).
func OpusPackets(ogg []byte) ([][]byte, error) {
	var packets [][]byte
	var cur []byte
	for off := 0; off < len(ogg); {
		if len(ogg)-off < 27 || string(ogg[off:off+4]) != "OggS" {
			return nil, fmt.Errorf("ogg: no page at byte %d", off)
		}
		nseg := int(ogg[off+26])
		if len(ogg)-off < 27+nseg {
			return nil, fmt.Errorf("ogg: truncated segment table at byte %d", off)
		}
		lacing := ogg[off+27 : off+27+nseg]
		body := off + 27 + nseg
		for _, l := range lacing {
			if body+int(l) > len(ogg) {
				return nil, fmt.Errorf("ogg: truncated page at byte %d", off)
			}
			cur = append(cur, ogg[body:body+int(l)]...)
			body += int(l)
			if l < 255 {
				packets = append(packets, cur)
				cur = nil
			}
		}
		off = body
	}
	if len(packets) < 3 || len(packets[0]) < 8 || string(packets[0][:8]) != "OpusHead" {
		return nil, errors.New("ogg: not an Opus stream (no OpusHead)")
	}
	audio := packets[2:] // after OpusHead and OpusTags
	for i, p := range audio {
		if d, err := packetDuration(p); err != nil || d != FrameDuration {
			return nil, fmt.Errorf("opus packet %d: want one %v frame per packet (opusenc --framesize 20), got %v %v", i, FrameDuration, d, err)
		}
	}
	return audio, nil
}

// packetDuration reads an Opus packet's duration from its TOC byte
// (RFC 6716 section 3.1).
func packetDuration(p []byte) (time.Duration, error) {
	if len(p) == 0 {
		return 0, errors.New("empty packet")
	}
	cfg := p[0] >> 3
	var frame time.Duration
	switch {
	case cfg < 12: // SILK: 10, 20, 40, 60 ms
		frame = [...]time.Duration{10, 20, 40, 60}[cfg%4] * time.Millisecond
	case cfg < 16: // hybrid: 10, 20 ms
		frame = [...]time.Duration{10, 20}[cfg%2] * time.Millisecond
	default: // CELT: 2.5, 5, 10, 20 ms
		frame = [...]time.Duration{2500, 5000, 10000, 20000}[cfg%4] * time.Microsecond
	}
	switch p[0] & 3 {
	case 0:
		return frame, nil
	case 1, 2:
		return 2 * frame, nil
	default:
		if len(p) < 2 {
			return 0, errors.New("code 3 packet without frame count")
		}
		return time.Duration(p[1]&0x3f) * frame, nil
	}
}

// hashFrame is FNV-1a over a frame: cheap, and enough to tell the frames
// of one clip apart.
func hashFrame(p []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range p {
		h ^= uint64(b)
		h *= 1099511628211
	}
	// Fold in the length so that frames differing only in trailing zeros
	// still differ.
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(p)))
	for _, b := range l {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}
