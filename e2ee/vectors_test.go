package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/mlkem"
	"crypto/mlkem/mlkemtest"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"strconv"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the generated vector files in testdata")

const vectorsPath = "testdata/sotto-vectors.json"

// drbg is a deterministic byte stream, SHA-256(label || counter) blocks,
// so that the vectors are reproducible. Consumers of the vectors do not
// need it: every random value drawn is recorded in the vectors.
type drbg struct {
	label string
	ctr   uint64
	buf   []byte
	drawn []byte
}

func (d *drbg) Read(p []byte) (int, error) {
	for len(d.buf) < len(p) {
		h := sha256.New()
		h.Write([]byte(d.label))
		h.Write(binary.BigEndian.AppendUint64(nil, d.ctr))
		d.ctr++
		d.buf = h.Sum(d.buf)
	}
	n := copy(p, d.buf)
	d.buf = d.buf[n:]
	d.drawn = append(d.drawn, p[:n]...)
	return n, nil
}

// take returns the bytes drawn since the last take.
func (d *drbg) take() hexBytes {
	out := d.drawn
	d.drawn = nil
	return out
}

type identityVector struct {
	Name        string   `json:"name"`
	Random      hexBytes `json:"random"`
	Private     hexBytes `json:"private"`
	SigPub      hexBytes `json:"sig_pub"`
	DHPub       hexBytes `json:"dh_pub"`
	Public      hexBytes `json:"public"`
	Fingerprint string   `json:"fingerprint"`
	SafetyHalf  string   `json:"safety_half"`
}

type prekeyVector struct {
	ID        uint32   `json:"id"`
	Private   hexBytes `json:"private"`
	Public    hexBytes `json:"public"`
	Signature hexBytes `json:"signature,omitempty"`
}

type kemPrekeyVector struct {
	ID        uint32   `json:"id"`
	Seed      hexBytes `json:"seed"` // the private key: d || z of FIPS 203
	Public    hexBytes `json:"public"`
	Signature hexBytes `json:"signature"`
}

type pqxdhVector struct {
	EphemeralPrivate hexBytes `json:"alice_ephemeral_private"`
	EphemeralPublic  hexBytes `json:"alice_ephemeral_public"`
	DH1              hexBytes `json:"dh1"`
	DH2              hexBytes `json:"dh2"`
	DH3              hexBytes `json:"dh3"`
	DH4              hexBytes `json:"dh4,omitempty"`
	KEMPrekeyID      uint32   `json:"kem_prekey_id"`
	KEMRandom        hexBytes `json:"kem_encapsulation_random"` // m of ML-KEM.Encaps_internal
	KEMCiphertext    hexBytes `json:"kem_ciphertext"`
	KEMSharedSecret  hexBytes `json:"kem_shared_secret"`
	Info             string   `json:"info"`
	SK               hexBytes `json:"sk"`
	AD               hexBytes `json:"ad"`
	RatchetPrivate   hexBytes `json:"alice_initial_ratchet_private"`
}

// lastResortVector is a second session, to bob's last-resort KEM prekey
// and without a one-time prekey: its first message, and what bob drew
// when he accepted it (his first ratchet key).
type lastResortVector struct {
	pqxdhVector
	Plaintext hexBytes `json:"plaintext"`
	Payload   hexBytes `json:"payload"`
	BobRandom hexBytes `json:"bob_random"`
}

type ratchetStep struct {
	Op        string   `json:"op"` // "encrypt" or "decrypt"
	Party     string   `json:"party"`
	Random    hexBytes `json:"random"` // ratchet private key drawn by this step, if any
	Plaintext hexBytes `json:"plaintext"`
	Payload   hexBytes `json:"payload"`
}

type sframeRatchetVector struct {
	Suite   uint16   `json:"cipher_suite"`
	BaseKey hexBytes `json:"base_key"`
	Next    hexBytes `json:"next_base_key"`
}

type frameKeyVector struct {
	Suite       uint16   `json:"cipher_suite"`
	SenderIndex uint32   `json:"sender_index"`
	Generation  uint32   `json:"generation"`
	Step        uint8    `json:"ratchet_step"`
	BaseKey     hexBytes `json:"base_key"`
	KID         string   `json:"kid"`
	Encoded     hexBytes `json:"encoded"`
	Ack         hexBytes `json:"ack_encoded"`
}

