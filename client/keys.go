package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/e2ee"
)

// This file is the key exchange of a call's end-to-end layer
// (docs/PROTOCOL.md §9): the prekey upload, one Double Ratchet session per
// participant through the envelope relay, and the frame keys that travel
// in them. One worker goroutine runs it in the order the event stream
// delivers events; frames.go seals and opens frames with the keys.

var (
	// ErrUnknownParticipant is returned for a participant ID that is not
	// in the call.
	ErrUnknownParticipant = errors.New("client: no such participant in the call")
	// ErrNoSession is returned for a participant whose identity key is not
	// known yet: its end-to-end session is still being set up.
	ErrNoSession = errors.New("client: no end-to-end session with the participant yet")
	// ErrIdentityNotAccepted is returned by SetVerified for a participant
	// whose changed identity key the application has not accepted.
	ErrIdentityNotAccepted = errors.New("client: the participant's changed identity key is not accepted")
	// ErrFingerprintMismatch is returned by AcceptIdentity when the
	// participant does not present the identity key of the fingerprint
	// given: it changed again, and its new key awaits a decision of its own.
	ErrFingerprintMismatch = errors.New("client: the participant presents another identity key than the one to accept")
	// ErrReservedEnvelope is returned by SendEnvelope for data that starts
	// like an end-to-end protocol message (docs/PROTOCOL.md §3), which
	// receivers would take for one.
	ErrReservedEnvelope = errors.New("client: envelope data starts with the end-to-end protocol's reserved bytes")
)

const (
	// prekeyBatch is how many one-time prekeys of each kind (X25519 and
	// ML-KEM-768) are uploaded at a time.
	prekeyBatch = 20
	// refillInterval coalesces the prekeys_low events of a burst of fetches
	// into one upload.
	refillInterval = time.Second
	// bundleFetches bounds the attempts to fetch a participant's prekey
	// bundle; bundleRetry is the first pause between them, doubling after
	// each. A participant that joined a moment before us may not have
	// published its bundle yet (a browser publishes it after joining).
	bundleFetches = 6
	bundleRetry   = 250 * time.Millisecond
	// maxHeld bounds the messages kept from a participant while its changed
	// identity key awaits the application's decision.
	maxHeld = 64
)

// e2eeState is the end-to-end state of one call.
type e2eeState struct {
	log      *slog.Logger
	sess     *session
	api      *apiClient
	token    string
	identity *e2ee.Identity
	public   e2ee.PublicIdentity
	store    *e2ee.PrekeyStore // worker only once the call is up
	sender   *e2ee.FrameSender
	receiver *e2ee.FrameReceiver
	trust    TrustStore
	keyLog   func(from api.Participant, key e2ee.FrameKey)

	mu       sync.Mutex
	remotes  map[string]*remote // by participant ID
	admitted map[string]bool    // present when we joined: we start their sessions

	opsMu sync.Mutex
	ops   []func(ctx context.Context)
	wake  chan struct{}

	lastRefill time.Time // worker only
	// chat numbers the messages between the caller and each participant
	// in this join (messages.go); worker only.
	chat map[string]*chatPeer

	encrypted atomic.Uint64
	decrypted atomic.Uint64
	// Sessions set up, by the KEM prekey their PQXDH used.
	sessionsOneTimeKEM    atomic.Uint64
	sessionsLastResortKEM atomic.Uint64
	rekeys                atomic.Uint64
	keysReceived          atomic.Uint64
	dropped               [len(dropReasons)]atomic.Uint64
}

// remote is what a call knows about another participant's end of the
// encryption.
type remote struct {
	p         api.Participant
	initiator bool          // we start the session (PQXDH)
	sess      *e2ee.Session // worker only
	fetches   int           // bundle fetches tried; worker only
	// held are the messages that arrived while the participant was
	// blocked, in order; worker only.
	held [][]byte

	// Guarded by e2eeState.mu.
	identity  e2ee.PublicIdentity // bound to p.Identity; zero until known
	announced bool                // PeerEncrypted sent

	// blocked: its changed identity key is not accepted, so its frames are
	// dropped, it gets no keys and its session is frozen. Written under
	// e2eeState.mu together with identity; read without it on the frame
	// path.
	blocked atomic.Bool
	keyed   atomic.Bool // at least one of its frame keys is installed

	muted     atomic.Bool // as it last said (mute.go)
	muteKnown atomic.Bool // it said so at least once
}

