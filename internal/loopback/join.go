package loopback

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/sotto-voice/sotto/api"
)

// Offer creates pc's offer, applies it and waits for ICE gathering to
// complete, so that the SDP it returns carries every candidate, as the join
// API expects.
func Offer(ctx context.Context, pc *webrtc.PeerConnection) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("create offer: %w", err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("apply offer: %w", err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", fmt.Errorf("ICE gathering: %w", ctx.Err())
	}
	return pc.LocalDescription().SDP, nil
}

// Join joins room on the server at base (http://host:port) with token,
// offering pc, and applies the server's answer to pc. It declares no
// end-to-end encryption; see JoinDeclaring.
func Join(ctx context.Context, pc *webrtc.PeerConnection, base, room, token string) (api.JoinResponse, error) {
	return JoinDeclaring(ctx, pc, base, room, token, "")
}

// JoinDeclaring is Join declaring e2ee as the end-to-end encryption the
// peer implements (api.JoinRequest.E2EE).
func JoinDeclaring(ctx context.Context, pc *webrtc.PeerConnection, base, room, token, e2ee string) (api.JoinResponse, error) {
	sdp, err := Offer(ctx, pc)
	if err != nil {
		return api.JoinResponse{}, err
	}
	body, err := json.Marshal(api.JoinRequest{SDP: sdp, E2EE: e2ee})
	if err != nil {
		return api.JoinResponse{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/rooms/"+room+"/join", bytes.NewReader(body))
	if err != nil {
		return api.JoinResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return api.JoinResponse{}, fmt.Errorf("join %s: %w", room, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return api.JoinResponse{}, fmt.Errorf("join %s: %w", room, err)
	}
	if resp.StatusCode != http.StatusOK {
		return api.JoinResponse{}, fmt.Errorf("join %s: HTTP %d %s", room, resp.StatusCode, b)
	}
	var jr api.JoinResponse
	if err := json.Unmarshal(b, &jr); err != nil {
		return api.JoinResponse{}, fmt.Errorf("join %s: answer %q: %w", room, b, err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: jr.SDP}); err != nil {
		return api.JoinResponse{}, fmt.Errorf("apply answer: %w", err)
	}
	return jr, nil
}

// Events dials the event stream of the participant jr admitted on the
// server at base.
func Events(ctx context.Context, base string, jr api.JoinResponse) (*websocket.Conn, error) {
	u := "ws" + strings.TrimPrefix(base, "http") + jr.EventsURL + "?session=" + jr.Session
	conn, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		return nil, fmt.Errorf("dial events: %w", err)
	}
	return conn, nil
}

// AnswerOffers answers, with pc, every server offer that arrives on the
// event stream conn until the stream or ctx ends, as any client must for
// the relay's renegotiation to go on. Other messages are skipped.
func AnswerOffers(ctx context.Context, pc *webrtc.PeerConnection, conn *websocket.Conn) {
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var m api.SDP
		if json.Unmarshal(b, &m) != nil || m.Type != api.TypeOffer {
			continue
		}
		if pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}) != nil {
			continue
		}
		ans, err := pc.CreateAnswer(nil)
		if err != nil || pc.SetLocalDescription(ans) != nil {
			continue
		}
		out, _ := json.Marshal(api.SDP{Type: api.TypeAnswer, SDP: ans.SDP})
		_ = conn.Write(ctx, websocket.MessageText, out)
	}
}

// Talk writes frame on track every 20 ms, as a microphone would, until ctx
// ends.
func Talk(ctx context.Context, track *webrtc.TrackLocalStaticSample, frame []byte) {
	EveryFrame(ctx, func() { _ = track.WriteSample(media.Sample{Data: frame, Duration: FrameDuration}) })
}

// FrameDuration is the duration of one Opus frame as test callers send it.
const FrameDuration = 20 * time.Millisecond

// EveryFrame calls send every FrameDuration until ctx ends.
func EveryFrame(ctx context.Context, send func()) {
	tick := time.NewTicker(FrameDuration)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			send()
		}
	}
}
