package main

import (
	"os"
	"runtime"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

func numCPU() int { return runtime.NumCPU() }

// plotSamples draws the three series over minutes, one panel each, with a
// line where the warm-up ends.
func plotSamples(path string, samples []sample, warmup float64) error {
	series := []struct {
		title string
		get   func(sample) float64
	}{
		{"resident memory (MiB)", func(x sample) float64 { return x.RSS / (1 << 20) }},
		{"goroutines", func(x sample) float64 { return x.Goroutines }},
		{"open files", func(x sample) float64 { return x.OpenFiles }},
	}
	var end float64
	if n := len(samples); n > 0 {
		end = samples[n-1].Seconds / 60
	}
	rows := make([][]*plot.Plot, len(series))
	for i, sr := range series {
		p := plot.New()
		p.Title.Text = sr.title
		p.X.Label.Text = "minutes"
		p.Add(plotter.NewGrid())
		xy := make(plotter.XYs, len(samples))
		hi := 0.0
		for j, x := range samples {
			xy[j] = plotter.XY{X: x.Seconds / 60, Y: sr.get(x)}
			hi = max(hi, xy[j].Y)
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return err
		}
		p.Add(l)
		w, err := plotter.NewLine(plotter.XYs{{X: warmup * end, Y: 0}, {X: warmup * end, Y: hi * 1.1}})
		if err != nil {
			return err
		}
		w.Dashes = []vg.Length{vg.Points(4), vg.Points(4)}
		p.Add(w)
		p.Y.Min = 0
		p.Y.Max = hi*1.1 + 1
		rows[i] = []*plot.Plot{p}
	}
	img := vgimg.New(vg.Points(720), vg.Points(720))
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(rows), Cols: 1, PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8), PadY: vg.Points(12)}
	canvases := plot.Align(rows, t, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