// newE2EE creates the end-to-end state of one join, for the identity, trust
// store and prekey store the call keeps across its joins, and publishes
// prekeys before the join so that participants joining later find them.
// Every join starts a fresh frame-key chain.
func newE2EE(ctx context.Context, a *apiClient, token string, opts *Options, store *e2ee.PrekeyStore, log *slog.Logger) (*e2eeState, error) {
	id, trust := opts.Identity, opts.TrustStore
	sender, err := e2ee.NewFrameSender(e2ee.FrameSenderConfig{})
	if err != nil {
		return nil, err
	}
	e := &e2eeState{
		log:      log,
		api:      a,
		token:    token,
		identity: id,
		public:   id.Public(),
		store:    store,
		sender:   sender,
		receiver: e2ee.NewFrameReceiver(e2ee.FrameReceiverConfig{}),
		trust:    trust,
		keyLog:   opts.keyLog,
		remotes:  make(map[string]*remote),
		admitted: make(map[string]bool),
		chat:     make(map[string]*chatPeer),
		wake:     make(chan struct{}, 1),
	}
	if err := e.uploadPrekeys(ctx); err != nil {
		sender.Close()
		return nil, err
	}
	return e, nil
}

// uploadPrekeys publishes the signed prekey, the last-resort KEM prekey and
// a batch of one-time prekeys of each kind.
func (e *e2eeState) uploadPrekeys(ctx context.Context) error {
	opks, err := e.store.NewOneTimePrekeys(prekeyBatch)
	if err != nil {
		return fmt.Errorf("create one-time prekeys: %w", err)
	}
	kems, err := e.store.NewOneTimeKEMPrekeys(prekeyBatch)
	if err != nil {
		return fmt.Errorf("create one-time KEM prekeys: %w", err)
	}
	spk := e.store.SignedPrekey()
	up := api.PrekeyUpload{
		IdentityKey:       e.public.Bytes(),
		SignedPrekey:      api.SignedPrekey{ID: spk.ID, Key: spk.Key, Signature: spk.Signature},
		OneTimePrekeys:    make([]api.OneTimePrekey, len(opks)),
		KEMPrekey:         apiKEMPrekey(e.store.KEMPrekey()),
		OneTimeKEMPrekeys: make([]api.KEMPrekey, len(kems)),
	}
	for i, k := range opks {
		up.OneTimePrekeys[i] = api.OneTimePrekey{ID: k.ID, Key: k.Key}
	}
	for i, k := range kems {
		up.OneTimeKEMPrekeys[i] = apiKEMPrekey(k)
	}
	var status api.PrekeyStatus
	if err := e.api.do(ctx, http.MethodPut, api.Version+"/prekeys", "Bearer "+e.token, up, &status); err != nil {
		return fmt.Errorf("upload prekeys: %w", err)
	}
	return nil
}

func apiKEMPrekey(k e2ee.KEMPrekey) api.KEMPrekey {
	return api.KEMPrekey{ID: k.ID, Key: k.Key, Signature: k.Signature}
}

// close zeroes the session's keys once it has ended and nothing uses them.
// The prekey store is the call's: it outlives the session, so that a peer
// that fetched its bundle before a rejoin can still start a session.
func (e *e2eeState) close() {
	e.sender.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.remotes {
		e.receiver.RemoveParticipant(id)
	}
}

// The worker: operations run one at a time, in the order they were queued.

