package loadtest

import (
	"bytes"
	"encoding/xml"
	"image/color"
	"image/png"
	"io"
	"strings"
	"testing"
	"time"
)

// TestPlots: both renderings of a short run's figure carry its title, the
// latency histogram's bars on the left and the frame rates on the right.
func TestPlots(t *testing.T) {
	rep := &Report{Rooms: 2, CallersPerRoom: 3, DurationS: 5, LatencyMS: Percentiles{P99: 3}}
	var h histogram
	for i := range 1000 {
		h.add(time.Duration(i%40) * 100 * time.Microsecond)
	}
	rep.LatencyHistogram = h.counts()
	for i := range 10 {
		rep.Timeline = append(rep.Timeline, Sample{T: float64(i + 1), Joined: 6, FramesSent: 300, FramesReceived: 600})
	}
	var svg bytes.Buffer
	if err := PlotSVG(&svg, rep); err != nil {
		t.Fatal(err)
	}
	var root struct{ XMLName xml.Name }
	if err := xml.Unmarshal(svg.Bytes(), &root); err != nil || root.XMLName.Local != "svg" {
		t.Errorf("SVG root %v, %v", root.XMLName, err)
	}
	s := svg.String()
	for _, part := range []string{"latency (ms)", "frames/s", "time (s)", "received", "sent", "2 rooms x 3 callers"} {
		if !strings.Contains(s, part) {
			t.Errorf("SVG lacks %q", part)
		}
	}
	// One filled path per histogram bar.
	if n := strings.Count(s, `style="fill:#3366CC"`); n < 20 {
		t.Errorf("SVG has %d bars:\n%.500s", n, s)
	}

	var pngBuf bytes.Buffer
	if err := PlotPNG(&pngBuf, rep); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&pngBuf)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	if b.Dx() != plotW || b.Dy() != plotH {
		t.Errorf("PNG %v", b)
	}
	// The histogram's bars are on the left; the frame rates, sent and
	// received, on the right.
	pixels := func(c color.RGBA, left bool) int {
		n := 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				if (x < b.Dx()/2) == left && color.RGBAModel.Convert(img.At(x, y)) == c {
					n++
				}
			}
		}
		return n
	}
	if bars, sent, received, sentLeft := pixels(colBar, true), pixels(colSent, false), pixels(colReceived, false), pixels(colSent, true); bars < 1000 || sent == 0 || received == 0 || sentLeft != 0 {
		t.Errorf("PNG pixels: %d of bars, %d sent and %d received on the right, %d sent on the left", bars, sent, received, sentLeft)
	}

	// A run that ended before any frame still gets its (empty) figure.
	for name, plot := range map[string]func(io.Writer, *Report) error{"SVG": PlotSVG, "PNG": PlotPNG} {
		if err := plot(io.Discard, &Report{}); err != nil {
			t.Errorf("%s of an empty report: %v", name, err)
		}
	}
}
