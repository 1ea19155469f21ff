package e2ee

import (
	"testing"
)

func benchSuite(b *testing.B, suite CipherSuite) (*FrameSender, *FrameReceiver) {
	s, err := NewFrameSender(FrameSenderConfig{Suite: suite})
	if err != nil {
		b.Fatal(err)
	}
	r := NewFrameReceiver(FrameReceiverConfig{})
	for _, k := range s.Keys() {
		if _, err := r.SetKey("alice", k, t0); err != nil {
			b.Fatal(err)
		}
	}
	return s, r
}

var opusFrame = make([]byte, 120)

func BenchmarkSFrameSeal(b *testing.B) {
	for _, suite := range []CipherSuite{AES128GCMSHA256, AES256GCMSHA512, AES128CTRHMACSHA256_80} {
		b.Run(suite.String(), func(b *testing.B) {
			s, _ := benchSuite(b, suite)
			dst := make([]byte, 0, 256)
			b.SetBytes(int64(len(opusFrame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Seal(dst, opusFrame, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSFrameOpen(b *testing.B) {
	for _, suite := range []CipherSuite{AES128GCMSHA256, AES256GCMSHA512, AES128CTRHMACSHA256_80} {
		b.Run(suite.String(), func(b *testing.B) {
			s, r := benchSuite(b, suite)
			// Frames sealed in advance, opened in order, so that the replay
			// window accepts each one once.
			const n = 1 << 14
			frames := make([][]byte, n)
			for i := range frames {
				f, err := s.Seal(nil, opusFrame, t0)
				if err != nil {
					b.Fatal(err)
				}
				frames[i] = f
			}
			dst := make([]byte, 0, 256)
			b.SetBytes(int64(len(opusFrame)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == n {
					// Start over under a fresh key (outside the measured work
					// as far as possible; rare).
					b.StopTimer()
					s, r = benchSuite(b, suite)
					for j := range frames {
						frames[j], _ = s.Seal(frames[j][:0], opusFrame, t0)
					}
					i = 0
					b.StartTimer()
				}
				if _, _, err := r.Open(dst, frames[i], t0); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkRatchetEncryptDecrypt(b *testing.B) {
	alice, bob := pair(b, true)
	msg := make([]byte, 44)
	b.ReportAllocs()
	for b.Loop() {
		p, err := alice.Encrypt(msg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := bob.Decrypt(p, t0); err != nil {
			b.Fatal(err)
		}
	}
}
