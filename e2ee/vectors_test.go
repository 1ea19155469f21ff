package e2ee

import (
	"bytes"
	"crypto/ecdh"
	"crypto/hkdf"
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

type x3dhVector struct {
	EphemeralPrivate hexBytes `json:"alice_ephemeral_private"`
	EphemeralPublic  hexBytes `json:"alice_ephemeral_public"`
	DH1              hexBytes `json:"dh1"`
	DH2              hexBytes `json:"dh2"`
	DH3              hexBytes `json:"dh3"`
	DH4              hexBytes `json:"dh4"`
	SK               hexBytes `json:"sk"`
	AD               hexBytes `json:"ad"`
	RatchetPrivate   hexBytes `json:"alice_initial_ratchet_private"`
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
	Comment       string                `json:"comment"`
	Identities    []identityVector      `json:"identities"`
	SafetyNumber  string                `json:"safety_number"`
	SignedPrekey  prekeyVector          `json:"bob_signed_prekey"`
	OneTimePrekey prekeyVector          `json:"bob_one_time_prekey"`
	X3DH          x3dhVector            `json:"x3dh"`
	Ratchet       []ratchetStep         `json:"ratchet"`
	SFrameRatchet []sframeRatchetVector `json:"sframe_ratchet"`
	FrameKeys     []frameKeyVector      `json:"frame_keys"`
	Frames        []frameVector         `json:"frames"`
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
	drawn := rnd.take() // 4 bytes of id base, 32 of signed prekey
	spk := store.SignedPrekey()
	v.SignedPrekey = prekeyVector{ID: spk.ID, Private: drawn[4:36], Public: spk.Key, Signature: spk.Signature}
	opks, err := store.NewOneTimePrekeys(1)
	if err != nil {
		t.Fatal(err)
	}
	v.OneTimePrekey = prekeyVector{ID: opks[0].ID, Private: rnd.take(), Public: opks[0].Key}

	// X3DH.
	bundle := PrekeyBundle{IdentityKey: bob.Public().Bytes(), SignedPrekey: spk, OneTimePrekey: &opks[0]}
	aliceRnd := &drbg{label: "sotto test vectors: alice"}
	as, err := InitiateSession(aliceRnd, alice, bundle)
	if err != nil {
		t.Fatal(err)
	}
	drawn = aliceRnd.take()
	ek := drawn[:32]
	ekPub := dh(t, ek, x25519BasePoint)
	x := x3dhVector{
		EphemeralPrivate: ek, EphemeralPublic: ekPub, RatchetPrivate: drawn[32:64],
		DH1: dh(t, alice.dhPriv.Bytes(), spk.Key),
		DH2: dh(t, ek, bob.pub.b[32:64]),
		DH3: dh(t, ek, spk.Key),
		DH4: dh(t, ek, opks[0].Key),
		AD:  as.ad[:],
	}
	ikm := append(bytes.Repeat([]byte{0xff}, 32), append(append(append(append([]byte{}, x.DH1...), x.DH2...), x.DH3...), x.DH4...)...)
	sk, _ := hkdf.Key(sha256.New, ikm, make([]byte, 32), x3dhInfo, 32)
	x.SK = sk
	v.X3DH = x

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
	return v
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
	bundle := PrekeyBundle{IdentityKey: pubs[1].Bytes(), SignedPrekey: SignedPrekey{ID: v.SignedPrekey.ID, Key: v.SignedPrekey.Public, Signature: v.SignedPrekey.Signature}}
	if _, _, _, err := verifyBundle(bundle); err != nil {
		t.Fatalf("signed prekey: %v", err)
	}
	if !bytes.Equal(dh(t, v.X3DH.EphemeralPrivate, x25519BasePoint), v.X3DH.EphemeralPublic) {
		t.Fatal("ephemeral public key differs")
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
	store := &PrekeyStore{identity: bob, signed: SignedPrekey{ID: v.SignedPrekey.ID}, signedPriv: spk, oneTime: map[uint32]*ecdh.PrivateKey{v.OneTimePrekey.ID: opk}, accepted: map[uint32]map[[32]byte]bool{}}
	aliceRnd, bobRnd := &bytes.Buffer{}, &bytes.Buffer{}
	store.random = bobRnd
	aliceRnd.Write(v.X3DH.EphemeralPrivate)
	aliceRnd.Write(v.X3DH.RatchetPrivate)
	bundle.OneTimePrekey = &OneTimePrekey{ID: v.OneTimePrekey.ID, Key: v.OneTimePrekey.Public}
	as, err := InitiateSession(aliceRnd, alice, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(as.ad[:], v.X3DH.AD) {
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
}
