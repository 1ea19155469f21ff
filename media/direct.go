package media

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/rtp"

	"github.com/sotto-voice/sotto/api"
	mediaice "github.com/sotto-voice/sotto/media/ice"
	"github.com/sotto-voice/sotto/media/transport"
)

// PathDirect: the engine, peers and negotiation on the relay's own
// transport. The forwarding itself is in relay.go.

// startDirect binds the transport and lists the relay's candidates.
func (e *Engine) startDirect(ip net.IP) (*Engine, error) {
	tr, err := transport.Listen(transport.Config{
		IP:                ip,
		UDPPort:           e.cfg.UDPPort,
		TCPPort:           e.cfg.TCPPort,
		Logger:            e.log,
		DisconnectedAfter: e.cfg.ICEDisconnectedTimeout,
		FailedAfter:       e.cfg.ICEFailedTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	e.tr, e.udpAddr = tr, tr.UDPAddr()
	if a := tr.TCPAddr(); a != nil {
		e.tcpAddr = a
	}
	ips, err := candidateIPs(ip, e.cfg.PublicIPs)
	if err != nil {
		_ = tr.Close()
		return nil, err
	}
	for _, a := range ips {
		e.candidates = append(e.candidates, mediaice.HostCandidate(a, tr.UDPAddr().Port, false))
		if t := tr.TCPAddr(); t != nil {
			e.candidates = append(e.candidates, mediaice.HostCandidate(a, t.Port, true))
		}
	}
	return e, nil
}

// candidateIPs are the addresses the relay advertises: the public IPs of
// a 1:1 NAT if given, else the listen IP, else every interface's unicast
// addresses (loopback and link-local left out, as pion does).
func candidateIPs(listen net.IP, public []string) ([]netip.Addr, error) {
	var ips []netip.Addr
	if len(public) > 0 {
		for _, p := range public {
			a, err := netip.ParseAddr(p)
			if err != nil {
				return nil, fmt.Errorf("media: public IP %q: %w", p, err)
			}
			ips = append(ips, a.Unmap())
		}
		return ips, nil
	}
	if !listen.IsUnspecified() {
		a, _ := netip.AddrFromSlice(listen)
		return []netip.Addr{a.Unmap()}, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("media: interface addresses: %w", err)
	}
	for _, addr := range addrs {
		n, ok := addr.(*net.IPNet)
		if !ok {
			continue
		}
		a, _ := netip.AddrFromSlice(n.IP)
		a = a.Unmap()
		if a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() {
			continue
		}
		ips = append(ips, a)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("media: no interface address to advertise: set a listen IP or public IPs")
	}
	return ips, nil
}

// sessionHandler is a Peer as its transport session's handler.
type sessionHandler Peer

func (h *sessionHandler) RTP(pkt []byte, hdr *rtp.Header, now time.Time, w *transport.Writer) {
	h.pub.receive(pkt, hdr, now, w)
}

func (h *sessionHandler) RTCP(pkt []byte, now time.Time, w *transport.Writer) {
	(*Peer)(h).handleRTCP(pkt, now, w)
}

func (h *sessionHandler) Connectivity(connected bool) { (*Peer)(h).reportConnectivity(connected) }
func (h *sessionHandler) Failed(reason string)        { (*Peer)(h).fail(reason) }

// newDirectPeer starts the participant's transport session and answers
// its offer.
func (r *Room) newDirectPeer(participantID, offerSDP string, pub publication) (*Peer, string, error) {
	rd, err := parseRemote(offerSDP)
	if err != nil {
		return nil, "", err
	}
	n := newNegotiation(rd)
	p := &Peer{
		id:       participantID,
		room:     r,
		e:        r.e,
		neg:      n,
		log:      r.log.With("participant", participantID),
		pubMid:   pub.mid,
		rtcpSSRC: randomSSRC(),
		events:   newEventQueue(),
		subs:     make(map[*publisher]*leg),
	}
	p.pub = newPublisher(p, r.e.cfg.NACKHistory)
	for _, m := range rd.lines {
		if m.mid == pub.mid && m.usable() && m.sends() {
			p.pub.publishes, p.pub.pt = true, uint8(m.opusPT)
			p.pub.ssrc.Store(m.ssrc)
			p.pub.levelID.Store(uint32(m.levelID))
		}
	}
	p.sess, err = r.e.tr.NewSession(transport.SessionConfig{
		Local:        n.local,
		Fingerprints: rd.fingerprints,
		Role:         n.role(),
		Logger:       p.log,
	}, (*sessionHandler)(p))
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return p, n.describe(false, r.e.tr.Fingerprint(), r.e.candidates), nil
}

// offerDirect sends the offer carrying the changes applyOps made; p.mu
// held.
func (p *Peer) offerDirect() {
	sdp := p.neg.describe(true, p.e.tr.Fingerprint(), p.e.candidates)
	p.offerInFlight = true
	p.events.push(func(h PeerHandler) { h.Offer(sdp) })
}

// subscribeDirect puts pub on a free leg, or a new one; its packets flow
// once the client has answered. p.mu held.
func (p *Peer) subscribeDirect(pub *publisher) {
	var l *leg
	if n := len(p.free); n > 0 {
		l, p.free = p.free[n-1], p.free[:n-1]
	} else {
		l = &leg{ssrc: randomSSRC()}
		p.neg.addLeg(l)
		p.legs = append(p.legs, l)
	}
	l.offered = pub
	p.subs[pub] = l
	p.pendingDowns = append(p.pendingDowns, &downTrack{pub: pub, leg: l})
}

// setAnswerDirect applies the client's answer to the offer in flight.
// Called with p.mu held; unlocks it.
func (p *Peer) setAnswerDirect(answer string) error {
	rd, err := parseRemote(answer)
	if err == nil {
		err = p.neg.sameLines(rd)
	}
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: set answer: %w", p.id, err)
	}
	p.neg.remoteICE = rd.ice
	p.offerInFlight = false
	for _, d := range p.pendingDowns {
		d.binding.Store(&binding{ssrc: d.leg.ssrc, pt: p.neg.pt, levelID: p.neg.levelID, sess: p.sess})
		d.leg.cur.Store(d)
		d.pub.addDown(d)
	}
	p.pendingDowns = nil
	p.free = append(p.free, p.freeing...)
	p.freeing = nil
	p.mu.Unlock()
	p.negotiate()
	return nil
}

// answerOfferDirect answers a client's offer: the same m-lines, new ICE
// credentials if the client restarts ICE (the DTLS session and the keys
// stay). Called with p.mu held; unlocks it.
func (p *Peer) answerOfferDirect(offer string) error {
	rd, err := parseRemote(offer)
	if err == nil {
		err = p.neg.sameLines(rd)
	}
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("peer %q: %w", p.id, err)
	}
	if rd.ice != p.neg.remoteICE {
		local := mediaice.NewCredentials()
		if err := p.sess.Restart(local); err != nil {
			p.mu.Unlock()
			return fmt.Errorf("peer %q: ICE restart: %w", p.id, err)
		}
		p.neg.local, p.neg.remoteICE = local, rd.ice
	}
	sdp := p.neg.describe(false, p.e.tr.Fingerprint(), p.e.candidates)
	p.events.push(func(h PeerHandler) { h.Answer(sdp) })
	p.mu.Unlock()
	p.negotiate()
	return nil
}

// addCandidateDirect checks a trickled candidate. An ICE-lite relay has no
// use for it: the client's checks bring its addresses.
func (p *Peer) addCandidateDirect(c api.ICECandidate) error {
	if _, err := ice.UnmarshalCandidate(strings.TrimPrefix(c.Candidate, "candidate:")); err != nil {
		return fmt.Errorf("peer %q: add candidate: %w", p.id, err)
	}
	return nil
}
