package loopback

import (
	"net"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// SettingEngine gathers only loopback host candidates on the given network
// types (UDP4 when none are given), without mDNS obfuscation.
func SettingEngine(networks ...webrtc.NetworkType) webrtc.SettingEngine {
	if len(networks) == 0 {
		networks = []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	}
	se := webrtc.SettingEngine{}
	se.SetNetworkTypes(networks)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return se
}

// API is a pion API with me's codecs and SettingEngine's candidates.
func API(me *webrtc.MediaEngine, networks ...webrtc.NetworkType) *webrtc.API {
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithSettingEngine(SettingEngine(networks...)))
}

// NewPeerConnection is a PeerConnection with pion's default codecs, Opus
// among them, on loopback UDP.
func NewPeerConnection() (*webrtc.PeerConnection, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	return API(me).NewPeerConnection(webrtc.Configuration{})
}
