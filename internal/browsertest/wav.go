package browsertest

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// WAV parameters of WriteToneWAV: what Chromium's fake capture device reads
// and what Opus encodes natively.
const (
	WAVSampleRate = 48000
	WAVChannels   = 1
)

// WriteToneWAV writes a 48 kHz mono 16-bit PCM WAV into the test's temp dir
// and returns its path: a 440 Hz tone whose amplitude swings at 2 Hz, so the
// audio is never silence (Opus DTX would otherwise shrink frames) and a
// listener can tell it apart from a constant beep.
func WriteToneWAV(t testing.TB, length time.Duration) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tone.wav")
	if err := os.WriteFile(path, ToneWAV(length), 0o644); err != nil {
		t.Fatalf("write fake audio: %v", err)
	}
	return path
}

// ToneWAV returns the bytes WriteToneWAV writes.
func ToneWAV(length time.Duration) []byte {
	n := int(length.Seconds() * WAVSampleRate)
	data := make([]byte, 44+2*n)
	le := binary.LittleEndian
	copy(data[0:], "RIFF")
	le.PutUint32(data[4:], uint32(36+2*n))
	copy(data[8:], "WAVEfmt ")
	le.PutUint32(data[16:], 16) // fmt chunk size
	le.PutUint16(data[20:], 1)  // PCM
	le.PutUint16(data[22:], WAVChannels)
	le.PutUint32(data[24:], WAVSampleRate)
	le.PutUint32(data[28:], WAVSampleRate*2*WAVChannels) // byte rate
	le.PutUint16(data[32:], 2*WAVChannels)               // block align
	le.PutUint16(data[34:], 16)                          // bits per sample
	copy(data[36:], "data")
	le.PutUint32(data[40:], uint32(2*n))
	for i := range n {
		x := float64(i) / WAVSampleRate
		amp := 0.55 + 0.35*math.Sin(2*math.Pi*2*x)
		s := amp * math.Sin(2*math.Pi*440*x)
		le.PutUint16(data[44+2*i:], uint16(int16(s*math.MaxInt16)))
	}
	return data
}
