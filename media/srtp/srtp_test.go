package srtp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	pionsrtp "github.com/pion/srtp/v3"
)

var profiles = map[Profile]pionsrtp.ProtectionProfile{
	AEADAES128GCM:       pionsrtp.ProtectionProfileAeadAes128Gcm,
	AES128CMHMACSHA1_80: pionsrtp.ProtectionProfileAes128CmHmacSha1_80,
}

// pair keys one of ours and one of pion's with the same fresh master key
// and salt.
func pair(t testing.TB, p Profile) (*Context, *pionsrtp.Context) {
	t.Helper()
	key, salt := make([]byte, p.KeyLen()), make([]byte, p.SaltLen())
	rand.Read(key)
	rand.Read(salt)
	ours, err := NewContext(p, key, salt)
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := pionsrtp.CreateContext(key, salt, profiles[p])
	if err != nil {
		t.Fatal(err)
	}
	return ours, theirs
}

// rtpPacket is packet seq of a stream, with an audio-level extension and
// a CSRC so that the header is more than the fixed 12 bytes.
func rtpPacket(t testing.TB, seq uint16) (pkt []byte, hdrLen int) {
	t.Helper()
	h := rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: uint32(seq) * 960, SSRC: 0x1234abcd, CSRC: []uint32{9}}
	if err := h.SetExtension(1, []byte{0x2a}); err != nil {
		t.Fatal(err)
	}
	p := rtp.Packet{Header: h, Payload: fmt.Appendf(nil, "opus frame %d", seq)}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, h.MarshalSize()
}

// TestRTPAgainstPion: both ways, through wraparounds of the sequence
// number, each side opens what the other sealed, and gets the packet.
func TestRTPAgainstPion(t *testing.T) {
	for p := range profiles {
		t.Run(fmt.Sprintf("profile=%#04x", uint16(p)), func(t *testing.T) {
			sealer, pionOpener := pair(t, p)
			opener, pionSealer := pair(t, p)
			var out, in Stream
			buf := make([]byte, 1500)
			for k := 0; k < 140000; k += 7 { // from 60000: three wraparounds
				plain, hdrLen := rtpPacket(t, uint16(60000+k))
				n := copy(buf, plain)
				m, err := sealer.SealRTP(buf, n, hdrLen, &out)
				if err != nil {
					t.Fatal(err)
				}
				got, err := pionOpener.DecryptRTP(nil, buf[:m], nil)
				if err != nil || !bytes.Equal(got, plain) {
					t.Fatalf("packet %d: pion opened %x, %v", k, got, err)
				}
				enc, err := pionSealer.EncryptRTP(nil, plain, nil)
				if err != nil {
					t.Fatal(err)
				}
				n, err = opener.OpenRTP(enc, hdrLen, &in)
				if err != nil || !bytes.Equal(enc[:n], plain) {
					t.Fatalf("packet %d: opened %x, %v", k, enc[:n], err)
				}
			}
			if out.roc != 3 || in.roc != 3 {
				t.Errorf("rollover counters %d and %d after three wraparounds", out.roc, in.roc)
			}
		})
	}
}

// TestSequenceJumps: a sender that jumps far ahead before its first
// wraparound, then goes on from where it was, is followed as pion's sender
// counts (the jump keeps the rollover counter, the return is past it).
func TestSequenceJumps(t *testing.T) {
	for p := range profiles {
		opener, pionSealer := pair(t, p)
		var in Stream
		for _, seq := range []uint16{1000, 1001, 60000, 60001, 1002, 1003} {
			plain, hdrLen := rtpPacket(t, seq)
			enc, err := pionSealer.EncryptRTP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := opener.OpenRTP(enc, hdrLen, &in); err != nil || !bytes.Equal(enc[:n], plain) {
				t.Fatalf("%#04x: packet %d: %v", uint16(p), seq, err)
			}
		}
	}
}

// TestRTPRefusals: a replayed packet, one older than the window, one
// tampered with, one too short, are refused; a late one within the window
// (a repair) is taken once.
func TestRTPRefusals(t *testing.T) {
	for p := range profiles {
		sealer, _ := pair(t, p)
		var out Stream
		seal := func(seq uint16) []byte {
			plain, hdrLen := rtpPacket(t, seq)
			buf := make([]byte, 1500)
			n := copy(buf, plain)
			m, err := sealer.SealRTP(buf, n, hdrLen, &out)
			if err != nil {
				t.Fatal(err)
			}
			return buf[:m]
		}
		_, hdrLen := rtpPacket(t, 0)
		packets := map[uint16][]byte{}
		for seq := uint16(100); seq < 300; seq++ {
			packets[seq] = seal(seq)
		}
		// The sealer's own context opens what it sealed: the keys are one
		// direction's, and the streams' states are separate.
		opener := sealer
		var in Stream
		open := func(seq uint16) error {
			_, err := opener.OpenRTP(append([]byte(nil), packets[seq]...), hdrLen, &in)
			return err
		}
		for seq := uint16(100); seq < 300; seq++ {
			if seq == 250 {
				continue // lost, repaired later
			}
			if err := open(seq); err != nil {
				t.Fatalf("%#04x: packet %d: %v", uint16(p), seq, err)
			}
		}
		for name, tc := range map[string]struct {
			seq  uint16
			want error
		}{"replayed": {299, ErrReplayed}, "too old": {200, ErrReplayed}} {
			if err := open(tc.seq); !errors.Is(err, tc.want) {
				t.Errorf("%#04x %s: %v, want %v", uint16(p), name, err, tc.want)
			}
		}
		if err := open(250); err != nil {
			t.Errorf("%#04x: a late packet within the window: %v", uint16(p), err)
		}
		if err := open(250); !errors.Is(err, ErrReplayed) {
			t.Errorf("%#04x: the late packet again: %v", uint16(p), err)
		}
		bad := seal(300)
		bad[len(bad)-1] ^= 1
		if _, err := opener.OpenRTP(bad, hdrLen, &in); !errors.Is(err, ErrAuth) {
			t.Errorf("%#04x tampered: %v", uint16(p), err)
		}
		if _, err := opener.OpenRTP(bad[:hdrLen], hdrLen, &in); !errors.Is(err, ErrShort) {
			t.Errorf("%#04x short: %v", uint16(p), err)
		}
		if _, err := sealer.SealRTP(make([]byte, 20), 20, 12, &out); !errors.Is(err, ErrRoom) {
			t.Errorf("%#04x no room: %v", uint16(p), err)
		}
	}
}

