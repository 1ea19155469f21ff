// Package client is Sotto's Go SDK: it joins a room through the signaling
// API, connects to the media relay with pion/webrtc, publishes Opus frames
// and delivers the frames of every other participant, end-to-end encrypted.
//
// Every call is encrypted; there is no option to turn it off. Joining
// uploads the device's prekeys (X25519 and ML-KEM-768), runs PQXDH and a
// Double Ratchet session with every other participant through the server's
// envelope relay, and exchanges per-sender frame keys. Key agreement is
// post-quantum for every session: a peer's bundle without a valid signed
// ML-KEM-768 prekey is refused, never used without it. Every published frame is sealed with
// SFrame (RFC 9605) before it leaves, every received one is opened before
// it reaches Call.Frames, and keys move on by themselves when someone joins
// or leaves (docs/PROTOCOL.md). Call.SafetyNumber and Call.SetVerified let
// people compare identities; an IdentityChanged event reports a peer whose
// identity key changed (since an earlier call too, with a trust store that
// persists, such as NewFileTrustStore), and its frames stay undelivered
// until the application accepts that key with Call.AcceptIdentity. Frames
// that fail to decrypt are dropped and counted in Call.Stats.
//
// A call starts with Join, which takes the server's URL and a room token
// (minted by the application's backend with the server's secret; the room
// and the caller's identity are read from it):
//
//	call, err := client.Join(ctx, "https://sotto.example", token, nil)
//	if err != nil {
//		return err // errors.As(err, new(*api.Error)) tells why the server refused
//	}
//	defer call.Leave()
//
// Then the application writes its encoded audio, one Opus frame at a time,
// and reads everyone else's from channels:
//
//	call.WriteFrameLevel(opusFrame, 20*time.Millisecond, client.AudioLevel{Level: 40, Voice: true})
//
//	for f := range call.Frames() {
//		decoder(f.From.ID).Decode(f.Data) // f.From.Identity says who spoke
//	}
//
// A call joined with Options.ListenOnly publishes nothing and hears
// everyone. Every call declares its encryption when it joins
// (api.E2EESotto1); a participant that declares none, a client on another
// stack without docs/PROTOCOL.md, cannot be heard: api.Participant.Encrypted
// is false for it, a PeerNotEncrypted event says so, and its frames are
// dropped and counted (DropNotEncrypted).
//
// Participants send each other messages end to end in the same sessions:
// Call.SendMessage (or SendMessageTo one participant) and Call.Messages,
// which names each sender's identity and whether its key is verified;
// MessageDelivered events carry each recipient's encrypted receipt.
// Call.SendFile encrypts a file from an io.Reader and stores only its
// ciphertext on the server; a recipient gets it with Call.ReceiveFile into
// an io.Writer, checked chunk by chunk.
//
// A private call (CreateCall) has a door: a guest with its invite knocks
// (Knock) and gets a token once the host admits it; the host's call
// reports each knock (GuestKnock) and answers it (Call.Admit, Call.Refuse,
// Call.SetDoor). One device at a time: joining with the same identity from
// another device moves the call there, the first device's call ends with
// ErrMovedToAnotherDevice (and does not rejoin) and the others see
// DeviceSwitched. Call.SetMuted tells the others, end to end, that the
// caller is muted (MuteChanged).
//
// Call.Events reports who joins, leaves and speaks; Call.SendEnvelope and
// Call.Envelopes carry opaque messages between participants through the
// server. The channels are buffered and never block the connection: when
// the application falls behind, items are dropped and counted (Call.Stats).
// Call.Done and Call.Err tell when and why a call ended.
//
// A call survives what it can: a dropped event stream is reconnected; a
// failed media path (the network changed) is restarted with an ICE restart
// through the event stream, the same PeerConnection and keys; and when the
// server loses the call (it crashed, restarted, was redeployed or dropped
// the caller), the call joins the room again by itself with its token, for
// up to Options.ResumeWindow, with new media and new end-to-end sessions
// with everyone. The application keeps its one Call and sees Reconnecting
// and Reconnected events; participants it knew keep their IDs (see
// Call.ID); the caller's mute state and messages go on, and a rejoin names
// the join it replaces, so that the others do not take it for a switch of
// devices. The call ends only when leaving, when the window runs out, the
// token expires, the server refuses the room for good (ended, 410) or the
// call moved to another device.
//
// Under the Call, an unexported transport speaks the API (docs/API.md): an
// HTTP join carrying a complete SDP offer, the WebSocket event stream with
// server-initiated renegotiation (reconnected if it drops), and one
// PeerConnection that sends one audio track and receives one per other
// participant, named by the publisher's participant ID.
package client