func (e *e2eeState) queue(op func(ctx context.Context)) {
	e.opsMu.Lock()
	e.ops = append(e.ops, op)
	e.opsMu.Unlock()
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// run is the worker; it returns when ctx (the call) ends.
func (e *e2eeState) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.wake:
		}
		e.opsMu.Lock()
		ops := e.ops
		e.ops = nil
		e.opsMu.Unlock()
		for _, op := range ops {
			if ctx.Err() != nil {
				return
			}
			op(ctx)
		}
	}
}

// Entry points for the transport's events (via Call). They only queue
// work for the worker, except noteAdmitted, which runs during the join
// before any other.

func (e *e2eeState) noteAdmitted(present []api.Participant) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range present {
		e.admitted[p.ID] = true
	}
}

func (e *e2eeState) participantJoined(p api.Participant) {
	e.queue(func(ctx context.Context) { e.addRemote(ctx, p) })
}

func (e *e2eeState) participantLeft(p api.Participant) {
	e.queue(func(ctx context.Context) { e.removeRemote(ctx, p) })
}

func (e *e2eeState) envelopeReceived(from api.Participant, data []byte) {
	e.queue(func(ctx context.Context) { e.openEnvelope(ctx, from, data) })
}

func (e *e2eeState) prekeysLow() {
	e.queue(e.refill)
}

// resendKeys sends every participant our keys again: a frame-key message
// written to a lost event stream may never have left. The Double Ratchet
// decrypts past lost messages, and a key installed twice is acknowledged
// again.
func (e *e2eeState) resendKeys() {
	e.queue(func(ctx context.Context) {
		for _, r := range e.reachable() {
			e.sendKeys(ctx, r)
		}
	})
}

// remote returns what the call knows of participant id, or nil.
func (e *e2eeState) remote(id string) *remote {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.remotes[id]
}

// reachable returns the participants that get our keys now: those with a
// session and an accepted identity. Worker only.
func (e *e2eeState) reachable() []*remote {
	e.mu.Lock()
	defer e.mu.Unlock()
	var to []*remote
	for _, r := range e.remotes {
		if r.sess != nil && !r.blocked.Load() {
			to = append(to, r)
		}
	}
	return to
}

// addRemote starts the encryption with a participant: towards those
// present when we joined we start the session (they wait for us); for a
// newcomer our chain advances so that it cannot open what we sent before,
// and its session comes to us.
func (e *e2eeState) addRemote(ctx context.Context, p api.Participant) {
	if !p.Encrypted() {
		return // it has no prekeys to start a session with, nor use for our keys
	}
	e.mu.Lock()
	if e.remotes[p.ID] != nil {
		e.mu.Unlock()
		return
	}
	r := &remote{p: p, initiator: e.admitted[p.ID]}
	e.remotes[p.ID] = r
	e.mu.Unlock()
	if r.initiator {
		e.initiate(ctx, r)
		return
	}
	keys, err := e.sender.Advance()
	if errors.Is(err, e2ee.ErrChainExhausted) {
		e.rekey(ctx)
		return
	}
	if err != nil {
		e.log.Error("advance frame key", "err", err)
		return
	}
	e.rekeys.Add(1)
	for _, k := range keys {
		k.Destroy()
	}
}

// removeRemote forgets a participant's keys and starts a fresh chain that
// it never receives.
func (e *e2eeState) removeRemote(ctx context.Context, p api.Participant) {
	e.mu.Lock()
	r := e.remotes[p.ID]
	delete(e.remotes, p.ID)
	delete(e.admitted, p.ID)
	e.mu.Unlock()
	if r == nil {
		return
	}
	e.receiver.RemoveParticipant(p.ID)
	delete(e.chat, p.ID)
	e.rekey(ctx)
}

// rekey starts a fresh chain and sends it to every participant with a
// session; those whose session is still to come get it with Keys().
func (e *e2eeState) rekey(ctx context.Context) {
	to := e.reachable()
	ids := make([]string, len(to))
	for i, r := range to {
		ids[i] = r.p.ID
	}
	k, err := e.sender.Rekey(time.Now(), ids)
	if err != nil {
		e.log.Error("rekey frame key", "err", err)
		return
	}
	defer k.Destroy()
	e.rekeys.Add(1)
	pt, err := k.MarshalBinary()
	if err != nil {
		e.log.Error("encode frame key", "err", err)
		return
	}
	defer clear(pt)
	for _, r := range to {
		e.send(ctx, r, pt)
	}
}