// TestRTCPAgainstPion: compound RTCP both ways; a replay is refused.
func TestRTCPAgainstPion(t *testing.T) {
	for p := range profiles {
		sealer, pionOpener := pair(t, p)
		opener, pionSealer := pair(t, p)
		plain, err := rtcp.Marshal([]rtcp.Packet{
			&rtcp.ReceiverReport{SSRC: 7, Reports: []rtcp.ReceptionReport{{SSRC: 9, LastSequenceNumber: 1234}}},
			&rtcp.TransportLayerNack{SenderSSRC: 7, MediaSSRC: 9, Nacks: []rtcp.NackPair{{PacketID: 5}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		for k := range 3 {
			n := copy(buf, plain)
			m, err := sealer.SealRTCP(buf, n)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pionOpener.DecryptRTCP(nil, buf[:m], nil)
			if err != nil || !bytes.Equal(got, plain) {
				t.Fatalf("%#04x packet %d: pion opened %x, %v", uint16(p), k, got, err)
			}
			enc, err := pionSealer.EncryptRTCP(nil, plain, nil)
			if err != nil {
				t.Fatal(err)
			}
			again := append([]byte(nil), enc...)
			n, err = opener.OpenRTCP(enc)
			if err != nil || !bytes.Equal(enc[:n], plain) {
				t.Fatalf("%#04x packet %d: opened %x, %v", uint16(p), k, enc[:n], err)
			}
			if _, err := opener.OpenRTCP(again); !errors.Is(err, ErrReplayed) {
				t.Errorf("%#04x replayed RTCP: %v", uint16(p), err)
			}
		}
		enc, _ := pionSealer.EncryptRTCP(nil, plain, nil)
		enc[10] ^= 1
		if _, err := opener.OpenRTCP(enc); !errors.Is(err, ErrAuth) {
			t.Errorf("%#04x tampered RTCP: %v", uint16(p), err)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	for p := range profiles {
		c, _ := pair(t, p)
		plain, hdrLen := rtpPacket(t, 1)
		report, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 7}})
		buf := make([]byte, 1500)
		var out, in Stream
		seq := uint16(0)
		if allocs := testing.AllocsPerRun(200, func() {
			seq++
			n := copy(buf, plain)
			buf[2], buf[3] = byte(seq>>8), byte(seq)
			m, err := c.SealRTP(buf, n, hdrLen, &out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.OpenRTP(buf[:m], hdrLen, &in); err != nil {
				t.Fatal(err)
			}
			n = copy(buf, report)
			if m, err = c.SealRTCP(buf, n); err != nil {
				t.Fatal(err)
			}
			if _, err := c.OpenRTCP(buf[:m]); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("%#04x: %v allocations per round", uint16(p), allocs)
		}
	}
}

func TestNewContextRefuses(t *testing.T) {
	if _, err := NewContext(0x0008, make([]byte, 32), make([]byte, 12)); err == nil {
		t.Error("AES-256 GCM accepted")
	}
	if _, err := NewContext(AEADAES128GCM, make([]byte, 16), make([]byte, 14)); err == nil {
		t.Error("a GCM salt of 14 bytes accepted")
	}
}

// BenchmarkSealRTP compares sealing a 100-byte Opus packet with pion/srtp.
func BenchmarkSealRTP(b *testing.B) {
	for p := range profiles {
		ours, theirs := pair(b, p)
		plain, hdrLen := rtpPacket(b, 1)
		buf := make([]byte, 1500)
		b.Run(fmt.Sprintf("profile=%#04x/sotto", uint16(p)), func(b *testing.B) {
			var s Stream
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				n := copy(buf, plain)
				buf[3] = byte(i)
				if _, err := ours.SealRTP(buf, n, hdrLen, &s); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("profile=%#04x/pion", uint16(p)), func(b *testing.B) {
			var h rtp.Header
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				n := copy(buf, plain)
				buf[3] = byte(i)
				if _, err := theirs.EncryptRTP(buf[:n], buf[:n], &h); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
