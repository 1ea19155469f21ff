// Package client is Sotto's Go SDK: it joins a room through the signaling
// API, connects to the media relay with pion/webrtc, publishes Opus frames
// and delivers the frames of every other participant.
package client
