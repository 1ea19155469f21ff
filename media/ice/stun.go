package ice

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"net/netip"
)

// STUN (RFC 8489) constants this agent uses.
const (
	headerSize  = 20
	magicCookie = 0x2112A442

	typeBindingRequest = 0x0001
	typeBindingSuccess = 0x0101

	attrUsername         = 0x0006
	attrMessageIntegrity = 0x0008
	attrXORMappedAddress = 0x0020
	attrPriority         = 0x0024
	attrUseCandidate     = 0x0025
	attrFingerprint      = 0x8028
	attrICEControlling   = 0x802A

	integritySize   = sha1.Size
	fingerprintXOR  = 0x5354554e
	fingerprintSize = 4
)

// Errors ParseBindingRequest returns; the relay drops such packets and
// counts them.
var (
	ErrNotSTUN        = errors.New("ice: not a STUN message")
	ErrNotBinding     = errors.New("ice: not a Binding request")
	ErrMalformed      = errors.New("ice: malformed STUN attributes")
	ErrNoCredentials  = errors.New("ice: no USERNAME or MESSAGE-INTEGRITY")
	ErrBadFingerprint = errors.New("ice: FINGERPRINT mismatch")
)

// IsSTUN reports whether b looks like a STUN message: the first byte
// range RFC 7983 gives STUN, and the magic cookie.
func IsSTUN(b []byte) bool {
	return len(b) >= headerSize && b[0] < 4 && binary.BigEndian.Uint32(b[4:8]) == magicCookie
}

// Request is a parsed Binding request. Its byte slices point into the
// packet it was parsed from.
type Request struct {
	msg []byte
	// LocalUfrag and RemoteUfrag are the two halves of USERNAME
	// ("relay:client"): the ufrag of the description the relay gave the
	// client, and the client's own.
	LocalUfrag, RemoteUfrag []byte
	// UseCandidate is set when the controlling agent nominates the pair
	// this request came over.
	UseCandidate bool
	Priority     uint32
	Controlling  bool
	integrityAt  int // offset of the MESSAGE-INTEGRITY attribute
}

// ParseBindingRequest parses b, a STUN Binding request with ICE
// credentials, into r. A FINGERPRINT, if present, must match; the
// MESSAGE-INTEGRITY is checked by Request.Authentic once the caller knows
// which password applies.
func ParseBindingRequest(b []byte, r *Request) error {
	*r = Request{}
	if !IsSTUN(b) {
		return ErrNotSTUN
	}
	if binary.BigEndian.Uint16(b[0:2]) != typeBindingRequest {
		return ErrNotBinding
	}
	size := headerSize + int(binary.BigEndian.Uint16(b[2:4]))
	if size != len(b) || size%4 != 0 {
		return ErrMalformed
	}
	r.msg = b
	r.integrityAt = -1
	for off := headerSize; off < size; {
		if off+4 > size {
			return ErrMalformed
		}
		typ := binary.BigEndian.Uint16(b[off:])
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		val := off + 4
		next := val + (n+3)&^3
		if next > size {
			return ErrMalformed
		}
		v := b[val : val+n]
		switch typ {
		case attrUsername:
			if r.integrityAt >= 0 {
				break // after MESSAGE-INTEGRITY: ignored (RFC 8489 14.5)
			}
			local, remote, ok := bytes.Cut(v, []byte{':'})
			if !ok {
				return ErrMalformed
			}
			r.LocalUfrag, r.RemoteUfrag = local, remote
		case attrMessageIntegrity:
			if n != integritySize {
				return ErrMalformed
			}
			if r.integrityAt < 0 {
				r.integrityAt = off
			}
		case attrFingerprint:
			if n != fingerprintSize || next != size {
				return ErrMalformed
			}
			if binary.BigEndian.Uint32(v) != fingerprint(b[:off]) {
				return ErrBadFingerprint
			}
		case attrPriority:
			if n == 4 && r.integrityAt < 0 {
				r.Priority = binary.BigEndian.Uint32(v)
			}
		case attrUseCandidate:
			r.UseCandidate = r.UseCandidate || r.integrityAt < 0
		case attrICEControlling:
			r.Controlling = r.Controlling || r.integrityAt < 0
		}
		off = next
	}
	if r.LocalUfrag == nil || r.integrityAt < 0 {
		return ErrNoCredentials
	}
	return nil
}