type frameVector struct {
	Suite      uint16   `json:"cipher_suite"`
	BaseKey    hexBytes `json:"base_key"`
	KID        string   `json:"kid"`
	CTR        string   `json:"ctr"`
	SFrameKey  hexBytes `json:"sframe_key"`
	SFrameSalt hexBytes `json:"sframe_salt"`
	Plaintext  hexBytes `json:"plaintext"`
	Frame      hexBytes `json:"frame"`
}

type protocolVectors struct {
	Comment          string                `json:"comment"`
	Identities       []identityVector      `json:"identities"`
	SafetyNumber     string                `json:"safety_number"`
	SignedPrekey     prekeyVector          `json:"bob_signed_prekey"`
	OneTimePrekey    prekeyVector          `json:"bob_one_time_prekey"`
	KEMPrekey        kemPrekeyVector       `json:"bob_kem_prekey"`
	OneTimeKEMPrekey kemPrekeyVector       `json:"bob_one_time_kem_prekey"`
	PQXDH            pqxdhVector           `json:"pqxdh"`
	Ratchet          []ratchetStep         `json:"ratchet"`
	LastResort       lastResortVector      `json:"pqxdh_last_resort"`
	SFrameRatchet    []sframeRatchetVector `json:"sframe_ratchet"`
	FrameKeys        []frameKeyVector      `json:"frame_keys"`
	Frames           []frameVector         `json:"frames"`
}

// x25519BasePoint is the u-coordinate 9, little-endian (RFC 7748 §4.1).
var x25519BasePoint = append([]byte{9}, make([]byte, 31)...)

