package e2ee

import (
	"encoding/binary"
	"errors"
	"fmt"
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
				if _, err := r.Open(dst, frames[i], "alice", t0); err != nil {
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

// withSkipped returns an established pair whose responder holds n
// skipped message keys, from chains of lost messages of at most MaxSkip.
func withSkipped(tb testing.TB, n int) (alice, bob *Session) {
	alice, bob = pair(tb, false)
	for n > 0 {
		reply, err := bob.Encrypt([]byte("ack"))
		if err != nil {
			tb.Fatal(err)
		}
		if _, err := alice.Decrypt(reply, t0); err != nil {
			tb.Fatal(err)
		}
		lost := min(n, MaxSkip)
		n -= lost
		var last []byte
		for range lost + 1 {
			if last, err = alice.Encrypt([]byte("lost")); err != nil {
				tb.Fatal(err)
			}
		}
		if _, err := bob.Decrypt(last, t0); err != nil {
			tb.Fatal(err)
		}
	}
	return alice, bob
}

// forged returns a 110-byte ratchet message on the responder's current
// receiving chain, skip messages ahead, that does not authenticate.
func forged(bob *Session, skip uint32) []byte {
	m := []byte{payloadVersion, typeRatchet}
	m = append(m, bob.st.dhr...)
	m = binary.BigEndian.AppendUint32(m, 0)
	m = binary.BigEndian.AppendUint32(m, bob.st.nr+skip)
	return append(m, make([]byte, 68)...)
}

// BenchmarkForgedEnvelope is what one forged envelope costs a session,
// with an empty and a full store of skipped keys: the store adds nothing
// (the cost grows with the keys the envelope makes the chain skip, up to
// MaxSkip derivations, and not with the keys already stored).
func BenchmarkForgedEnvelope(b *testing.B) {
	for _, stored := range []int{0, MaxSkippedKeys} {
		for _, skip := range []uint32{0, 1, MaxSkip} {
			b.Run(fmt.Sprintf("stored=%d/skip=%d", stored, skip), func(b *testing.B) {
				_, bob := withSkipped(b, stored)
				if n := bob.st.skipped.len(); n != stored {
					b.Fatalf("%d skipped keys stored, want %d", n, stored)
				}
				m := forged(bob, skip)
				b.ReportAllocs()
				for b.Loop() {
					if _, err := bob.Decrypt(m, t0); !errors.Is(err, ErrDecrypt) {
						b.Fatalf("forged envelope: %v, want ErrDecrypt", err)
					}
				}
			})
		}
	}
}

// bundleBytes is the size of a bundle's byte fields (its JSON in
// api.PrekeyBundle is base64 of these and a few names more).
func bundleBytes(b PrekeyBundle) int {
	n := len(b.IdentityKey) + 4 + len(b.SignedPrekey.Key) + len(b.SignedPrekey.Signature) + 4 + len(b.KEMPrekey.Key) + len(b.KEMPrekey.Signature)
	if b.OneTimePrekey != nil {
		n += 4 + len(b.OneTimePrekey.Key)
	}
	if b.OneTimeKEMPrekey != nil {
		n += 4 + len(b.OneTimeKEMPrekey.Key) + len(b.OneTimeKEMPrekey.Signature)
	}
	return n
}

// firstMessage starts a session from a to bundle and returns its first
// payload, a pqxdh-init carrying msg.
func firstMessage(tb testing.TB, a *Identity, bundle PrekeyBundle, msg []byte) []byte {
	s, err := InitiateSession(nil, a, bundle)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := s.Encrypt(msg)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// benchPQXDH runs bench for sessions to one-time and to last-resort KEM
// prekeys, with an initiator's identity and a responder's store.
func benchPQXDH(b *testing.B, bench func(b *testing.B, a *Identity, store *PrekeyStore, oneTime bool)) {
	for _, oneTime := range []bool{true, false} {
		b.Run(fmt.Sprintf("one-time=%v", oneTime), func(b *testing.B) {
			store, err := NewPrekeyStore(mustIdentity(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			bench(b, mustIdentity(b), store, oneTime)
		})
	}
}

// BenchmarkPQXDHInitiate is the initiator's cost of a session: verifying
// the bundle, X25519 and ML-KEM-768 encapsulation, and sealing the first
// message (a 44-byte frame key) as a pqxdh-init.
func BenchmarkPQXDHInitiate(b *testing.B) {
	benchPQXDH(b, func(b *testing.B, a *Identity, store *PrekeyStore, oneTime bool) {
		bundle := bundleOf(b, store, oneTime)
		msg := make([]byte, 44)
		var size int
		b.ReportAllocs()
		for b.Loop() {
			size = len(firstMessage(b, a, bundle, msg))
		}
		b.ReportMetric(float64(size), "init-bytes")
		b.ReportMetric(float64(bundleBytes(bundle)), "bundle-bytes")
	})
}

// BenchmarkPQXDHRespond is the responder's cost of a session: accepting a
// pqxdh-init (ML-KEM-768 decapsulation from the stored seed, X25519, the
// first ratchet step) and decrypting its message.
func BenchmarkPQXDHRespond(b *testing.B) {
	benchPQXDH(b, func(b *testing.B, a *Identity, store *PrekeyStore, oneTime bool) {
		msg := make([]byte, 44)
		b.ReportAllocs()
		for b.Loop() {
			// Each session needs a fresh initial message (a replay is
			// refused) and fresh one-time prekeys.
			b.StopTimer()
			p := firstMessage(b, a, bundleOf(b, store, oneTime), msg)
			b.StartTimer()
			if _, _, err := AcceptSession(store, p, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
}