// fingerprint is the FINGERPRINT value of a message whose bytes before the
// attribute are b (RFC 8489 section 14.7). The length field must already
// count the FINGERPRINT.
func fingerprint(b []byte) uint32 { return crc32.ChecksumIEEE(b) ^ fingerprintXOR }

// Integrity computes MESSAGE-INTEGRITY (HMAC-SHA1) with one password. It
// is not safe for concurrent use.
type Integrity struct {
	mac hash.Hash
	hdr [4]byte // the header's first bytes, as signed; a field so that it does not escape per call
	sum [sha1.Size]byte
}

// NewIntegrity returns the MESSAGE-INTEGRITY key of pwd, the short-term
// credential of ICE (RFC 8489 section 9.1.1: the password as it is).
func NewIntegrity(pwd string) *Integrity {
	return &Integrity{mac: hmac.New(sha1.New, []byte(pwd))}
}

// compute returns the HMAC of msg, the message up to a MESSAGE-INTEGRITY
// attribute at its end, with the header length covering that attribute.
func (k *Integrity) compute(msg []byte) []byte {
	copy(k.hdr[:], msg[:4])
	binary.BigEndian.PutUint16(k.hdr[2:], uint16(len(msg)+4+integritySize-headerSize))
	k.mac.Reset()
	k.mac.Write(k.hdr[:])
	k.mac.Write(msg[4:])
	return k.mac.Sum(k.sum[:0])
}

// Authentic reports whether the request's MESSAGE-INTEGRITY is the one
// key gives.
func (r *Request) Authentic(k *Integrity) bool {
	at := r.integrityAt
	want := r.msg[at+4 : at+4+integritySize]
	return hmac.Equal(k.compute(r.msg[:at]), want)
}

// AppendSuccess appends to dst the success response to r for a request
// that came from the transport address from: XOR-MAPPED-ADDRESS,
// MESSAGE-INTEGRITY with key, FINGERPRINT.
func (r *Request) AppendSuccess(dst []byte, from netip.AddrPort, k *Integrity) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	binary.BigEndian.PutUint16(dst[start:], typeBindingSuccess)
	dst = append(dst, r.msg[4:headerSize]...) // magic cookie, transaction ID

	// XOR-MAPPED-ADDRESS (RFC 8489 section 14.2).
	ip := from.Addr().Unmap()
	family, size := byte(1), 4
	if ip.Is6() {
		family, size = 2, 16
	}
	dst = binary.BigEndian.AppendUint16(dst, attrXORMappedAddress)
	dst = binary.BigEndian.AppendUint16(dst, uint16(4+size))
	dst = append(dst, 0, family)
	dst = binary.BigEndian.AppendUint16(dst, from.Port()^(magicCookie>>16))
	key := dst[start+4 : start+headerSize] // cookie, then transaction ID
	if ip.Is4() {
		a := ip.As4()
		for i := range a {
			dst = append(dst, a[i]^key[i])
		}
	} else {
		a := ip.As16()
		for i := range a {
			dst = append(dst, a[i]^key[i])
		}
	}

	mac := k.compute(dst[start:])
	dst = binary.BigEndian.AppendUint16(dst, attrMessageIntegrity)
	dst = binary.BigEndian.AppendUint16(dst, integritySize)
	dst = append(dst, mac...)

	binary.BigEndian.PutUint16(dst[start+2:], uint16(len(dst)-start-headerSize+4+fingerprintSize))
	fp := fingerprint(dst[start:])
	dst = binary.BigEndian.AppendUint16(dst, attrFingerprint)
	dst = binary.BigEndian.AppendUint16(dst, fingerprintSize)
	return binary.BigEndian.AppendUint32(dst, fp)
}
