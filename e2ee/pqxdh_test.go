package e2ee

import (
	"errors"
	"fmt"
	"testing"
)

// Every combination of one-time prekeys offered or not: the session
// agrees, uses the one-time KEM prekey whenever offered, and the
// responder deletes what it used, zeroing the KEM seed.
func TestPQXDHPrekeyCombinations(t *testing.T) {
	a := mustIdentity(t)
	store, err := NewPrekeyStore(mustIdentity(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, opk := range []bool{true, false} {
		for _, otk := range []bool{true, false} {
			t.Run(fmt.Sprintf("opk=%v/kem=%v", opk, otk), func(t *testing.T) {
				b := bundleOf(t, store, true)
				if !opk {
					b.OneTimePrekey = nil
				}
				var seed *kemSeed
				if otk {
					seed = store.oneTimeKEM[b.OneTimeKEMPrekey.ID]
				} else {
					b.OneTimeKEMPrekey = nil
				}
				opks, otks := store.OneTimePrekeys(), store.OneTimeKEMPrekeys()
				alice, err := InitiateSession(nil, a, b)
				if err != nil {
					t.Fatal(err)
				}
				bob, pt, err := AcceptSession(store, mustEncrypt(t, alice, "hi"), t0)
				if err != nil || string(pt) != "hi" {
					t.Fatalf("accept: %q, %v", pt, err)
				}
				if alice.LastResortKEM() == otk || bob.LastResortKEM() == otk {
					t.Fatalf("last-resort KEM: alice %v, bob %v with a one-time KEM prekey %v", alice.LastResortKEM(), bob.LastResortKEM(), otk)
				}
				if got := opks - store.OneTimePrekeys(); got != b2i(opk) {
					t.Errorf("%d one-time prekeys deleted", got)
				}
				if got := otks - store.OneTimeKEMPrekeys(); got != b2i(otk) {
					t.Errorf("%d one-time KEM prekeys deleted", got)
				}
				if seed != nil && *seed != (kemSeed{}) {
					t.Error("used one-time KEM seed not zeroed")
				}
				mustDecrypt(t, alice, mustEncrypt(t, bob, "back"), "back")
			})
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A pqxdh-init naming a KEM prekey the store does not hold, or holding a
// ciphertext for another key, starts no session; a replayed one is
// refused whichever KEM prekey it used.
func TestPQXDHRefusals(t *testing.T) {
	a := mustIdentity(t)
	store, err := NewPrekeyStore(mustIdentity(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewPrekeyStore(store.Identity(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Bob's own signed prekey, with a KEM prekey of another store of his:
	// well signed, but unknown to this one.
	b := bundleOf(t, store, false)
	b.KEMPrekey = other.KEMPrekey()
	s, err := InitiateSession(nil, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := AcceptSession(store, mustEncrypt(t, s, "x"), t0); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("unknown KEM prekey: %v, want ErrUnknownPrekey", err)
	}
	// A ciphertext damaged in transit: ML-KEM's implicit rejection gives
	// another secret, and the message does not decrypt.
	s, _ = InitiateSession(nil, a, bundleOf(t, store, true))
	m := mustEncrypt(t, s, "x")
	m[2+initCTOffset+100] ^= 1
	if _, _, err := AcceptSession(store, m, t0); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("damaged KEM ciphertext: %v, want ErrDecrypt", err)
	}
	if store.OneTimeKEMPrekeys() != 1 || store.OneTimePrekeys() != 1 {
		t.Fatal("a failed initial message used up one-time prekeys")
	}
	// Replays, to the one-time and to the last-resort KEM prekey.
	for _, withOPK := range []bool{true, false} {
		s, _ := InitiateSession(nil, a, bundleOf(t, store, withOPK))
		first := mustEncrypt(t, s, "x")
		if _, _, err := AcceptSession(store, first, t0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := AcceptSession(store, first, t0); !errors.Is(err, ErrReplayedInit) {
			t.Fatalf("replay (one-time prekeys %v): %v, want ErrReplayedInit", withOPK, err)
		}
	}
}

// A rotated last-resort KEM prekey still answers; the one before it is
// zeroed and answers no more. Destroy zeroes every seed.
func TestKEMPrekeyRotation(t *testing.T) {
	a := mustIdentity(t)
	store, err := NewPrekeyStore(mustIdentity(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	b := bundleOf(t, store, false)
	first := store.kemPriv
	rotated, err := store.RotateKEMPrekey()
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ID == b.KEMPrekey.ID || store.KEMPrekey().ID != rotated.ID {
		t.Fatal("rotation kept the KEM prekey")
	}
	s, _ := InitiateSession(nil, a, b)
	if _, _, err := AcceptSession(store, mustEncrypt(t, s, "x"), t0); err != nil {
		t.Fatalf("previous KEM prekey: %v", err)
	}
	if _, err := store.RotateKEMPrekey(); err != nil {
		t.Fatal(err)
	}
	if *first != (kemSeed{}) {
		t.Fatal("KEM prekey two rotations old not zeroed")
	}
	s, _ = InitiateSession(nil, a, b)
	if _, _, err := AcceptSession(store, mustEncrypt(t, s, "x"), t0); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("KEM prekey two rotations old: %v, want ErrUnknownPrekey", err)
	}

	b = bundleOf(t, store, true)
	seeds := []*kemSeed{store.kemPriv, store.previousKEM, store.oneTimeKEM[b.OneTimeKEMPrekey.ID]}
	store.Destroy()
	for i, seed := range seeds {
		if *seed != (kemSeed{}) {
			t.Errorf("seed %d not zeroed by Destroy", i)
		}
	}
	s, _ = InitiateSession(nil, a, b)
	if _, _, err := AcceptSession(store, mustEncrypt(t, s, "x"), t0); !errors.Is(err, ErrUnknownPrekey) {
		t.Fatalf("destroyed store: %v, want ErrUnknownPrekey", err)
	}
}
