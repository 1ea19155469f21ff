package api

import (
	"encoding/json"
	"fmt"
)

// Version is the path prefix of every API route.
const Version = "/v1"

// ErrorCode is a stable, machine-readable error identifier. Clients may switch
// on it; the accompanying message is for people and may change.
type ErrorCode string

// Error codes returned in HTTP error bodies and WebSocket "error" events.
const (
	CodeUnauthorized       ErrorCode = "unauthorized"       // token missing or signature wrong
	CodeTokenExpired       ErrorCode = "token_expired"      // token past its expiry
	CodeWrongRoom          ErrorCode = "wrong_room"         // token minted for another room
	CodeInvalidName        ErrorCode = "invalid_name"       // room name or identity fails validation
	CodeInvalidJSON        ErrorCode = "invalid_json"       // body or message is not the expected JSON
	CodeBadRequest         ErrorCode = "bad_request"        // well-formed JSON with missing or invalid fields
	CodeMessageTooLarge    ErrorCode = "message_too_large"  // body or WebSocket message over the limit
	CodeInvalidSDP         ErrorCode = "invalid_sdp"        // SDP that cannot be parsed or applied
	CodeUnsupportedCodec   ErrorCode = "unsupported_codec"  // offer without Opus audio
	CodeRoomFull           ErrorCode = "room_full"          // participants-per-room limit reached
	CodeTooManyRooms       ErrorCode = "too_many_rooms"     // total rooms limit reached
	CodeNotFound           ErrorCode = "not_found"          // unknown route, room or participant
	CodeUnknownRecipient   ErrorCode = "unknown_recipient"  // envelope to a participant not in the room
	CodeEnvelopeTooLarge   ErrorCode = "envelope_too_large" // envelope payload over the limit
	CodeRecipientBusy      ErrorCode = "recipient_busy"     // recipient's queue is full; envelope not delivered
	CodeUnknownMessageType ErrorCode = "unknown_message_type"
	CodeNegotiation        ErrorCode = "negotiation_failed" // offer, answer or candidate could not be applied
	CodeOfferCollision     ErrorCode = "offer_collision"    // client offer crossed the server's: answer that, then offer again
	CodeRateLimited        ErrorCode = "rate_limited"
	CodeShuttingDown       ErrorCode = "shutting_down"
	CodeInternal           ErrorCode = "internal"
)

// CodeEnvelopeRateLimited refuses an envelope from a sender over its
// envelope rate (messages or bytes per second); it is not delivered.
const CodeEnvelopeRateLimited ErrorCode = "envelope_rate_limited"

// Codes of requests the server could not serve for its own reasons.
const (
	// CodeRetry (503, with Retry-After) is a join the server cannot take
	// now, e.g. out of file descriptors: the same request may succeed later.
	CodeRetry ErrorCode = "retry"
	// CodeRequestTimeout (408) is a body that did not arrive within the
	// server's body timeout; the connection is closed.
	CodeRequestTimeout ErrorCode = "request_timeout"
)

// CodeStoreUnavailable answers a request that needs the server's state
// store (status 503) while the store cannot be reached: creating, ending
// or joining a call, invites, the prekey directory. Retry with backoff;
// calls in progress are not affected.
const CodeStoreUnavailable ErrorCode = "store_unavailable"

// CodeWrongNode (409) answers a join, or an end, sent to a node of a
// cluster that does not run the room: Error.NodeURL is the base URL of the
// node that does. Send the same request there (and use that base URL for
// the event stream and leave); the token is valid on every node.
const CodeWrongNode ErrorCode = "wrong_node"

// CodeMethodNotAllowed answers a known route called with the wrong HTTP
// method (status 405).
const CodeMethodNotAllowed ErrorCode = "method_not_allowed"