// initiate runs PQXDH towards r with its published bundle, then sends our
// frame keys unless r's identity key changed. A bundle without a valid
// signed KEM prekey is refused (e2ee.ErrNoKEMPrekey): no session is set up
// without post-quantum protection.
func (e *e2eeState) initiate(ctx context.Context, r *remote) {
	var b api.PrekeyBundle
	path := api.Version + "/prekeys/" + url.PathEscape(r.p.Identity)
	if err := e.api.do(ctx, http.MethodGet, path, "Bearer "+e.token, nil, &b); err != nil {
		if r.fetches++; r.fetches < bundleFetches {
			delay := bundleRetry << (r.fetches - 1)
			e.log.Debug("fetch prekey bundle; will retry", "participant", r.p.ID, "peer", r.p.Identity, "in", delay, "err", err)
			time.AfterFunc(delay, func() { e.queue(func(ctx context.Context) { e.retryInitiate(ctx, r) }) })
			return
		}
		e.log.Warn("fetch prekey bundle; the participant's frames stay undecryptable", "participant", r.p.ID, "peer", r.p.Identity, "err", err)
		return
	}
	if b.Identity != r.p.Identity {
		e.log.Warn("prekey bundle for another identity", "participant", r.p.ID, "peer", r.p.Identity, "bundle", b.Identity)
		return
	}
	sess, err := e2ee.InitiateSession(nil, e.identity, bundleOf(b))
	if err != nil {
		e.log.Warn("start session", "participant", r.p.ID, "peer", r.p.Identity, "err", err)
		return
	}
	r.sess = sess
	e.countSession(sess)
	if e.bind(r, sess.PeerIdentity()) {
		e.sendKeys(ctx, r)
	}
}

// bundleOf converts a bundle from the directory for e2ee.
func bundleOf(b api.PrekeyBundle) e2ee.PrekeyBundle {
	bundle := e2ee.PrekeyBundle{
		IdentityKey:  b.IdentityKey,
		SignedPrekey: e2ee.SignedPrekey{ID: b.SignedPrekey.ID, Key: b.SignedPrekey.Key, Signature: b.SignedPrekey.Signature},
	}
	if b.OneTimePrekey != nil {
		bundle.OneTimePrekey = &e2ee.OneTimePrekey{ID: b.OneTimePrekey.ID, Key: b.OneTimePrekey.Key}
	}
	bundle.KEMPrekey = e2ee.KEMPrekey{ID: b.KEMPrekey.ID, Key: b.KEMPrekey.Key, Signature: b.KEMPrekey.Signature}
	if k := b.OneTimeKEMPrekey; k != nil {
		bundle.OneTimeKEMPrekey = &e2ee.KEMPrekey{ID: k.ID, Key: k.Key, Signature: k.Signature}
	}
	return bundle
}

// countSession counts a new session by the KEM prekey its PQXDH used.
func (e *e2eeState) countSession(s *e2ee.Session) {
	if s.LastResortKEM() {
		e.sessionsLastResortKEM.Add(1)
	} else {
		e.sessionsOneTimeKEM.Add(1)
	}
}

// retryInitiate fetches r's bundle again unless r left or its session
// started meanwhile (it may have initiated towards us).
func (e *e2eeState) retryInitiate(ctx context.Context, r *remote) {
	current := e.remote(r.p.ID) == r
	if current && r.sess == nil {
		e.initiate(ctx, r)
	}
}

