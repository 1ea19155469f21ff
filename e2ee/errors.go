package e2ee

import "errors"

// Reasons a frame is dropped. FrameReceiver.Open returns one of them and
// counts it in FrameStats; see Open for what each means.
var (
	ErrMalformed   = errors.New("e2ee: malformed frame")
	ErrUnknownKID  = errors.New("e2ee: no key for frame KID")
	ErrAuthFailed  = errors.New("e2ee: frame authentication failed")
	ErrReplayed    = errors.New("e2ee: replayed frame")
	ErrKeyExpired  = errors.New("e2ee: frame key expired")
	ErrWrongSender = errors.New("e2ee: frame sealed under another participant's key")
	ErrAwaitingKey = errors.New("e2ee: the publisher's frame key has not arrived yet")
	ErrBeforeKey   = errors.New("e2ee: frame sealed before the publisher's first key to this receiver")
)

// Errors of identities, sessions and frame keys.
var (
	// ErrIdentityChanged reports that a peer presents a different identity
	// from the one known for it. Clients must show it, never accept it silently.
	ErrIdentityChanged = errors.New("e2ee: peer identity changed")
	// ErrBadSignature reports a public identity, signed prekey or KEM
	// prekey whose signature does not verify.
	ErrBadSignature = errors.New("e2ee: bad signature")
	// ErrInvalidMessage reports an envelope payload or plaintext content that
	// does not parse.
	ErrInvalidMessage = errors.New("e2ee: invalid message")
	// ErrDecrypt reports a ratchet message that does not authenticate.
	ErrDecrypt = errors.New("e2ee: message does not decrypt")
	// ErrTooManySkipped reports a ratchet message that would skip more than
	// MaxSkip message keys.
	ErrTooManySkipped = errors.New("e2ee: too many skipped messages")
	// ErrOtherSession reports a pqxdh-init payload that starts a different
	// session from this one; give it to AcceptSession.
	ErrOtherSession = errors.New("e2ee: message belongs to another session")
	// ErrUnknownPrekey reports a pqxdh-init naming a prekey the store does
	// not hold (never issued, retired, or a one-time prekey already used).
	ErrUnknownPrekey = errors.New("e2ee: unknown prekey")
	// ErrReplayedInit reports a pqxdh-init whose ephemeral key already
	// started a session: route it to that session instead.
	ErrReplayedInit = errors.New("e2ee: pqxdh-init already accepted")
	// ErrNoKEMPrekey reports a prekey bundle without a valid signed
	// ML-KEM-768 prekey (missing, malformed or badly signed). PQXDH needs
	// one: a session is never set up without post-quantum protection.
	ErrNoKEMPrekey = errors.New("e2ee: prekey bundle has no valid signed ML-KEM-768 prekey; refusing a session without post-quantum protection")
	// ErrSenderIndexInUse reports a frame key whose sender index another
	// participant already holds.
	ErrSenderIndexInUse = errors.New("e2ee: sender index held by another participant")
	// ErrStaleKey reports a frame key older than one already installed.
	ErrStaleKey = errors.New("e2ee: stale frame key")
	// ErrChainExhausted reports a chain at its last ratchet step; start a
	// fresh chain with Rekey instead.
	ErrChainExhausted = errors.New("e2ee: frame-key chain exhausted; rekey")
	// ErrClosed reports use of a closed FrameSender.
	ErrClosed = errors.New("e2ee: frame sender closed")
	// ErrUnknownSuite reports a cipher suite outside RFC 9605's registry.
	ErrUnknownSuite = errors.New("e2ee: unknown SFrame cipher suite")
	// ErrCounterExhausted reports a frame key that has sealed its maximum
	// number of frames.
	ErrCounterExhausted = errors.New("e2ee: frame counter exhausted; rekey")
)
