package media

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/sotto-voice/sotto/api"
	"github.com/sotto-voice/sotto/internal/wait"
)

// BenchmarkForward measures the relay's forwarding path: one publisher, N
// subscribers, real pion peers over loopback UDP. The clients run in a child
// process (this test binary, see TestMain), so -benchmem and -memprofile
// count the server alone. One op is one packet published, forwarded to N
// subscribers; allocs/fwd is the process's allocations per forwarded packet
// in the measured window, which includes time-driven work (RTCP reports,
// ICE keepalives). Allocation sites per packet, if any, show with
//
//	go test -run '^$' -bench 'Forward/subscribers=4$' -benchtime 100000x \
//	    -memprofile mem.out -memprofilerate 1 ./media/
//	go tool pprof -sample_index=alloc_objects -top mem.out
//
// as sites allocating about once per packet (100000 or more objects);
// there are none.
//
// The lossy variant has the publisher skip one sequence number in 20, as if
// the network lost it: the relay asks for each three times (the publisher
// has nothing to resend) and gives up. Its allocs/fwd includes pion's
// allocations for writing those NACKs, which happen per request, not per
// packet; the window's own work is BenchmarkGapTracker.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 4, 15} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) { benchForward(b, n, 0) })
	}
	b.Run("subscribers=4,lost=5%", func(b *testing.B) { benchForward(b, 4, 20) })
}

const (
	benchChildEnv = "MEDIA_BENCH_CLIENTS"
	benchSkipEnv  = "MEDIA_BENCH_SKIP" // the publisher skips one sequence number in this many
)

func TestMain(m *testing.M) {
	if n := os.Getenv(benchChildEnv); n != "" {
		subs, err := strconv.Atoi(n)
		skip := 0
		if err == nil && os.Getenv(benchSkipEnv) != "" {
			skip, err = strconv.Atoi(os.Getenv(benchSkipEnv))
		}
		if err == nil {
			err = benchClients(subs, skip, os.Stdin, os.Stdout)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench clients:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// benchMsg is one line of the protocol between the benchmark and its client
// process.
type benchMsg struct {
	Op  string `json:"op"` // join, joined, offer, answer, send, quit
	ID  string `json:"id,omitempty"`
	SDP string `json:"sdp,omitempty"`
	N   int    `json:"n,omitempty"`
}

type lineWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
	raw io.Writer
	buf []byte
}

func (w *lineWriter) send(m benchMsg) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.enc.Encode(m)
}

// sendCount sends {"op":"send","n":k} without allocating, so the harness
// stays out of the measured allocations.
func (w *lineWriter) sendCount(k int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf[:0], `{"op":"send","n":`...)
	w.buf = strconv.AppendInt(w.buf, int64(k), 10)
	w.buf = append(w.buf, "}\n"...)
	_, err := w.raw.Write(w.buf)
	return err
}

// benchHandler relays one server peer's offers to the client process, after
// the join answer (as signaling does).
type benchHandler struct {
	id     string
	w      *lineWriter
	joined chan struct{}
}

func (h *benchHandler) Offer(sdp string) {
	<-h.joined
	_ = h.w.send(benchMsg{Op: "offer", ID: h.id, SDP: sdp})
}
func (h *benchHandler) Answer(string)              {}
func (h *benchHandler) Connectivity(bool)          {}
func (h *benchHandler) Candidate(api.ICECandidate) {}
func (h *benchHandler) Failed(string)              {}

