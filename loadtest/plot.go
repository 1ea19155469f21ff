package loadtest

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// The figure: a title over the latency histogram on the left and frames
// per second over time on the right, plotW by plotH pixels at 96 dpi.
const (
	plotW, plotH = 1000, 420
	plotDPI      = vgimg.DefaultDPI
	histBars     = 50
)

var (
	colBar      = color.RGBA{0x33, 0x66, 0xcc, 0xff}
	colSent     = color.RGBA{0xcc, 0x55, 0x22, 0xff}
	colReceived = color.RGBA{0x33, 0x66, 0xcc, 0xff}
)

// PlotSVG draws the latency histogram and frames/s over time as SVG.
func PlotSVG(w io.Writer, rep *Report) error {
	width, height := figureSize()
	return drawFigure(w, vgsvg.New(width, height), rep)
}

// PlotPNG draws the same figure as PlotSVG, as PNG.
func PlotPNG(w io.Writer, rep *Report) error {
	width, height := figureSize()
	return drawFigure(w, vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(plotDPI))}, rep)
}

func figureSize() (vg.Length, vg.Length) {
	return plotW * vg.Inch / plotDPI, plotH * vg.Inch / plotDPI
}

func drawFigure(w io.Writer, c vg.CanvasWriterTo, rep *Report) error {
	dc := draw.New(c)
	dc.FillPolygon(color.White, []vg.Point{dc.Min, {X: dc.Max.X, Y: dc.Min.Y}, dc.Max, {X: dc.Min.X, Y: dc.Max.Y}})
	title := text.Style{
		Color:   color.Black,
		Font:    font.From(plot.DefaultFont, 13),
		XAlign:  draw.XCenter,
		YAlign:  draw.YTop,
		Handler: plot.DefaultTextHandler,
	}
	dc.FillText(title, vg.Point{X: dc.Center().X, Y: dc.Max.Y - 8}, fmt.Sprintf(
		"sotto load: %d rooms x %d callers, %.0f s; loss %.3f %%, latency p99 %.1f ms",
		rep.Rooms, rep.CallersPerRoom, rep.DurationS, rep.LossPct, rep.LatencyMS.P99))
	timeline, err := timelinePlot(rep)
	if err != nil {
		return err
	}
	panels := draw.Tiles{Rows: 1, Cols: 2, PadTop: 32, PadBottom: 8, PadLeft: 8, PadRight: 16, PadX: 32}
	for i, p := range []*plot.Plot{latencyPlot(rep), timeline} {
		p.Draw(panels.At(dc, i, 0))
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("write plot: %w", err)
	}
	return nil
}

// latencyPlot bins latency up to a round limit above p99 (at least 5 ms)
// into histBars bars; later frames go into the last bar.
func latencyPlot(rep *Report) *plot.Plot {
	limit := niceCeil(max(5, rep.LatencyMS.P99*1.5))
	per := limit / histBars // ms per bar
	h := &plotter.Histogram{Width: per, FillColor: colBar, Bins: make([]plotter.HistogramBin, histBars)}
	h.LineStyle.Width = 0
	for i := range h.Bins {
		h.Bins[i].Min, h.Bins[i].Max = float64(i)*per, float64(i+1)*per
	}
	for i, c := range rep.LatencyHistogram {
		msAt := float64(i) * float64(bucketWidth) / float64(time.Millisecond)
		h.Bins[min(histBars-1, int(msAt/per))].Weight += float64(c)
	}
	p := newPanel("latency (ms), send to receive", "frames")
	p.Add(h)
	p.X.Max = limit
	p.Y.Max = headroom(p.Y.Max)
	return p
}

func timelinePlot(rep *Report) (*plot.Plot, error) {
	p := newPanel("time (s)", "frames/s")
	for _, series := range []struct {
		name  string
		color color.Color
		get   func(Sample) uint64
	}{
		{"received", colReceived, func(s Sample) uint64 { return s.FramesReceived }},
		{"sent", colSent, func(s Sample) uint64 { return s.FramesSent }},
	} {
		xys := make(plotter.XYs, len(rep.Timeline))
		for i, s := range rep.Timeline {
			xys[i] = plotter.XY{X: s.T, Y: float64(series.get(s))}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, fmt.Errorf("plot frames %s: %w", series.name, err)
		}
		l.Color, l.Width = series.color, vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(series.name, l)
	}
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs, p.Legend.YOffs = 6, -6
	p.X.Max, p.Y.Max = max(1, p.X.Max), headroom(p.Y.Max)
	return p, nil
}

// headroom is an axis maximum a little above the data's top, so that the
// tallest bar or the legend does not touch the frame.
func headroom(top float64) float64 { return max(1, 1.15*top) }

// newPanel is a plot with a grid and axes from 0 with round ticks.
func newPanel(xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.X.Label.Text, p.Y.Label.Text = xLabel, yLabel
	p.X.Tick.Marker, p.Y.Tick.Marker = roundTicks{}, roundTicks{}
	p.Add(plotter.NewGrid())
	p.X.Min, p.Y.Min = 0, 0
	return p
}

// roundTicks marks an axis from 0 in about four round steps (1, 2 or 5
// times a power of ten), labelled without needless decimals.
type roundTicks struct{}

func (roundTicks) Ticks(lo, hi float64) []plot.Tick {
	step := niceCeil((hi - lo) / 4)
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi; i++ {
		v := i * step
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', decimals, 64)})
	}
	return ticks
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