func dh(t *testing.T, priv, pub []byte) hexBytes {
	t.Helper()
	k, err := ecdh.X25519().NewPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	out, err := k.ECDH(p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func generateVectors(t *testing.T) protocolVectors {
	v := protocolVectors{Comment: "Sotto protocol v1 test vectors (docs/PROTOCOL.md). Byte strings are hex; kid and ctr are decimal strings. Regenerate: go test ./e2ee -run TestProtocolVectors -update"}

	// Identities.
	rnd := &drbg{label: "sotto test vectors"}
	ids := map[string]*Identity{}
	for _, name := range []string{"alice", "bob"} {
		id, err := NewIdentity(rnd)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = id
		priv, _ := id.MarshalBinary()
		pub := id.Public()
		v.Identities = append(v.Identities, identityVector{
			Name: name, Random: rnd.take(), Private: priv, SigPub: pub.b[:32], DHPub: pub.b[32:64],
			Public: pub.Bytes(), Fingerprint: pub.Fingerprint(), SafetyHalf: safetyHalf(pub),
		})
	}
	alice, bob := ids["alice"], ids["bob"]
	v.SafetyNumber = SafetyNumber(alice.Public(), bob.Public())

	// Bob's prekeys.
	store, err := NewPrekeyStore(bob, rnd)
	if err != nil {
		t.Fatal(err)
	}
	drawn := rnd.take() // 4 bytes of id base, 32 of signed prekey, 64 of KEM prekey seed
	spk := store.SignedPrekey()
	v.SignedPrekey = prekeyVector{ID: spk.ID, Private: drawn[4:36], Public: spk.Key, Signature: spk.Signature}
	lrk := store.KEMPrekey()
	v.KEMPrekey = kemPrekeyVector{ID: lrk.ID, Seed: drawn[36:100], Public: lrk.Key, Signature: lrk.Signature}
	opks, err := store.NewOneTimePrekeys(1)
	if err != nil {
		t.Fatal(err)
	}
	v.OneTimePrekey = prekeyVector{ID: opks[0].ID, Private: rnd.take(), Public: opks[0].Key}
	otks, err := store.NewOneTimeKEMPrekeys(1)
	if err != nil {
		t.Fatal(err)
	}
	v.OneTimeKEMPrekey = kemPrekeyVector{ID: otks[0].ID, Seed: rnd.take(), Public: otks[0].Key, Signature: otks[0].Signature}

	// PQXDH, to the one-time prekeys.
	bundle := PrekeyBundle{IdentityKey: bob.Public().Bytes(), SignedPrekey: spk, OneTimePrekey: &opks[0], KEMPrekey: lrk, OneTimeKEMPrekey: &otks[0]}
	aliceRnd := &drbg{label: "sotto test vectors: alice"}
	as, x := vectorSession(t, alice, bob, bundle, aliceRnd, "sotto test vectors: alice kem")
	v.PQXDH = x
	// Frame keys and their messages.
	senderRnd := &drbg{label: "sotto test vectors: frame sender"}
	fs, err := NewFrameSender(FrameSenderConfig{Random: senderRnd})
	if err != nil {
		t.Fatal(err)
	}
	addKey := func(k FrameKey) {
		enc, _ := k.MarshalBinary()
		ack, _ := k.Ack().MarshalBinary()
		v.FrameKeys = append(v.FrameKeys, frameKeyVector{
			Suite: uint16(k.suite), SenderIndex: k.senderIndex, Generation: k.generation, Step: k.step,
			BaseKey: k.baseKey, KID: strconv.FormatUint(k.KID(), 10), Encoded: enc, Ack: ack,
		})
	}
	addFrame := func(k FrameKey, ctr uint64, frame []byte, pt string) {
		p, _ := k.suite.params()
		secret, _ := hkdf.Extract(p.hash, k.baseKey, nil)
		key, _ := hkdf.Expand(p.hash, secret, sframeLabel("SFrame 1.0 Secret key ", k.KID(), k.suite), p.nk)
		salt, _ := hkdf.Expand(p.hash, secret, sframeLabel("SFrame 1.0 Secret salt ", k.KID(), k.suite), nonceSize)
		v.Frames = append(v.Frames, frameVector{
			Suite: uint16(k.suite), BaseKey: k.baseKey, KID: strconv.FormatUint(k.KID(), 10), CTR: strconv.FormatUint(ctr, 10),
			SFrameKey: key, SFrameSalt: salt, Plaintext: []byte(pt), Frame: frame,
		})
	}
	sealN := func(k FrameKey, from, n int) {
		for i := range n {
			pt := "opus frame " + strconv.Itoa(from+i)
			f, err := fs.Seal(nil, []byte(pt), t0)
			if err != nil {
				t.Fatal(err)
			}
			addFrame(k, uint64(i), f, pt)
		}
	}
	k0 := fs.Keys()[0]
	addKey(k0)
	sealN(k0, 0, 10) // counters 0..9: inline and one-byte CTR forms
	keys, err := fs.Advance()
	if err != nil {
		t.Fatal(err)
	}
	addKey(keys[0])
	v.SFrameRatchet = append(v.SFrameRatchet, sframeRatchetVector{Suite: uint16(k0.suite), BaseKey: k0.baseKey, Next: keys[0].baseKey})
	sealN(keys[0], 10, 2)
	k1, err := fs.Rekey(t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	addKey(k1)
	sealN(k1, 12, 2)
	base5 := make([]byte, 64)
	rnd.Read(base5)
	next5, _ := ratchetBaseKey(AES256GCMSHA512, base5)
	v.SFrameRatchet = append(v.SFrameRatchet, sframeRatchetVector{Suite: uint16(AES256GCMSHA512), BaseKey: rnd.take(), Next: next5})

	// Double Ratchet transcript carrying the frame-key messages.
	bobRnd := &drbg{label: "sotto test vectors: bob"}
	store.random = bobRnd
	var bs *Session
	step := func(op, party string, s *Session, r *drbg, pt []byte, payload []byte) []byte {
		var err error
		if op == "encrypt" {
			payload, err = s.Encrypt(pt)
		} else if s == nil {
			bs, pt, err = AcceptSession(store, payload, t0)
		} else {
			pt, err = s.Decrypt(payload, t0)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", party, op, err)
		}
		v.Ratchet = append(v.Ratchet, ratchetStep{Op: op, Party: party, Random: r.take(), Plaintext: pt, Payload: payload})
		return payload
	}
	msg0, _ := k0.MarshalBinary()
	msg1, _ := keys[0].MarshalBinary()
	ackMsg, _ := keys[0].Ack().MarshalBinary()
	m0 := step("encrypt", "alice", as, aliceRnd, msg0, nil)
	m1 := step("encrypt", "alice", as, aliceRnd, msg1, nil)
	step("decrypt", "bob", nil, bobRnd, nil, m0)
	step("decrypt", "bob", bs, bobRnd, nil, m1)
	b0 := step("encrypt", "bob", bs, bobRnd, ackMsg, nil)
	step("decrypt", "alice", as, aliceRnd, nil, b0)
	m2 := step("encrypt", "alice", as, aliceRnd, []byte("hello"), nil)
	m3 := step("encrypt", "alice", as, aliceRnd, []byte("out of order"), nil)
	step("decrypt", "bob", bs, bobRnd, nil, m3)
	step("decrypt", "bob", bs, bobRnd, nil, m2)

	// A second session, to the last-resort KEM prekey.
	bundle.OneTimePrekey, bundle.OneTimeKEMPrekey = nil, nil
	lr := lastResortVector{Plaintext: []byte("to the last-resort KEM prekey")}
	as2, x2 := vectorSession(t, alice, bob, bundle, &drbg{label: "sotto test vectors: alice last resort"}, "sotto test vectors: alice last resort kem")
	lr.pqxdhVector = x2
	if lr.Payload, err = as2.Encrypt(lr.Plaintext); err != nil {
		t.Fatal(err)
	}
	bs2, pt, err := AcceptSession(store, lr.Payload, t0)
	if err != nil || !bytes.Equal(pt, lr.Plaintext) || !bs2.LastResortKEM() {
		t.Fatalf("last-resort session: %q, %v", pt, err)
	}
	lr.BobRandom = bobRnd.take()
	v.LastResort = lr
	return v
}

// vectorSession starts alice's session to bundle with alice's random and
// a recorded KEM encapsulation randomness, and returns it with the values
// PQXDH computed.
func vectorSession(t *testing.T, alice, bob *Identity, bundle PrekeyBundle, aliceRnd *drbg, kemLabel string) (*Session, pqxdhVector) {
	t.Helper()
	m := make([]byte, 32)
	kemRnd := &drbg{label: kemLabel}
	kemRnd.Read(m)
	var ss, ct []byte
	as, err := initiateSession(aliceRnd, alice, bundle, func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) {
		var err error
		ss, ct, err = mlkemtest.Encapsulate768(ek, m)
		return bytes.Clone(ss), ct, err
	})
	if err != nil {
		t.Fatal(err)
	}
	drawn := aliceRnd.take()
	ek := drawn[:32]
	spk := bundle.SignedPrekey.Key
	x := pqxdhVector{
		EphemeralPrivate: ek, EphemeralPublic: dh(t, ek, x25519BasePoint), RatchetPrivate: drawn[32:64],
		DH1:         dh(t, alice.dhPriv.Bytes(), spk),
		DH2:         dh(t, ek, bob.pub.b[32:64]),
		DH3:         dh(t, ek, spk),
		KEMPrekeyID: bundle.KEMPrekey.ID, KEMRandom: m, KEMCiphertext: ct, KEMSharedSecret: ss,
		Info: pqxdhInfo, AD: as.ad[:],
	}
	ikm := append(bytes.Repeat([]byte{0xff}, 32), append(append(bytes.Clone(x.DH1), x.DH2...), x.DH3...)...)
	if bundle.OneTimePrekey != nil {
		x.DH4 = dh(t, ek, bundle.OneTimePrekey.Key)
		ikm = append(ikm, x.DH4...)
	}
	if bundle.OneTimeKEMPrekey != nil {
		x.KEMPrekeyID = bundle.OneTimeKEMPrekey.ID
	}
	x.SK, _ = hkdf.Key(sha256.New, append(ikm, ss...), make([]byte, 32), pqxdhInfo, 32)
	return as, x
}

// TestProtocolVectors regenerates the protocol vectors deterministically
// and requires them to equal the committed file byte for byte.
func TestProtocolVectors(t *testing.T) {
	checkVectorFile(t, vectorsPath, generateVectors(t))
}

func TestProtocolVectorsConsumer(t *testing.T) {
	var v protocolVectors
	readVectorFile(t, vectorsPath, &v)
	var pubs []PublicIdentity
	for _, iv := range v.Identities {
		id, err := ParseIdentity(iv.Private)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(id.Public().Bytes(), iv.Public) || !bytes.Equal(iv.Public, append(append(bytes.Clone(iv.SigPub), iv.DHPub...), iv.Public[64:]...)) {
			t.Fatalf("%s: public identity differs", iv.Name)
		}
		p, err := ParsePublicIdentity(iv.Public)
		if err != nil || p.Fingerprint() != iv.Fingerprint || safetyHalf(p) != iv.SafetyHalf {
			t.Fatalf("%s: fingerprint or safety half differs (%v)", iv.Name, err)
		}
		pubs = append(pubs, p)
	}
	if SafetyNumber(pubs[1], pubs[0]) != v.SafetyNumber {
		t.Fatal("safety number differs")
	}
	kemOf := func(k kemPrekeyVector) KEMPrekey { return KEMPrekey{ID: k.ID, Key: k.Public, Signature: k.Signature} }
	bundle := PrekeyBundle{
		IdentityKey:  pubs[1].Bytes(),
		SignedPrekey: SignedPrekey{ID: v.SignedPrekey.ID, Key: v.SignedPrekey.Public, Signature: v.SignedPrekey.Signature},
		KEMPrekey:    kemOf(v.KEMPrekey),
	}
	if _, err := verifyBundle(bundle); err != nil {
		t.Fatalf("signed prekey or KEM prekey: %v", err)
	}
	if !bytes.Equal(dh(t, v.PQXDH.EphemeralPrivate, x25519BasePoint), v.PQXDH.EphemeralPublic) {
		t.Fatal("ephemeral public key differs")
	}
	// KEM prekeys: the public key from the seed, the signature, and the
	// decapsulation of each session's ciphertext.
	seeds := map[uint32]*kemSeed{}
	for _, k := range []kemPrekeyVector{v.KEMPrekey, v.OneTimeKEMPrekey} {
		dk, err := mlkem.NewDecapsulationKey768(k.Seed)
		if err != nil || !bytes.Equal(dk.EncapsulationKey().Bytes(), k.Public) {
			t.Fatalf("KEM prekey %d: public key differs (%v)", k.ID, err)
		}
		if _, err := pubs[1].verifyKEMPrekey(kemOf(k)); err != nil {
			t.Fatalf("KEM prekey %d: %v", k.ID, err)
		}
		seeds[k.ID] = (*kemSeed)(bytes.Clone(k.Seed))
	}
	for _, x := range []pqxdhVector{v.PQXDH, v.LastResort.pqxdhVector} {
		ss, err := decapsulate(seeds[x.KEMPrekeyID], x.KEMCiphertext)
		if err != nil || !bytes.Equal(ss, x.KEMSharedSecret) {
			t.Fatalf("KEM prekey %d: decapsulation differs (%v)", x.KEMPrekeyID, err)
		}
		if x.Info != pqxdhInfo {
			t.Fatalf("info %q", x.Info)
		}
	}
	// Every frame opens with a receiver that got the frame keys, in order.
	r := NewFrameReceiver(FrameReceiverConfig{})
	for _, fk := range v.FrameKeys {
		k, err := ParseFrameKey(fk.Encoded)
		if err != nil {
			t.Fatal(err)
		}
		if strconv.FormatUint(k.KID(), 10) != fk.KID || !bytes.Equal(k.baseKey, fk.BaseKey) {
			t.Fatal("frame key fields differ")
		}
		if _, err := r.SetKey("sender", k, t0); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range v.Frames {
		pt, err := r.Open(nil, f.Frame, "sender", t0)
		if err != nil || !bytes.Equal(pt, f.Plaintext) {
			t.Fatalf("frame kid %s ctr %s: %q, %v", f.KID, f.CTR, pt, err)
		}
	}
	for _, sr := range v.SFrameRatchet {
		next, err := ratchetBaseKey(CipherSuite(sr.Suite), sr.BaseKey)
		if err != nil || !bytes.Equal(next, sr.Next) {
			t.Fatalf("SFrame ratchet suite %d differs", sr.Suite)
		}
	}
	// The ratchet transcript replays from the recorded keys: every
	// encryption reproduces its payload, every decryption its plaintext.
	alice, _ := ParseIdentity(v.Identities[0].Private)
	bob, _ := ParseIdentity(v.Identities[1].Private)
	spk, _ := ecdh.X25519().NewPrivateKey(v.SignedPrekey.Private)
	opk, _ := ecdh.X25519().NewPrivateKey(v.OneTimePrekey.Private)
	store := &PrekeyStore{
		identity: bob, signed: SignedPrekey{ID: v.SignedPrekey.ID}, signedPriv: spk,
		oneTime: map[uint32]*ecdh.PrivateKey{v.OneTimePrekey.ID: opk},
		kem:     KEMPrekey{ID: v.KEMPrekey.ID}, kemPriv: seeds[v.KEMPrekey.ID],
		oneTimeKEM: map[uint32]*kemSeed{v.OneTimeKEMPrekey.ID: seeds[v.OneTimeKEMPrekey.ID]},
		accepted:   map[uint32]map[[32]byte]bool{},
	}
	aliceRnd, bobRnd := &bytes.Buffer{}, &bytes.Buffer{}
	store.random = bobRnd
	aliceRnd.Write(v.PQXDH.EphemeralPrivate)
	aliceRnd.Write(v.PQXDH.RatchetPrivate)
	bundle.OneTimePrekey = &OneTimePrekey{ID: v.OneTimePrekey.ID, Key: v.OneTimePrekey.Public}
	otk := kemOf(v.OneTimeKEMPrekey)
	bundle.OneTimeKEMPrekey = &otk
	as, err := initiateSession(aliceRnd, alice, bundle, derandomized(v.PQXDH.KEMRandom))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(as.ad[:], v.PQXDH.AD) {
		t.Fatal("AD differs")
	}
	var bs *Session
	for i, st := range v.Ratchet {
		s, rnd := as, aliceRnd
		if st.Party == "bob" {
			s, rnd = bs, bobRnd
		}
		rnd.Write(st.Random)
		switch {
		case st.Op == "encrypt":
			p, err := s.Encrypt(st.Plaintext)
			if err != nil || !bytes.Equal(p, st.Payload) {
				t.Fatalf("step %d: %s's payload differs (%v)", i, st.Party, err)
			}
		case s == nil:
			var pt []byte
			bs, pt, err = AcceptSession(store, st.Payload, t0)
			if err != nil || !bytes.Equal(pt, st.Plaintext) {
				t.Fatalf("step %d: accept: %q, %v", i, pt, err)
			}
		default:
			pt, err := s.Decrypt(st.Payload, t0)
			if err != nil || !bytes.Equal(pt, st.Plaintext) {
				t.Fatalf("step %d: %s decrypts %q, %v", i, st.Party, pt, err)
			}
		}
		if rnd.Len() != 0 {
			t.Fatalf("step %d: %d recorded random bytes unused", i, rnd.Len())
		}
	}
	// The last-resort session: alice's first message byte for byte, and
	// bob accepts it with his last-resort KEM prekey.
	lr := v.LastResort
	aliceRnd.Write(lr.EphemeralPrivate)
	aliceRnd.Write(lr.RatchetPrivate)
	bundle.OneTimePrekey, bundle.OneTimeKEMPrekey = nil, nil
	as2, err := initiateSession(aliceRnd, alice, bundle, derandomized(lr.KEMRandom))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := as2.Encrypt(lr.Plaintext); err != nil || !bytes.Equal(p, lr.Payload) {
		t.Fatalf("last-resort session: payload differs (%v)", err)
	}
	bobRnd.Write(lr.BobRandom)
	bs2, pt, err := AcceptSession(store, lr.Payload, t0)
	if err != nil || !bytes.Equal(pt, lr.Plaintext) || !bs2.LastResortKEM() {
		t.Fatalf("last-resort session: accept %q, %v", pt, err)
	}
}

// derandomized is ML-KEM-768 encapsulation with the recorded randomness m.
func derandomized(m []byte) encapsulator {
	return func(ek *mlkem.EncapsulationKey768) ([]byte, []byte, error) { return mlkemtest.Encapsulate768(ek, m) }
}
