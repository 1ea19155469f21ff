package e2ee

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func mustIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := NewIdentity(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// bundleOf returns s's bundle, with a one-time prekey and a one-time KEM
// prekey if withOPK.
func bundleOf(t testing.TB, s *PrekeyStore, withOPK bool) PrekeyBundle {
	t.Helper()
	b := PrekeyBundle{IdentityKey: s.Identity().Public().Bytes(), SignedPrekey: s.SignedPrekey(), KEMPrekey: s.KEMPrekey()}
	if withOPK {
		opks, err := s.NewOneTimePrekeys(1)
		if err != nil {
			t.Fatal(err)
		}
		b.OneTimePrekey = &opks[0]
		kems, err := s.NewOneTimeKEMPrekeys(1)
		if err != nil {
			t.Fatal(err)
		}
		b.OneTimeKEMPrekey = &kems[0]
	}
	return b
}

// pair returns an established session pair: alice initiated, bob accepted
// alice's first message.
func pair(t testing.TB, withOPK bool) (alice, bob *Session) {
	t.Helper()
	a := mustIdentity(t)
	store, err := NewPrekeyStore(mustIdentity(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, err = InitiateSession(nil, a, bundleOf(t, store, withOPK))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := alice.Encrypt([]byte("hello bob"))
	if err != nil {
		t.Fatal(err)
	}
	if msg[1] != typeInit || len(msg) != 2+initPrefixSize+headerSize+len("hello bob")+messageTagSize {
		t.Fatalf("first message type %d of %d bytes, want a pqxdh-init", msg[1], len(msg))
	}
	bob, pt, err := AcceptSession(store, msg, t0)
	if err != nil {
		t.Fatal(err)
	}
	if string(pt) != "hello bob" {
		t.Fatalf("bob got %q", pt)
	}
	if !bob.PeerIdentity().Equal(a.Public()) || !alice.PeerIdentity().Equal(store.Identity().Public()) {
		t.Fatal("peer identities do not match")
	}
	if alice.LastResortKEM() != !withOPK || bob.LastResortKEM() != !withOPK {
		t.Fatalf("last-resort KEM: alice %v, bob %v; want %v", alice.LastResortKEM(), bob.LastResortKEM(), !withOPK)
	}
	return alice, bob
}

func mustDecrypt(t *testing.T, s *Session, payload []byte, want string) {
	t.Helper()
	pt, err := s.Decrypt(payload, t0)
	if err != nil {
		t.Fatalf("decrypt %q: %v", want, err)
	}
	if string(pt) != want {
		t.Fatalf("got %q, want %q", pt, want)
	}
}

func mustEncrypt(t *testing.T, s *Session, pt string) []byte {
	t.Helper()
	m, err := s.Encrypt([]byte(pt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSessionConversation(t *testing.T) {
	for _, withOPK := range []bool{true, false} {
		t.Run(fmt.Sprintf("opk=%v", withOPK), func(t *testing.T) {
			alice, bob := pair(t, withOPK)
			// Until bob answers, alice repeats the PQXDH header; bob routes
			// it to the existing session.
			m := mustEncrypt(t, alice, "second")
			if m[1] != typeInit {
				t.Fatal("alice stopped sending pqxdh-init before bob answered")
			}
			mustDecrypt(t, bob, m, "second")
			mustDecrypt(t, alice, mustEncrypt(t, bob, "hi alice"), "hi alice")
			if m := mustEncrypt(t, alice, "third"); m[1] != typeRatchet {
				t.Fatal("alice still sends pqxdh-init after bob answered")
			} else {
				mustDecrypt(t, bob, m, "third")
			}
			for i := range 5 {
				mustDecrypt(t, bob, mustEncrypt(t, alice, fmt.Sprint("a", i)), fmt.Sprint("a", i))
				mustDecrypt(t, alice, mustEncrypt(t, bob, fmt.Sprint("b", i)), fmt.Sprint("b", i))
			}
		})
	}
}

func TestSessionOutOfOrder(t *testing.T) {
	alice, bob := pair(t, true)
	mustDecrypt(t, alice, mustEncrypt(t, bob, "ack"), "ack")
	a1, a2, a3 := mustEncrypt(t, alice, "a1"), mustEncrypt(t, alice, "a2"), mustEncrypt(t, alice, "a3")
	mustDecrypt(t, bob, a3, "a3")
	// Bob answers, alice ratchets, and sends in a new chain.
	mustDecrypt(t, alice, mustEncrypt(t, bob, "b1"), "b1")
	a4 := mustEncrypt(t, alice, "a4")
	mustDecrypt(t, bob, a4, "a4")
	// The skipped keys of the previous chain still work, once each.
	mustDecrypt(t, bob, a1, "a1")
	mustDecrypt(t, bob, a2, "a2")
	if _, err := bob.Decrypt(a2, t0); err == nil {
		t.Fatal("replayed ratchet message decrypted twice")
	}
	if _, err := bob.Decrypt(a4, t0); err == nil {
		t.Fatal("replayed current-chain message decrypted twice")
	}
}

func TestSessionRejectsTamperingAndKeepsState(t *testing.T) {
	alice, bob := pair(t, false)
	mustDecrypt(t, alice, mustEncrypt(t, bob, "ack"), "ack")
	m := mustEncrypt(t, alice, "payload")
	for i := 2; i < len(m); i++ { // every header and ciphertext byte
		bad := bytes.Clone(m)
		bad[i] ^= 0x40
		if _, err := bob.Decrypt(bad, t0); err == nil {
			t.Fatalf("byte %d tampered: accepted", i)
		}
	}
	for _, bad := range [][]byte{nil, {1}, {1, 2}, m[:10], m[:len(m)-1], append([]byte{2}, m[1:]...), append([]byte{1, 9}, m[2:]...)} {
		if _, err := bob.Decrypt(bad, t0); err == nil {
			t.Fatalf("malformed %x accepted", bad)
		}
	}
	// None of the failures changed the session.
	mustDecrypt(t, bob, m, "payload")
}

func TestSessionSkipBounds(t *testing.T) {
	alice, bob := pair(t, false)
	mustDecrypt(t, alice, mustEncrypt(t, bob, "ack"), "ack")
	for range MaxSkip + 1 {
		mustEncrypt(t, alice, "lost")
	}
	if _, err := bob.Decrypt(mustEncrypt(t, alice, "too far"), t0); !errors.Is(err, ErrTooManySkipped) {
		t.Fatalf("skipping %d keys: err %v, want ErrTooManySkipped", MaxSkip+2, err)
	}

	alice, bob = pair(t, false)
	mustDecrypt(t, alice, mustEncrypt(t, bob, "ack"), "ack")
	late := mustEncrypt(t, alice, "late")
	mustDecrypt(t, bob, mustEncrypt(t, alice, "next"), "next")
	if bob.st.skipped.len() != 1 {
		t.Fatalf("%d skipped keys stored, want 1", bob.st.skipped.len())
	}
	// After the lifetime the skipped key is gone; the late message fails.
	if _, err := bob.Decrypt(late, t0.Add(SkippedKeyLifetime+time.Second)); err == nil {
		t.Fatal("message decrypted with an expired skipped key")
	}
	if pt, err := bob.Decrypt(mustEncrypt(t, alice, "after"), t0.Add(SkippedKeyLifetime+time.Second)); err != nil || string(pt) != "after" {
		t.Fatalf("after expiry: %q, %v", pt, err)
	}
	if bob.st.skipped.len() != 0 {
		t.Fatalf("%d skipped keys after expiry, want 0", bob.st.skipped.len())
	}
}

// Skipped keys leave the store in the order they were stored: beyond
// MaxSkippedKeys exactly the oldest go, the bound holds, a forged message
// changes nothing, and keys used out of order do not make the store grow.
func TestSkippedKeysEvictedOldestFirst(t *testing.T) {
	alice, bob := pair(t, false)
	const chains, extra = 2, 10
	var lost [][]byte // in the order bob stores their keys
	for c := range chains + 1 {
		mustDecrypt(t, alice, mustEncrypt(t, bob, "ack"), "ack")
		n := MaxSkippedKeys / chains
		if c == chains {
			n = extra
		}
		for range n {
			lost = append(lost, mustEncrypt(t, alice, fmt.Sprint("lost ", len(lost))))
		}
		mustDecrypt(t, bob, mustEncrypt(t, alice, "next"), "next")
		if got, want := bob.st.skipped.len(), min(len(lost), MaxSkippedKeys); got != want {
			t.Fatalf("after chain %d: %d skipped keys stored, want %d", c, got, want)
		}
	}
	// A forged message far ahead derives keys it may not keep.
	if _, err := bob.Decrypt(forged(bob, MaxSkip), t0); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("forged message: %v, want ErrDecrypt", err)
	}
	if n := bob.st.skipped.len(); n != MaxSkippedKeys {
		t.Fatalf("%d skipped keys after a forged message, want %d", n, MaxSkippedKeys)
	}
	// The extra keys pushed out exactly the oldest ones.
	for i := range extra {
		if _, err := bob.Decrypt(lost[i], t0); err == nil {
			t.Fatalf("lost message %d decrypted: its key should have been evicted first", i)
		}
	}
	// Every other one opens, once, in any order: the store shrinks as
	// they are used, and its bookkeeping with it.
	rest := lost[extra:]
	for i := len(rest) - 1; i >= 0; i -= 2 {
		mustDecrypt(t, bob, rest[i], fmt.Sprint("lost ", extra+i))
	}
	for i := len(rest) - 2; i >= 0; i -= 2 {
		mustDecrypt(t, bob, rest[i], fmt.Sprint("lost ", extra+i))
		if n, held := len(bob.st.skipped.order), bob.st.skipped.len(); n > 2*held+64 {
			t.Fatalf("%d entries kept in order for %d keys", n, held)
		}
	}
	if n := bob.st.skipped.len(); n != 0 {
		t.Fatalf("%d skipped keys left after using them all", n)
	}
	if _, err := bob.Decrypt(rest[0], t0); err == nil {
		t.Fatal("a skipped key opened a message twice")
	}
}

func TestSessionInitRouting(t *testing.T) {
	a := mustIdentity(t)
	store, err := NewPrekeyStore(mustIdentity(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := bundleOf(t, store, true)
	alice, err := InitiateSession(nil, a, b)
	if err != nil {
		t.Fatal(err)
	}
	first := mustEncrypt(t, alice, "one")
	bob, _, err := AcceptSession(store, first, t0)
	if err != nil {
		t.Fatal(err)
	}
	if store.OneTimePrekeys() != 0 || store.OneTimeKEMPrekeys() != 0 {
		t.Fatal("one-time prekeys not deleted after use")
	}
	// The same initial message cannot start a second session.
	if _, _, err := AcceptSession(store, first, t0); !errors.Is(err, ErrReplayedInit) {
		t.Fatalf("replayed pqxdh-init: %v, want ErrReplayedInit", err)
	}
	// Nor can another one naming the used one-time prekey.
	alice1b, err := InitiateSession(nil, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := AcceptSession(store, mustEncrypt(t, alice1b, "again"), t0); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("reused one-time prekey: %v, want ErrUnknownPrekey", err)
	}
	// A new session from alice (new ephemeral key) is not bob's session.
	b.OneTimePrekey, b.OneTimeKEMPrekey = nil, nil
	alice2, err := InitiateSession(nil, a, b)
	if err != nil {
		t.Fatal(err)
	}
	m2 := mustEncrypt(t, alice2, "restart")
	if _, err := bob.Decrypt(m2, t0); !errors.Is(err, ErrOtherSession) {
		t.Fatalf("other session's pqxdh-init: %v, want ErrOtherSession", err)
	}
	if _, pt, err := AcceptSession(store, m2, t0); err != nil || string(pt) != "restart" {
		t.Fatalf("accept restarted session: %q, %v", pt, err)
	}
	// Without one-time prekeys (the last-resort KEM prekey), a replayed
	// initial message is refused too.
	if _, _, err := AcceptSession(store, m2, t0); !errors.Is(err, ErrReplayedInit) {
		t.Fatalf("replayed pqxdh-init: %v, want ErrReplayedInit", err)
	}
	// A rotated signed prekey still answers; the one before it does not.
	if _, err := store.RotateSignedPrekey(); err != nil {
		t.Fatal(err)
	}
	alice3, _ := InitiateSession(nil, a, b)
	if _, _, err := AcceptSession(store, mustEncrypt(t, alice3, "x"), t0); err != nil {
		t.Fatalf("previous signed prekey: %v", err)
	}
	if _, err := store.RotateSignedPrekey(); err != nil {
		t.Fatal(err)
	}
	alice4, _ := InitiateSession(nil, a, b)
	if _, _, err := AcceptSession(store, mustEncrypt(t, alice4, "x"), t0); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("signed prekey two rotations old: %v, want ErrUnknownPrekey", err)
	}
}

// TestChangedIdentityIsReported: the directory hands out a bundle of
// another identity (self-consistent, so X3DH works); the client notices by
// comparing with the identity it knew.
func TestChangedIdentityIsReported(t *testing.T) {
	a := mustIdentity(t)
	bobStore, _ := NewPrekeyStore(mustIdentity(t), nil)
	known := bobStore.Identity().Public()
	mallory, _ := NewPrekeyStore(mustIdentity(t), nil)
	s, err := InitiateSession(nil, a, bundleOf(t, mallory, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckIdentity(known, s.PeerIdentity()); !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("substituted identity: %v", err)
	}
	if SafetyNumber(a.Public(), known) == SafetyNumber(a.Public(), s.PeerIdentity()) {
		t.Fatal("safety number did not change")
	}
	// Bob's side sees the same when alice's identity changes.
	alice2, _ := InitiateSession(nil, mustIdentity(t), bundleOf(t, bobStore, false))
	bs, _, err := AcceptSession(bobStore, mustEncrypt(t, alice2, "hi"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckIdentity(a.Public(), bs.PeerIdentity()); !errors.Is(err, ErrIdentityChanged) {
		t.Fatalf("changed initiator identity: %v", err)
	}
}

func TestInitiateRejectsBadBundle(t *testing.T) {
	a := mustIdentity(t)
	store, err := NewPrekeyStore(mustIdentity(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	good := bundleOf(t, store, true)
	mallory := mustIdentity(t)
	cases := map[string]func(b *PrekeyBundle){
		"spk signature":      func(b *PrekeyBundle) { b.SignedPrekey.Signature[0] ^= 1 },
		"spk key":            func(b *PrekeyBundle) { b.SignedPrekey.Key[0] ^= 1 },
		"spk id":             func(b *PrekeyBundle) { b.SignedPrekey.ID++ },
		"identity signature": func(b *PrekeyBundle) { b.IdentityKey[100] ^= 1 },
		"identity swapped":   func(b *PrekeyBundle) { b.IdentityKey = mallory.Public().Bytes() },
		"identity short":     func(b *PrekeyBundle) { b.IdentityKey = b.IdentityKey[:64] },
		"opk short":          func(b *PrekeyBundle) { b.OneTimePrekey.Key = b.OneTimePrekey.Key[:31] },
	}
	for name, mutate := range cases {
		b := cloneBundle(good)
		mutate(&b)
		if _, err := InitiateSession(nil, a, b); err == nil {
			t.Errorf("%s: bundle accepted", name)
		}
	}
	// No session without a valid signed KEM prekey: every refusal is
	// ErrNoKEMPrekey, and a signature that does not verify is also
	// ErrBadSignature.
	spk := good.SignedPrekey
	invalid := bytes.Repeat([]byte{0xff}, KEMPrekeySize) // coefficients out of range
	kemCases := map[string]struct {
		mutate func(b *PrekeyBundle)
		badSig bool
	}{
		"kem missing":                   {func(b *PrekeyBundle) { b.KEMPrekey = KEMPrekey{} }, false},
		"kem missing, one-time offered": {func(b *PrekeyBundle) { b.KEMPrekey = KEMPrekey{} }, false},
		"kem signature":                 {func(b *PrekeyBundle) { b.KEMPrekey.Signature[0] ^= 1 }, true},
		"kem key":                       {func(b *PrekeyBundle) { b.KEMPrekey.Key[500] ^= 1 }, true},
		"kem id":                        {func(b *PrekeyBundle) { b.KEMPrekey.ID++ }, true},
		"kem short":                     {func(b *PrekeyBundle) { b.KEMPrekey.Key = b.KEMPrekey.Key[:KEMPrekeySize-1] }, false},
		"kem signed by another identity": {func(b *PrekeyBundle) {
			b.KEMPrekey.Signature = mallory.sign(kemPrekeyLabel, u32be(b.KEMPrekey.ID), b.KEMPrekey.Key)
		}, true},
		"kem under the spk label": {func(b *PrekeyBundle) {
			b.KEMPrekey.Signature = store.identity.sign(signedPrekeyLabel, u32be(b.KEMPrekey.ID), b.KEMPrekey.Key)
		}, true},
		"spk offered as kem": {func(b *PrekeyBundle) { b.KEMPrekey = KEMPrekey{ID: spk.ID, Key: spk.Key, Signature: spk.Signature} }, false},
		"kem invalid key, signed": {func(b *PrekeyBundle) {
			b.KEMPrekey = KEMPrekey{ID: 9, Key: invalid, Signature: store.identity.sign(kemPrekeyLabel, u32be(9), invalid)}
		}, false},
		"one-time kem signature": {func(b *PrekeyBundle) { b.OneTimeKEMPrekey.Signature[63] ^= 1 }, true},
		"one-time kem short":     {func(b *PrekeyBundle) { b.OneTimeKEMPrekey.Key = nil }, false},
	}
	for name, c := range kemCases {
		b := cloneBundle(good)
		if name == "kem missing" {
			b.OneTimeKEMPrekey = nil
		}
		c.mutate(&b)
		_, err := InitiateSession(nil, a, b)
		if !errors.Is(err, ErrNoKEMPrekey) || errors.Is(err, ErrBadSignature) != c.badSig {
			t.Errorf("%s: %v; want ErrNoKEMPrekey (bad signature: %v)", name, err, c.badSig)
		}
	}
	// A low-order signed prekey (signed by the real identity) gives an
	// all-zero DH output and is refused.
	zero := make([]byte, 32)
	bad := good
	bad.SignedPrekey = SignedPrekey{ID: 7, Key: zero, Signature: store.identity.sign(signedPrekeyLabel, []byte{0, 0, 0, 7}, zero)}
	if _, err := InitiateSession(nil, a, bad); err == nil {
		t.Error("low-order signed prekey accepted")
	}
}

func u32be(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// cloneBundle copies b deeply, so that a test may damage the copy.
func cloneBundle(b PrekeyBundle) PrekeyBundle {
	c := b
	c.IdentityKey = bytes.Clone(b.IdentityKey)
	c.SignedPrekey = SignedPrekey{ID: b.SignedPrekey.ID, Key: bytes.Clone(b.SignedPrekey.Key), Signature: bytes.Clone(b.SignedPrekey.Signature)}
	c.KEMPrekey = b.KEMPrekey.clone()
	if b.OneTimePrekey != nil {
		c.OneTimePrekey = &OneTimePrekey{ID: b.OneTimePrekey.ID, Key: bytes.Clone(b.OneTimePrekey.Key)}
	}
	if b.OneTimeKEMPrekey != nil {
		k := b.OneTimeKEMPrekey.clone()
		c.OneTimeKEMPrekey = &k
	}
	return c
}

func TestIdentity(t *testing.T) {
	a, b := mustIdentity(t), mustIdentity(t)
	raw, err := a.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	a2, err := ParseIdentity(raw)
	if err != nil {
		t.Fatal(err)
	}
	if a2.Public() != a.Public() {
		t.Fatal("restored identity differs")
	}
	p, err := ParsePublicIdentity(a.Public().Bytes())
	if err != nil || !p.Equal(a.Public()) {
		t.Fatalf("parse public identity: %v", err)
	}
	if a.Public().Equal(b.Public()) {
		t.Fatal("distinct identities compare equal")
	}
	if c := a.Public().Compare(b.Public()); c == 0 || c != -b.Public().Compare(a.Public()) || a.Public().Compare(p) != 0 {
		t.Fatal("Compare is not an order")
	}
	if err := CheckIdentity(a.Public(), p); err != nil {
		t.Fatal(err)
	}
	if err := CheckIdentity(PublicIdentity{}, p); err != nil {
		t.Fatal("first contact rejected:", err)
	}
	err = CheckIdentity(a.Public(), b.Public())
	if !errors.Is(err, ErrIdentityChanged) || !strings.Contains(err.Error(), b.Public().Fingerprint()) {
		t.Fatalf("changed identity: %v", err)
	}
	sn := SafetyNumber(a.Public(), b.Public())
	if sn != SafetyNumber(b.Public(), a.Public()) {
		t.Fatal("safety number depends on the order")
	}
	if len(sn) != 71 || strings.Count(sn, " ") != 11 {
		t.Fatalf("safety number format %q", sn)
	}
	if sn == SafetyNumber(a.Public(), mustIdentity(t).Public()) {
		t.Fatal("safety number unchanged with another identity")
	}
	if fp := a.Public().Fingerprint(); len(fp) != 64 || fp == b.Public().Fingerprint() {
		t.Fatalf("fingerprint %q", fp)
	}
	for _, bad := range [][]byte{nil, raw[:64], append([]byte{2}, raw[1:]...)} {
		if _, err := ParseIdentity(bad); err == nil {
			t.Errorf("private identity %x accepted", bad)
		}
	}
}

// IsPayload tells every payload a session produces from data that is not
// one.
func TestIsPayload(t *testing.T) {
	alice, bob := pair(t, true)
	first := mustEncrypt(t, alice, "init")
	mustDecrypt(t, bob, first, "init")
	reply := mustEncrypt(t, bob, "ratchet")
	for _, p := range [][]byte{first, reply} {
		if !IsPayload(p) {
			t.Errorf("payload %x not recognised", p[:2])
		}
	}
	for _, d := range [][]byte{nil, {1}, {0, 1}, {2, 1}, {1, 0}, {1, 3}, []byte("hello")} {
		if IsPayload(d) {
			t.Errorf("%x taken for a payload", d)
		}
	}
}
