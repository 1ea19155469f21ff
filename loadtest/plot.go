package loadtest

import (
	"bufio"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// The figure: latency histogram on the left, frames per second over time
// on the right. Both renderers draw the same shapes through canvas.
const (
	plotW, plotH   = 1000, 420
	panelW, panelH = 400, 300
	marginL        = 70
	marginT        = 50
	panelGap       = 110
)

var (
	colInk      = color.RGBA{0x22, 0x22, 0x22, 0xff}
	colGrid     = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colBar      = color.RGBA{0x33, 0x66, 0xcc, 0xff}
	colSent     = color.RGBA{0xcc, 0x55, 0x22, 0xff}
	colReceived = color.RGBA{0x33, 0x66, 0xcc, 0xff}
)

type canvas interface {
	rect(x, y, w, h float64, c color.RGBA)
	line(x1, y1, x2, y2 float64, c color.RGBA)
	// text draws s with its baseline at y: starting at x (align -1),
	// centred on x (0) or ending at x (1).
	text(x, y float64, s string, align int)
}

func drawPlot(cv canvas, rep *Report) {
	cv.rect(0, 0, plotW, plotH, color.RGBA{0xff, 0xff, 0xff, 0xff})
	title := fmt.Sprintf("sotto load: %d rooms x %d callers, %.0f s; loss %.3f %%, latency p99 %.1f ms",
		rep.Rooms, rep.CallersPerRoom, rep.DurationS, rep.LossPct, rep.LatencyMS.P99)
	cv.text(plotW/2, 22, title, 0)
	drawHistogram(cv, rep, marginL, marginT)
	drawTimeline(cv, rep, marginL+panelW+panelGap, marginT)
}

// drawHistogram bins latency up to a round limit above p99 (at least 5 ms)
// into 50 bars; later frames go into the last bar.
func drawHistogram(cv canvas, rep *Report, x0, y0 float64) {
	limit := niceCeil(max(5, rep.LatencyMS.P99*1.5))
	const bars = 50
	counts := make([]uint64, bars)
	per := limit / bars // ms per bar
	for i, c := range rep.LatencyHistogram {
		msAt := float64(i) * float64(bucketWidth) / float64(time.Millisecond)
		b := min(bars-1, int(msAt/per))
		counts[b] += c
	}
	var top uint64 = 1
	for _, c := range counts {
		top = max(top, c)
	}
	yMax := niceCeil(float64(top))
	axes(cv, x0, y0, "latency (ms), send to receive", "frames", limit, yMax)
	bw := panelW / float64(bars)
	for i, c := range counts {
		h := float64(c) / yMax * panelH
		cv.rect(x0+float64(i)*bw+1, y0+panelH-h, bw-2, h, colBar)
	}
}

func drawTimeline(cv canvas, rep *Report, x0, y0 float64) {
	tl := rep.Timeline
	tMax, fMax := 1.0, 1.0
	for _, s := range tl {
		tMax = max(tMax, s.T)
		fMax = max(fMax, float64(s.FramesSent), float64(s.FramesReceived))
	}
	tMax, fMax = niceCeil(tMax), niceCeil(fMax)
	axes(cv, x0, y0, "time (s)", "frames/s", tMax, fMax)
	series := func(get func(Sample) uint64, c color.RGBA) {
		for i := 1; i < len(tl); i++ {
			a, b := tl[i-1], tl[i]
			cv.line(x0+a.T/tMax*panelW, y0+panelH-float64(get(a))/fMax*panelH,
				x0+b.T/tMax*panelW, y0+panelH-float64(get(b))/fMax*panelH, c)
		}
	}
	series(func(s Sample) uint64 { return s.FramesSent }, colSent)
	series(func(s Sample) uint64 { return s.FramesReceived }, colReceived)
	cv.rect(x0+10, y0+8, 14, 3, colReceived)
	cv.text(x0+30, y0+14, "received", -1)
	cv.rect(x0+10, y0+24, 14, 3, colSent)
	cv.text(x0+30, y0+30, "sent", -1)
}

// axes draws a panel's frame, grid, ticks and labels for x in [0, xMax]
// and y in [0, yMax].
func axes(cv canvas, x0, y0 float64, xLabel, yLabel string, xMax, yMax float64) {
	const ticks = 5
	for i := 0; i <= ticks; i++ {
		f := float64(i) / ticks
		y := y0 + panelH - f*panelH
		cv.line(x0, y, x0+panelW, y, colGrid)
		cv.text(x0-6, y+4, tickLabel(f*yMax), 1)
		x := x0 + f*panelW
		cv.line(x, y0+panelH, x, y0+panelH+5, colInk)
		cv.text(x, y0+panelH+18, tickLabel(f*xMax), 0)
	}
	cv.line(x0, y0, x0, y0+panelH, colInk)
	cv.line(x0, y0+panelH, x0+panelW, y0+panelH, colInk)
	cv.text(x0+panelW/2, y0+panelH+38, xLabel, 0)
	cv.text(x0, y0-8, yLabel, 0)
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// PlotSVG draws the latency histogram and frames/s over time as SVG.
func PlotSVG(w io.Writer, rep *Report) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", plotW, plotH, plotW, plotH)
	drawPlot(svgCanvas{bw}, rep)
	fmt.Fprintln(bw, "</svg>")
	return bw.Flush()
}

type svgCanvas struct{ w *bufio.Writer }

func hexColor(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func (s svgCanvas) rect(x, y, w, h float64, c color.RGBA) {
	if w <= 0 || h <= 0 {
		return
	}
	fmt.Fprintf(s.w, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", x, y, w, h, hexColor(c))
}

func (s svgCanvas) line(x1, y1, x2, y2 float64, c color.RGBA) {
	fmt.Fprintf(s.w, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1.5"/>`+"\n", x1, y1, x2, y2, hexColor(c))
}

func (s svgCanvas) text(x, y float64, str string, align int) {
	anchor := [...]string{"end", "middle", "start"}[1-align]
	fmt.Fprintf(s.w, `<text x="%.1f" y="%.1f" text-anchor="%s" fill="%s">%s</text>`+"\n", x, y, anchor, hexColor(colInk), html.EscapeString(str))
}

// PlotPNG draws the same figure as PlotSVG, as PNG.
func PlotPNG(w io.Writer, rep *Report) error {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	drawPlot(pngCanvas{img}, rep)
	return png.Encode(w, img)
}

type pngCanvas struct{ img *image.RGBA }

func (p pngCanvas) rect(x, y, w, h float64, c color.RGBA) {
	r := image.Rect(int(math.Round(x)), int(math.Round(y)), int(math.Round(x+w)), int(math.Round(y+h)))
	draw.Draw(p.img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// line steps along the longer axis, two pixels thick.
func (p pngCanvas) line(x1, y1, x2, y2 float64, c color.RGBA) {
	steps := int(math.Max(math.Abs(x2-x1), math.Abs(y2-y1))) + 1
	for i := 0; i <= steps; i++ {
		f := float64(i) / float64(steps)
		x, y := int(math.Round(x1+f*(x2-x1))), int(math.Round(y1+f*(y2-y1)))
		p.img.SetRGBA(x, y, c)
		p.img.SetRGBA(x, y+1, c)
	}
}

func (p pngCanvas) text(x, y float64, s string, align int) {
	face := basicfont.Face7x13
	d := &font.Drawer{Dst: p.img, Src: image.NewUniform(colInk), Face: face}
	width := d.MeasureString(s).Round()
	left := int(x) - width*(1+align)/2
	d.Dot = fixed.P(left, int(y))
	d.DrawString(s)
}
