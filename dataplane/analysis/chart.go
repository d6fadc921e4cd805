package analysis

import (
	"io"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// chartDPI makes one point one pixel, so Width x Height is the PNG's size.
const chartDPI = 72

// WritePNG draws the series' Metric per second over time as a line chart
// of Width x Height pixels.
func (r *TimeseriesResult) WritePNG(w io.Writer) error {
	p := plot.New()
	unit := r.Metric.String() + "/s"
	p.Title.Text = unit + " per " + r.Step.String()
	p.X.Label.Text = "time (UTC)"
	p.Y.Label.Text = unit
	p.Y.Min = 0
	format := "15:04:05"
	if r.Points > 0 && time.Duration(r.Points)*r.Step > 24*time.Hour {
		format = "01-02 15:04"
	}
	p.X.Tick.Marker = plot.TimeTicks{Format: format}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	if r.Points == 0 {
		p.Title.Text += " (no records)"
		p.X.Min, p.X.Max, p.Y.Max = 0, 1, 1
	}
	start := float64(r.Start.UnixNano()) / 1e9
	step := r.Step.Seconds()
	for i := range r.Series {
		s := &r.Series[i]
		if r.Points == 0 {
			break
		}
		ys := s.OctetsPerS
		switch r.Metric {
		case Packets:
			ys = s.PacketsPerS
		case Flows:
			ys = s.FlowsPerS
		}
		// A step as a flat segment, as an RRD graph draws it.
		xy := make(plotter.XYs, 0, 2*len(ys))
		for j, y := range ys {
			x := start + float64(j)*step
			xy = append(xy, plotter.XY{X: x, Y: y}, plotter.XY{X: x + step, Y: y})
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.Name, l)
	}
	c := vgimg.NewWith(vgimg.UseWH(vg.Length(r.Width), vg.Length(r.Height)), vgimg.UseDPI(chartDPI))
	p.Draw(draw.New(c))
	_, err := vgimg.PngCanvas{Canvas: c}.WriteTo(w)
	return err
}