// Error is the body of every non-2xx HTTP response:
//
//	{"error": {"code": "room_full", "message": "room \"x\" has 16 participants"}}
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
	// NodeURL comes with CodeWrongNode: the base URL of the node that
	// runs the room, such as "https://node2.sotto.example".
	NodeURL string `json:"node_url,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// ErrorBody wraps Error the way it appears in HTTP responses.
type ErrorBody struct {
	Error *Error `json:"error"`
}

// ICEServer is one STUN or TURN server, in the shape of the browser's
// RTCIceServer dictionary.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

// Participant names one participant of a room. ID is assigned by the server
// per join; Identity is the authenticated identity from the token; E2EE is
// the end-to-end encryption the participant declared when it joined
// (JoinRequest.E2EE), empty if none.
type Participant struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	E2EE     string `json:"e2ee,omitempty"`
}

// E2EESotto1 declares the end-to-end encryption of docs/PROTOCOL.md,
// version 1, which the Go SDK and the browser client implement. Audio of a
// participant that does not declare it cannot be heard by those that do:
// they drop every frame that is not SFrame under a key they were given.
const E2EESotto1 = "sotto-1"

// Encrypted reports whether p declared E2EESotto1: its audio is end-to-end
// encrypted in a way Sotto's clients can open. The server relays the
// declaration without checking it; the frames tell.
func (p Participant) Encrypted() bool { return p.E2EE == E2EESotto1 }

// JoinRequest is the body of POST /v1/rooms/{room}/join. The token travels in
// the Authorization header ("Bearer <token>").
type JoinRequest struct {
	SDP string `json:"sdp"` // the client's SDP offer
	// E2EE declares the end-to-end encryption the client implements, such
	// as E2EESotto1; empty declares none. The server relays it to the
	// others in Participant.E2EE without interpreting it: 1 to 32 of
	// a-z 0-9 . _ -.
	E2EE string `json:"e2ee,omitempty"`
	// Replaces, if set, names this identity's participant that the join
	// takes over on the same device (a rejoin after a lost connection): it
	// is closed with ReasonReplaced. Any other participant of the same
	// identity is closed with ReasonMovedToAnotherDevice.
	Replaces string `json:"replaces,omitempty"`
}

// JoinResponse answers a successful join.
type JoinResponse struct {
	ParticipantID string `json:"participant_id"`
	Identity      string `json:"identity"`
	Room          string `json:"room"`
	SDP           string `json:"sdp"`        // the server's SDP answer
	Session       string `json:"session"`    // secret that authenticates the event stream and leave
	EventsURL     string `json:"events_url"` // relative to NodeURL, if set, else to the server
	// NodeURL, in a cluster, is the base URL of the node that runs the
	// call (which may not be the address the join was sent to, such as a
	// load balancer's): the event stream, leave and prekey fetches go
	// there.
	NodeURL      string        `json:"node_url,omitempty"`
	ICEServers   []ICEServer   `json:"ice_servers"`
	Participants []Participant `json:"participants"` // others already in the room
}

// ICEServersResponse is the body of GET /v1/ice-servers.
type ICEServersResponse struct {
	ICEServers []ICEServer `json:"ice_servers"`
}

// ICECandidate is a trickled ICE candidate in the browser's
// RTCIceCandidateInit shape. An empty Candidate means end of candidates.
type ICECandidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// Message types on the event stream WebSocket. Each WebSocket text message
// is one JSON object whose "type" field is one of these.
const (
	// Server to client.
	TypeWelcome    = "welcome"     // Welcome: first message after connecting
	TypeJoined     = "joined"      // Joined: a participant entered the room
	TypeLeft       = "left"        // Left: a participant left or was dropped
	TypeSpeaking   = "speaking"    // Speaking: a participant started or stopped speaking
	TypeOffer      = "offer"       // SDP: renegotiation offer, both directions; reply with "answer"
	TypeError      = "error"       // ErrorEvent
	TypeClosed     = "closed"      // Closed: the server ends this participant's session
	TypePrekeysLow = "prekeys_low" // PrekeysLow: upload more one-time prekeys

	// Client to server.
	TypeLeave = "leave" // no fields

	// Both directions.
	TypeAnswer    = "answer"    // SDP: answer to the other side's offer
	TypeCandidate = "candidate" // Candidate
	TypeEnvelope  = "envelope"  // Envelope
)

// Message is the envelope of every event-stream message: the type plus the
// raw JSON object, decoded a second time into the type's struct.
type Message struct {
	Type string          `json:"type"`
	Raw  json.RawMessage `json:"-"`
}

// UnmarshalJSON reads the type and keeps the whole object for a second decode.
func (m *Message) UnmarshalJSON(b []byte) error {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return err
	}
	m.Type = head.Type
	m.Raw = append(m.Raw[:0], b...)
	return nil
}

// Welcome is sent once when the event stream connects.
type Welcome struct {
	Type          string        `json:"type"`
	ParticipantID string        `json:"participant_id"`
	Participants  []Participant `json:"participants"` // others in the room now
	// Door is who lets guests in (a Door* value).
	Door string `json:"door"`
	// Knocks are the guests waiting at the door now, for a participant who
	// may answer them (see Knock); absent for the others.
	Knocks []Knock `json:"knocks,omitempty"`
}

// Joined announces a participant that entered the room.
type Joined struct {
	Type        string      `json:"type"`
	Participant Participant `json:"participant"`
	// Replaces is the participant of the same identity this one took the
	// place of, announced just before as left (ReasonReplaced or
	// ReasonMovedToAnotherDevice); empty for a plain join.
	Replaces string `json:"replaces,omitempty"`
}

// Reasons a participant left, in Left.Reason and Closed.Reason.
const (
	ReasonLeft           = "left"            // the participant asked to leave
	ReasonDropped        = "dropped"         // event stream gone past the drop timeout, or too far behind
	ReasonConnectionLost = "connection_lost" // media ended while the event stream was gone
	ReasonICEFailed      = "ice_failed"      // media connection failed while the event stream was up
	ReasonTimeout        = "timeout"         // media silent and the event stream unresponsive: the caller froze or vanished
	ReasonShutdown       = "server_shutdown" // the server is stopping
	ReasonRoomEnded      = "room_ended"      // the room was ended for everyone
	ReasonReplaced       = "replaced"        // the same identity joined again from the same device (JoinRequest.Replaces)
	// ReasonMoved: another node of the cluster now runs the room (this
	// one lost its lease); rejoin, through any node, as after
	// ReasonShutdown.
	ReasonMoved = "room_moved"
	// ReasonMovedToAnotherDevice: the same identity joined from another
	// device, where the call goes on. It is final: a client told so must
	// not rejoin by itself, or the two devices would take the call from
	// each other in turn.
	ReasonMovedToAnotherDevice = "moved_to_another_device"
)

// Left announces a participant that is gone.
type Left struct {
	Type        string      `json:"type"`
	Participant Participant `json:"participant"`
	Reason      string      `json:"reason"`
}

// Speaking reports a change in a participant's voice activity, derived from
// the RFC 6464 audio level the participant's client attaches to its packets.
type Speaking struct {
	Type          string `json:"type"`
	ParticipantID string `json:"participant_id"`
	Speaking      bool   `json:"speaking"`
}

// SDP carries an offer or an answer on the event stream.
type SDP struct {
	Type string `json:"type"`
	SDP  string `json:"sdp"`
}

// Candidate carries one trickled ICE candidate.
type Candidate struct {
	Type      string       `json:"type"`
	Candidate ICECandidate `json:"candidate"`
}

// Envelope carries opaque bytes between two participants of one room. A
// client sets To; the server replaces it with From when delivering. Data is
// never parsed by the server. ID is an optional client-chosen number echoed
// in an error about this envelope.
type Envelope struct {
	Type string `json:"type"`
	To   string `json:"to,omitempty"`
	From string `json:"from,omitempty"`
	Data []byte `json:"data"` // base64 in JSON
	ID   uint64 `json:"id,omitempty"`
}

// ErrorEvent reports a problem with a message the client sent. The stream
// stays open unless a Closed follows.
type ErrorEvent struct {
	Type  string `json:"type"`
	Error Error  `json:"error"`
	Ref   uint64 `json:"ref,omitempty"` // Envelope.ID of the envelope concerned, if any
}

// Closed is the last message before the server closes the event stream.
// RetryAfterMs comes with ReasonShutdown: the server expects to be back
// (or another node to take over) after about this many milliseconds, when
// clients rejoin; 0 means at once.
type Closed struct {
	Type         string `json:"type"`
	Reason       string `json:"reason"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
	// By is the identity that ended the call, with ReasonRoomEnded.
	By string `json:"by,omitempty"`
	// At is when the call ended (unix seconds), with ReasonRoomEnded.
	At int64 `json:"at,omitempty"`
}