// openEnvelope handles one end-to-end message from a participant.
func (e *e2eeState) openEnvelope(ctx context.Context, from api.Participant, data []byte) {
	r := e.remote(from.ID)
	if r == nil {
		e.log.Debug("end-to-end message from a participant not in the call", "participant", from.ID)
		return
	}
	// While the application decides on a changed identity key, nothing the
	// participant sends may replace the session that key belongs to (a
	// third key would then be accepted in its place): its messages wait,
	// in order, until that key is accepted.
	if r.blocked.Load() || len(r.held) > 0 {
		if len(r.held) >= maxHeld {
			e.log.Debug("drop end-to-end message of a participant awaiting acceptance", "participant", from.ID)
			return
		}
		r.held = append(r.held, data)
		return
	}
	now := time.Now()
	var pt []byte
	var err error
	fresh := r.sess == nil
	if !fresh {
		pt, err = r.sess.Decrypt(data, now)
		if errors.Is(err, e2ee.ErrOtherSession) {
			// The peer started a new session. When both sides started one
			// at once, the lower identity's session wins (PROTOCOL.md §4.2).
			if r.sess.Initiator() && e.public.Compare(r.sess.PeerIdentity()) < 0 {
				return
			}
			fresh = true
		} else if err != nil {
			e.log.Debug("drop end-to-end message", "participant", from.ID, "err", err)
			return
		}
	}
	if fresh {
		var sess *e2ee.Session
		sess, pt, err = e2ee.AcceptSession(e.store, data, now)
		if err != nil {
			e.log.Debug("drop session start", "participant", from.ID, "err", err)
			return
		}
		r.sess = sess
		e.countSession(sess)
	}
	defer clear(pt)
	allowed := !r.blocked.Load()
	if fresh {
		allowed = e.bind(r, r.sess.PeerIdentity())
	}
	e.content(ctx, r, pt)
	if fresh && allowed {
		e.sendKeys(ctx, r)
	}
}

// content handles one ratchet plaintext (PROTOCOL.md §5.4).
func (e *e2eeState) content(ctx context.Context, r *remote, pt []byte) {
	switch e2ee.ContentTypeOf(pt) {
	case e2ee.ContentFrameKey:
		k, err := e2ee.ParseFrameKey(pt)
		if err != nil {
			e.log.Debug("drop frame key", "participant", r.p.ID, "err", err)
			return
		}
		defer k.Destroy()
		ack, err := e.receiver.SetKey(r.p.ID, k, time.Now())
		if err != nil {
			e.log.Debug("refuse frame key", "participant", r.p.ID, "err", err)
			return
		}
		if e.keyLog != nil {
			e.keyLog(r.p, k)
		}
		e.keysReceived.Add(1)
		r.keyed.Store(true)
		b, err := ack.MarshalBinary()
		if err != nil {
			e.log.Error("encode frame key ack", "err", err)
			return
		}
		e.send(ctx, r, b)
		e.announce(r)
	case e2ee.ContentFrameKeyAck:
		ack, err := e2ee.ParseFrameKeyAck(pt)
		if err != nil {
			e.log.Debug("drop frame key ack", "participant", r.p.ID, "err", err)
			return
		}
		e.sender.Acknowledge(r.p.ID, ack)
	case e2ee.ContentMessage, e2ee.ContentReceipt:
		e.message(ctx, r, pt)
	case e2ee.ContentMuteState:
		e.muteStateReceived(r, pt)
	}
}

// announce sends PeerEncrypted once a participant's frames can be opened
// and its identity is accepted.
func (e *e2eeState) announce(r *remote) {
	if !r.keyed.Load() || r.blocked.Load() {
		return
	}
	e.mu.Lock()
	first := !r.announced
	r.announced = true
	e.mu.Unlock()
	if first {
		e.sess.event(PeerEncrypted{Participant: r.p})
	}
}

