package e2ee

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzSFrameOpen feeds arbitrary frames to a receiver holding real keys:
// every input is either opened (and then was sealed by the sender) or
// dropped with one of the drop errors and counted; nothing panics.
func FuzzSFrameOpen(f *testing.F) {
	s, err := NewFrameSender(FrameSenderConfig{Random: &drbg{label: "fuzz sender"}})
	if err != nil {
		f.Fatal(err)
	}
	seeds := [][]byte{{}, {0x00}, {0xff}, {0x80}, {0x08}, {0xff, 0xff, 0xff}}
	for i := range 4 {
		fr, _ := s.Seal(nil, bytes.Repeat([]byte{byte(i)}, 20*i+1), t0)
		seeds = append(seeds, fr)
	}
	for _, seed := range seeds {
		f.Add(seed)
	}
	keys := s.Keys()
	sealed := map[string]bool{}
	for _, seed := range seeds[6:] {
		sealed[string(seed)] = true
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		r := NewFrameReceiver(FrameReceiverConfig{})
		if _, err := r.SetKey("alice", keys[0], t0); err != nil {
			t.Fatal(err)
		}
		out, err := r.Open(make([]byte, 0, 8), frame, "alice", t0)
		st := r.Stats()
		switch {
		case err == nil && len(frame) == 0:
			if len(out) != 0 || st != (FrameStats{}) {
				t.Fatal("empty frame not passed through")
			}
		case err == nil:
			if !sealed[string(frame)] || st.Opened != 1 {
				t.Fatalf("opened a frame the sender never sealed: %x", frame)
			}
		case errors.Is(err, ErrMalformed), errors.Is(err, ErrUnknownKID), errors.Is(err, ErrAuthFailed),
			errors.Is(err, ErrReplayed), errors.Is(err, ErrKeyExpired), errors.Is(err, ErrWrongSender),
			errors.Is(err, ErrAwaitingKey), errors.Is(err, ErrBeforeKey):
			if st.Opened != 0 || dropped(st) != 1 {
				t.Fatalf("drop not counted once: %+v", st)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
		// Whatever the parser accepts re-encodes to a header that parses
		// to the same values.
		if kid, ctr, n, ok := parseHeader(frame); ok {
			if n > len(frame) || n > maxHeaderSize {
				t.Fatalf("header length %d of %d bytes", n, len(frame))
			}
			if k2, c2, _, ok := parseHeader(appendHeader(nil, kid, ctr)); !ok || k2 != kid || c2 != ctr {
				t.Fatalf("header kid=%d ctr=%d does not round-trip", kid, ctr)
			}
		}
	})
}

// FuzzSessionDecrypt feeds arbitrary payloads to an established session
// and to AcceptSession: errors only, never a panic, and the session still
// works afterwards.
func FuzzSessionDecrypt(f *testing.F) {
	alice, bob := pair(f, true)
	ack, _ := bob.Encrypt([]byte("ack"))
	if _, err := alice.Decrypt(ack, t0); err != nil {
		f.Fatal(err)
	}
	m, _ := alice.Encrypt([]byte("seed"))
	f.Add(m)
	f.Add([]byte{})
	f.Add([]byte{1, 1})
	f.Add([]byte{1, 2})
	f.Add(append([]byte{1, 1}, make([]byte, initPrefixSize+minRatchetBytes)...))
	store, err := NewPrekeyStore(mustIdentity(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	init, _ := InitiateSession(nil, mustIdentity(f), bundleOf(f, store, true))
	im, _ := init.Encrypt([]byte("init"))
	f.Add(im)
	f.Fuzz(func(t *testing.T, payload []byte) {
		if _, err := bob.Decrypt(payload, t0); err == nil && !bytes.Equal(payload, m) {
			// Only payloads alice produced decrypt; the fuzzer cannot forge one.
			t.Fatalf("forged payload decrypted: %x", payload)
		}
		if _, _, err := AcceptSession(store, payload, t0.Add(time.Second)); err == nil && !bytes.Equal(payload, im) {
			t.Fatalf("forged pqxdh-init accepted: %x", payload)
		}
	})
}

// FuzzParseInit: a pqxdh-init body either fails to parse with
// ErrInvalidMessage or splits into fields that encode back to the same
// bytes; AcceptSession refuses every body but those the initiators sent,
// without panicking.
func FuzzParseInit(f *testing.F) {
	store, err := NewPrekeyStore(mustIdentity(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	sent := map[string]bool{}
	for _, withOPK := range []bool{true, false} {
		s, err := InitiateSession(nil, mustIdentity(f), bundleOf(f, store, withOPK))
		if err != nil {
			f.Fatal(err)
		}
		m, _ := s.Encrypt([]byte("init"))
		sent[string(m[2:])] = true
		f.Add(m[2:])
	}
	f.Add([]byte{})
	f.Add(make([]byte, initPrefixSize+minRatchetBytes))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := parseInit(body)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("parse error %v is not ErrInvalidMessage", err)
			}
			return
		}
		var opk *OneTimePrekey
		if m.hasOPK {
			opk = &OneTimePrekey{ID: m.opkID}
		}
		var ik PublicIdentity
		copy(ik.b[:], m.identity)
		back := appendInitPrefix(nil, ik, m.ephemeral[:], m.spkID, opk, m.kemID, m.kemCT)
		if !bytes.Equal(back, m.prefix) || !bytes.Equal(append(back, m.message...), body) {
			t.Fatalf("pqxdh-init %x re-encodes to %x", body, back)
		}
		if len(m.kemCT) != KEMCiphertextSize || len(m.message) < minRatchetBytes {
			t.Fatalf("parsed a %d-byte ciphertext and a %d-byte message", len(m.kemCT), len(m.message))
		}
		payload := append([]byte{payloadVersion, typeInit}, body...)
		if _, _, err := AcceptSession(store, payload, t0); err == nil && !sent[string(body)] {
			t.Fatalf("forged pqxdh-init accepted: %x", body)
		}
	})
}

// FuzzParseFrameKey: frame-key and ack messages either fail to parse or
// re-encode to the same bytes.
func FuzzParseFrameKey(f *testing.F) {
	s, err := NewFrameSender(FrameSenderConfig{Random: &drbg{label: "fuzz frame key"}})
	if err != nil {
		f.Fatal(err)
	}
	k := s.Keys()[0]
	raw, _ := k.MarshalBinary()
	ack, _ := k.Ack().MarshalBinary()
	f.Add(raw)
	f.Add(ack)
	f.Add([]byte{1, 0, 5})
	f.Fuzz(func(t *testing.T, b []byte) {
		if k, err := ParseFrameKey(b); err == nil {
			if back, _ := k.MarshalBinary(); !bytes.Equal(back, b) {
				t.Fatalf("frame key %x re-encodes to %x", b, back)
			}
		}
		if a, err := ParseFrameKeyAck(b); err == nil {
			if back, _ := a.MarshalBinary(); !bytes.Equal(back, b) {
				t.Fatalf("ack %x re-encodes to %x", b, back)
			}
		}
	})
}

// FuzzDecryptFile feeds arbitrary encrypted files to the decrypter under a
// real key: every input either decrypts to what was encrypted (and then is
// one of the files sealed under that key) or fails with ErrFileCorrupt;
// nothing panics, and nothing else decrypts.
func FuzzDecryptFile(f *testing.F) {
	key, err := NewFileKey(&drbg{label: "fuzz file"})
	if err != nil {
		f.Fatal(err)
	}
	plaintexts := map[string][]byte{}
	for _, n := range []int{0, 1, 40, FileChunkSize, FileChunkSize + 3} {
		pt := patterned(n)
		ct := encryptAll(f, key, pt, n+1)
		plaintexts[string(ct)] = pt
		f.Add(ct)
	}
	f.Add([]byte{})
	f.Add(fileHeader[:])
	f.Fuzz(func(t *testing.T, ct []byte) {
		got, err := decryptAll(key, ct)
		want, sealed := plaintexts[string(ct)]
		switch {
		case err == nil && !sealed:
			t.Fatalf("a file never encrypted decrypts (%d bytes)", len(got))
		case err == nil && !bytes.Equal(got, want):
			t.Fatal("an encrypted file decrypts to something else")
		case err != nil && sealed:
			t.Fatalf("an encrypted file fails: %v", err)
		case err != nil && !errors.Is(err, ErrFileCorrupt):
			t.Fatalf("error %v does not wrap ErrFileCorrupt", err)
		}
	})
}

// FuzzParseMessage: whatever parses encodes back to the same bytes.
func FuzzParseMessage(f *testing.F) {
	for _, m := range []Message{{Seq: 1, Sent: time.UnixMilli(5), Text: "hi"}, {Seq: 9, Direct: true, File: testFileRef()}} {
		b, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMessage(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidMessage) {
				t.Fatalf("error %v does not wrap ErrInvalidMessage", err)
			}
			return
		}
		again, err := m.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("%+v encodes to % x, %v; parsed from % x", m, again, err, b)
		}
	})
}