// PrekeysLow tells a device its one-time prekeys are running out.
type PrekeysLow struct {
	Type      string `json:"type"`
	Remaining int    `json:"remaining"`
	// RemainingKEM counts the one-time ML-KEM prekeys left; the event
	// comes when either kind runs low.
	RemainingKEM int `json:"remaining_kem"`
}

// SignedPrekey is a medium-term X25519 prekey of PQXDH with its signature
// by the identity key. The server stores it without interpreting it.
type SignedPrekey struct {
	ID        uint32 `json:"id"`
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// OneTimePrekey is a single-use X25519 prekey of PQXDH.
type OneTimePrekey struct {
	ID  uint32 `json:"id"`
	Key []byte `json:"key"`
}

// KEMPrekey is an ML-KEM-768 prekey of PQXDH, last-resort or one-time,
// with its signature by the identity key: Key is the 1184-byte
// encapsulation key, Signature 64 bytes (docs/PROTOCOL.md §2). The server
// stores it without interpreting it.
type KEMPrekey struct {
	ID        uint32 `json:"id"`
	Key       []byte `json:"key"`
	Signature []byte `json:"signature"`
}

// PrekeyUpload is the body of PUT /v1/prekeys: the uploading device's
// bundle. The identity it belongs to is the token's, never a field here.
// One-time prekeys (of both kinds) add to those already stored; a new
// identity key replaces the stored bundle whole. KEMPrekey is the
// last-resort KEM prekey, required: clients refuse bundles without one.
type PrekeyUpload struct {
	IdentityKey       []byte          `json:"identity_key"`
	SignedPrekey      SignedPrekey    `json:"signed_prekey"`
	OneTimePrekeys    []OneTimePrekey `json:"one_time_prekeys"`
	KEMPrekey         KEMPrekey       `json:"kem_prekey"`
	OneTimeKEMPrekeys []KEMPrekey     `json:"one_time_kem_prekeys"`
}

// PrekeyStatus answers an upload with the number of stored one-time prekeys.
type PrekeyStatus struct {
	Remaining    int `json:"remaining"`     // one-time X25519 prekeys stored
	RemainingKEM int `json:"remaining_kem"` // one-time ML-KEM-768 prekeys stored
}

// PrekeyBundle is the body of GET /v1/prekeys/{identity}. OneTimePrekey and
// OneTimeKEMPrekey are nil when the identity has none left (or the caller
// got one within the anti-draining window); each one is handed out once.
// KEMPrekey, the last-resort KEM prekey, is always there.
type PrekeyBundle struct {
	Identity         string         `json:"identity"`
	IdentityKey      []byte         `json:"identity_key"`
	SignedPrekey     SignedPrekey   `json:"signed_prekey"`
	OneTimePrekey    *OneTimePrekey `json:"one_time_prekey,omitempty"`
	KEMPrekey        KEMPrekey      `json:"kem_prekey"`
	OneTimeKEMPrekey *KEMPrekey     `json:"one_time_kem_prekey,omitempty"`
}

// Error codes of the private-call routes (POST /v1/calls, the invite routes
// and POST /v1/rooms/{room}/end).
const (
	CodeInviteInvalid ErrorCode = "invite_invalid" // invite malformed or not signed by this server
	CodeInviteExpired ErrorCode = "invite_expired" // invite past its expiry
	CodeCallEnded     ErrorCode = "call_ended"     // the call was ended by its creator
	CodeForbidden     ErrorCode = "forbidden"      // authenticated, but not allowed (only the creator ends a call)
)

// CreateCallRequest is the body of POST /v1/calls. Name is the creator's
// chosen name; the server appends a random suffix to make the identity.
type CreateCallRequest struct {
	Name string `json:"name"`
}

// CreateCallResponse answers POST /v1/calls: a new room with an
// unguessable name, the creator's token for it and an invite to share.
type CreateCallResponse struct {
	Room          string `json:"room"`
	Identity      string `json:"identity"`
	Token         string `json:"token"`
	Invite        string `json:"invite"`
	InviteExpires int64  `json:"invite_expires"` // unix seconds
}

// InviteRequest is the body of POST /v1/invites/inspect.
type InviteRequest struct {
	Invite string `json:"invite"`
}

// InviteInfo answers POST /v1/invites/inspect: who sent a valid invite and
// until when it can be redeemed. Inspecting changes nothing on the server.
type InviteInfo struct {
	Inviter string `json:"inviter"`
	Expires int64  `json:"expires"` // unix seconds
}

// RedeemInviteRequest is the body of POST /v1/invites/redeem.
type RedeemInviteRequest struct {
	Invite string `json:"invite"`
	Name   string `json:"name"`
}

// RedeemInviteResponse gives the invitee a token for the invite's room.
type RedeemInviteResponse struct {
	Room     string `json:"room"`
	Identity string `json:"identity"`
	Token    string `json:"token"`
	Inviter  string `json:"inviter"`
	// NodeURL, in a cluster, is the base URL of the node that runs the
	// room when it is not the node that answered: join there directly.
	NodeURL string `json:"node_url,omitempty"`
}

// Health is the body of GET /healthz.
type Health struct {
	// Status is "ok", or "degraded" while the state store does not
	// answer: calls in progress go on, what needs the store fails with
	// store_unavailable.
	Status string `json:"status"`
	// Store is the kind of state store: "memory", "file" or "redis".
	Store string `json:"store"`
	// StoreStatus is "ok" or "unavailable".
	StoreStatus string `json:"store_status"`
	// Node is this node's id and Nodes the live nodes it sees, itself
	// included; both only in cluster mode.
	Node  string `json:"node,omitempty"`
	Nodes int    `json:"nodes,omitempty"`
}

// Error codes of the blob routes (POST /v1/rooms/{room}/blobs and
// GET /v1/rooms/{room}/blobs/{id}), which store the encrypted files of a
// call.
const (
	CodeBlobTooLarge      ErrorCode = "blob_too_large"      // 413: the file is over the server's size cap
	CodeRoomQuotaExceeded ErrorCode = "room_quota_exceeded" // 507: the room's stored files would exceed its quota
	CodeBlobStorageFull   ErrorCode = "blob_storage_full"   // 507: the server stores all it may; try later
	CodeBlobNotFound      ErrorCode = "blob_not_found"      // 404: no such file in this room (expired, or of another room)
)

// BlobCreated answers POST /v1/rooms/{room}/blobs: the stored file's id,
// its size in bytes and when it will be deleted at the latest (unix
// seconds); it also goes when the room ends.
type BlobCreated struct {
	ID      string `json:"id"`
	Size    int64  `json:"size"`
	Expires int64  `json:"expires"`
}

// The door of a private call: who lets a guest with an invite in. A guest
// who redeems an invite knocks (RedeemInviteResponse does not come at
// once: see Knock) unless the door is DoorOpen.
const (
	DoorHost = "host" // the host (the invite's inviter) admits or refuses each guest; the default
	DoorCall = "call" // anyone in the call may admit or refuse a guest
	DoorOpen = "open" // anyone with the link comes in without knocking
)

// States of a Knock.
const (
	KnockPending   = "pending"   // waiting for an answer
	KnockAdmitted  = "admitted"  // let in: Token is set for the guest
	KnockRefused   = "refused"   // turned away by By
	KnockExpired   = "expired"   // nobody answered in time
	KnockWithdrawn = "withdrawn" // the guest gave up
	KnockEnded     = "ended"     // the call ended meanwhile
)

// Event-stream message types of the door (server to client).
const (
	// TypeKnock (KnockEvent) goes to the participants who may answer a
	// guest: when it knocks and when its knock is answered, expires or is
	// withdrawn.
	TypeKnock = "knock"
	// TypeDoor (DoorEvent) goes to every participant when the door
	// changes.
	TypeDoor = "door"
)

// Knock is a guest waiting at a call's door, as the guest sees it (the
// answer to POST /v1/invites/redeem, status 202, and to GET
// /v1/knocks/{id}) and as those who may answer see it (KnockEvent,
// Welcome.Knocks, without Secret and Token).
type Knock struct {
	ID       string `json:"id"`
	State    string `json:"state"`              // a Knock* value
	Name     string `json:"name"`               // the name the guest chose
	Identity string `json:"identity"`           // the identity the guest gets if admitted
	Inviter  string `json:"inviter"`            // the host: who sent the invite
	Room     string `json:"room"`               // the call
	Expires  int64  `json:"expires"`            // unix seconds: unanswered by then, it expires
	By       string `json:"by,omitempty"`       // who admitted or refused it
	Secret   string `json:"secret,omitempty"`   // the guest's proof for GET and DELETE /v1/knocks/{id}; only in the redeem answer
	Token    string `json:"token,omitempty"`    // the guest's room token, once admitted; only for the guest
	WaitURL  string `json:"wait_url,omitempty"` // path of GET /v1/knocks/{id}; only for the guest
}

// KnockEvent tells those who may answer about a knock.
type KnockEvent struct {
	Type  string `json:"type"`
	Knock Knock  `json:"knock"`
}

// DoorRequest is the body of PUT /v1/rooms/{room}/door and its answer.
type DoorRequest struct {
	Door string `json:"door"` // a Door* value
}

// DoorEvent announces a change of the door.
type DoorEvent struct {
	Type string `json:"type"`
	Door string `json:"door"`
	By   string `json:"by"` // the identity that changed it
}

// Error codes of the door.
const (
	// CodeKnockAnswered (409): the knock is not pending any more (answered,
	// expired, withdrawn); the body's message says which.
	CodeKnockAnswered ErrorCode = "knock_answered"
	// CodeTooManyKnocks (429): too many guests wait at this call's door,
	// or from this address, at once.
	CodeTooManyKnocks ErrorCode = "too_many_knocks"
)