// bind checks the identity key a participant presents against the one
// remembered for its name: the first is trusted on first use; a different
// one blocks the participant and is reported. It returns whether the
// participant may get our keys.
func (e *e2eeState) bind(r *remote, id e2ee.PublicIdentity) bool {
	known, err := e.trust.Lookup(r.p.Identity)
	changed := err == nil && !known.Key.IsZero() && !known.Key.Equal(id)
	e.mu.Lock()
	r.identity = id
	// Unable to tell whether the key changed: withhold keys and frames.
	r.blocked.Store(err != nil || changed)
	e.mu.Unlock()
	switch {
	case err != nil:
		e.log.Error("trust store lookup", "peer", r.p.Identity, "err", err)
		return false
	case changed:
		e.sess.event(IdentityChanged{Participant: r.p, Old: known.Key.Fingerprint(), New: id.Fingerprint()})
		return false
	case known.Key.IsZero():
		if err := e.trust.Remember(r.p.Identity, TrustedIdentity{Key: id}); err != nil {
			e.log.Error("trust store remember", "peer", r.p.Identity, "err", err)
		}
	}
	return true
}

// sendKeys sends a participant what it needs to open our frames now,
// and whether we are muted.
func (e *e2eeState) sendKeys(ctx context.Context, r *remote) {
	for _, k := range e.sender.Keys() {
		pt, err := k.MarshalBinary()
		k.Destroy()
		if err != nil {
			e.log.Error("encode frame key", "err", err)
			return
		}
		e.send(ctx, r, pt)
		clear(pt)
	}
	e.sendMuteState(ctx, r)
}

// send encrypts a plaintext in r's session and relays it. Failures are
// logged; callers that report them to the application use the error.
func (e *e2eeState) send(ctx context.Context, r *remote, pt []byte) error {
	if r.sess == nil {
		return ErrNoSession
	}
	payload, err := r.sess.Encrypt(pt)
	if err != nil {
		e.log.Error("encrypt end-to-end message", "participant", r.p.ID, "err", err)
		return err
	}
	err = e.sess.conn.sendEnvelope(ctx, r.p.ID, payload)
	if err != nil && !errors.Is(err, ErrClosed) {
		e.log.Warn("send end-to-end message", "participant", r.p.ID, "err", err)
	}
	return err
}

// refill uploads more one-time prekeys of both kinds after the server said
// they run low.
func (e *e2eeState) refill(ctx context.Context) {
	if time.Since(e.lastRefill) < refillInterval {
		return
	}
	e.lastRefill = time.Now()
	if err := e.uploadPrekeys(ctx); err != nil {
		e.log.Warn("refill one-time prekeys", "err", err)
	}
}

// accept lets a participant with a changed identity key in, if the key it
// presents has the fingerprint the application accepts: the key is
// remembered for its name (unverified), the participant gets our keys, its
// frames are delivered and the messages held meanwhile are handled.
func (e *e2eeState) accept(participantID, fingerprint string) error {
	pk, err := e.peerKey(participantID)
	switch {
	case err != nil:
		return err
	case pk.key.Fingerprint() != fingerprint:
		return ErrFingerprintMismatch
	case !pk.blocked:
		return nil
	}
	// While blocked, nothing changes the participant's key: it is the one
	// just compared.
	if err := e.trust.Remember(pk.r.p.Identity, TrustedIdentity{Key: pk.key}); err != nil {
		return fmt.Errorf("client: accept identity of %s: %w", pk.r.p.Identity, err)
	}
	r := pk.r
	r.blocked.Store(false)
	e.queue(func(ctx context.Context) {
		if e.remote(r.p.ID) != r {
			return
		}
		e.sendKeys(ctx, r)
		e.announce(r)
		held := r.held
		r.held = nil
		for _, data := range held {
			e.openEnvelope(ctx, r.p, data)
		}
	})
	return nil
}

// peerKey is what a call knows of a participant's identity key at one
// instant.
type peerKey struct {
	r       *remote
	key     e2ee.PublicIdentity
	blocked bool
}

// peerKey returns the identity key bound to a participant, and whether it
// is blocked, read together.
func (e *e2eeState) peerKey(participantID string) (peerKey, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.remotes[participantID]
	if r == nil {
		return peerKey{}, ErrUnknownParticipant
	}
	if r.identity.IsZero() {
		return peerKey{}, ErrNoSession
	}
	return peerKey{r: r, key: r.identity, blocked: r.blocked.Load()}, nil
}