func benchForward(b *testing.B, subs, skip int) {
	e, err := NewEngine(Config{ListenIP: "127.0.0.1", TCPPort: -1, Logger: testLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	r := e.NewRoom("bench", nil)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+strconv.Itoa(subs), benchSkipEnv+"="+strconv.Itoa(skip))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := &lineWriter{enc: json.NewEncoder(stdin), raw: stdin}
	defer func() {
		_ = w.send(benchMsg{Op: "quit"})
		_ = stdin.Close()
		_ = cmd.Wait()
	}()

	var mu sync.Mutex
	peers := map[string]*Peer{}
	go func() {
		dec := json.NewDecoder(stdout)
		for {
			var m benchMsg
			if err := dec.Decode(&m); err != nil {
				return
			}
			switch m.Op {
			case "join":
				ctx, cancel := context.WithTimeout(context.Background(), wait.Timeout)
				h := &benchHandler{id: m.ID, w: w, joined: make(chan struct{})}
				p, answer, err := r.Join(ctx, m.ID, m.SDP, h)
				cancel()
				if err != nil {
					b.Errorf("join %s: %v", m.ID, err)
					return
				}
				mu.Lock()
				peers[m.ID] = p
				mu.Unlock()
				_ = w.send(benchMsg{Op: "joined", ID: m.ID, SDP: answer})
				close(h.joined)
			case "answer":
				mu.Lock()
				p := peers[m.ID]
				mu.Unlock()
				if err := p.SetAnswer(m.SDP); err != nil {
					b.Errorf("answer %s: %v", m.ID, err)
				}
			}
		}
	}()

	// Ready when the publisher's packets reach every subscriber.
	wait.For(b, "the publisher's track to be forwarded to every subscriber", func() bool {
		mu.Lock()
		p := peers["pub"]
		mu.Unlock()
		if p == nil {
			return false
		}
		n := 0
		for _, d := range *p.pub.downs.Load() {
			if d.binding.Load() != nil {
				n++
			}
		}
		return n == subs
	})
	// publish has the client send n packets and returns how many the server
	// forwarded. Closed loop: at most window packets are in flight, so the
	// measure is the relay's sustained rate, not how fast loopback buffers
	// overflow. A packet lost on the way is given up after stall. It polls
	// the counters directly: Stats allocates its map.
	const (
		window = 64
		stall  = 200 * time.Millisecond
	)
	c := &e.counters
	publish := func(n int) uint64 {
		startFwd := c.packetsForwarded.Load()
		expected := c.packetsReceived.Load() // received once the sent packets arrive
		for sent := 0; sent < n || c.packetsReceived.Load() < expected; {
			if inFlight := int64(expected) - int64(c.packetsReceived.Load()); sent < n && inFlight <= window/2 {
				k := min(window/2, n-sent)
				if err := w.sendCount(k); err != nil {
					b.Fatal(err)
				}
				sent += k
				expected += uint64(k)
				continue
			}
			last, lastChange := c.packetsReceived.Load(), time.Now()
			for c.packetsReceived.Load() == last {
				if time.Since(lastChange) > stall {
					expected = last // lost on loopback: stop waiting for them
					break
				}
				time.Sleep(20 * time.Microsecond)
			}
		}
		return c.packetsForwarded.Load() - startFwd
	}
	// Warm up until the media flows end to end (DTLS done on every leg),
	// with buffers and pools filled.
	wait.For(b, "packets to flow to every subscriber", func() bool {
		return publish(500) >= uint64(450*subs)
	})

	// No runtime.GC here: it would empty the sync.Pools pion's UDP mux and
	// SRTP writer draw from, and the window would count their refill.
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	forwarded := publish(b.N)
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	if forwarded == 0 {
		// The probe run with b.N = 1 may lose its one packet on a busy
		// machine; a real run may not.
		if b.N >= 100 {
			b.Fatal("nothing forwarded")
		}
		return
	}
	b.ReportMetric(float64(forwarded)/elapsed.Seconds(), "fwd/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(forwarded), "allocs/fwd")
	b.ReportMetric(float64(forwarded)/float64(b.N*subs), "delivered")
}

// benchClients is the client process: a publisher "pub" and subs
// subscribers, driven by benchMsg lines on in, answering on out. With skip
// > 0 the publisher skips one sequence number in skip.
func benchClients(subs, skip int, in io.Reader, out io.Writer) error {
	api, err := newClientAPI(clientOptions{})
	if err != nil {
		return err
	}
	w := &lineWriter{enc: json.NewEncoder(out)}
	pcs := map[string]*webrtc.PeerConnection{}
	ids := []string{"pub"}
	for i := range subs {
		ids = append(ids, fmt.Sprintf("sub%02d", i))
	}
	var track *webrtc.TrackLocalStaticRTP
	for _, id := range ids {
		pc, err := api.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			return err
		}
		defer pc.Close()
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", id)
		if err != nil {
			return err
		}
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendrecv}); err != nil {
			return err
		}
		if id == "pub" {
			track = tr
		}
		pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			go func() {
				buf := make([]byte, maxPacketSize)
				for {
					if _, _, err := t.Read(buf); err != nil {
						return
					}
				}
			}()
		})
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			return err
		}
		gathered := webrtc.GatheringCompletePromise(pc)
		if err := pc.SetLocalDescription(offer); err != nil {
			return err
		}
		<-gathered
		pcs[id] = pc
	}
	// Join one at a time: the reply carries the answer.
	dec := json.NewDecoder(in)
	levelID := uint8(0)
	for _, id := range ids {
		if err := w.send(benchMsg{Op: "join", ID: id, SDP: pcs[id].LocalDescription().SDP}); err != nil {
			return err
		}
		for {
			var m benchMsg
			if err := dec.Decode(&m); err != nil {
				return err
			}
			if err := benchClientHandle(pcs, w, m); err != nil {
				return err
			}
			if m.Op == "joined" && m.ID == id {
				break
			}
		}
	}
	for _, s := range pcs["pub"].GetSenders() {
		for _, ext := range s.GetParameters().HeaderExtensions {
			if ext.URI == sdp.AudioLevelURI {
				levelID = uint8(ext.ID)
			}
		}
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2}, Payload: make([]byte, 80)}
	for {
		var m benchMsg
		if err := dec.Decode(&m); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch m.Op {
		case "quit":
			return nil
		case "send":
			for i := range m.N {
				pkt.SequenceNumber++
				if skip > 0 && pkt.SequenceNumber%uint16(skip) == 0 {
					pkt.SequenceNumber++
				}
				pkt.Timestamp += 960
				pkt.Payload[0] = byte(i)
				if levelID != 0 {
					_ = pkt.Header.SetExtension(levelID, []byte{40})
				}
				if err := track.WriteRTP(pkt); err != nil {
					return err
				}
			}
		default:
			if err := benchClientHandle(pcs, w, m); err != nil {
				return err
			}
		}
	}
}

func benchClientHandle(pcs map[string]*webrtc.PeerConnection, w *lineWriter, m benchMsg) error {
	pc := pcs[m.ID]
	switch m.Op {
	case "joined":
		return pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP})
	case "offer":
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
			return err
		}
		answer, err := pc.CreateAnswer(nil)
		if err != nil {
			return err
		}
		if err := pc.SetLocalDescription(answer); err != nil {
			return err
		}
		return w.send(benchMsg{Op: "answer", ID: m.ID, SDP: pc.LocalDescription().SDP})
	}
	return nil
}
