// Package svgplot draws the reports of a catalyzer bench run as an SVG.
//
// It lives apart from package bench, and is linked only into
// catalyzer-plot, because gonum/plot parses its fonts at init (~1.2 ms
// here): in bin/catalyzer that would run at every re-exec of the binary,
// the sandbox helpers on the boot path included.
package svgplot

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	_ "gonum.org/v1/plot/vg/vgimg" // registers png
	_ "gonum.org/v1/plot/vg/vgsvg" // registers svg

	"github.com/catalyzer/catalyzer/internal/bench"
)

// Write draws the reports of one run as an SVG: the latency CDF of
// each mode next to the baselines', each mode's phases (p50) as stacked
// bars and, when the run swept concurrency levels, p50/p99 and
// throughput per level.
func Write(w io.Writer, reports []bench.Report) error {
	return WriteFormat(w, reports, "svg")
}

// WriteFormat is Write in format "svg" or "png".
func WriteFormat(w io.Writer, reports []bench.Report, format string) error {
	if len(reports) == 0 {
		return fmt.Errorf("plot: no reports")
	}
	cdf, err := cdfPlot(reports)
	if err != nil {
		return err
	}
	phases, err := phasePlot(reports)
	if err != nil {
		return err
	}
	grid := [][]*plot.Plot{{cdf, phases}}
	if hasSweep(reports) {
		lat, thr, err := sweepPlots(reports)
		if err != nil {
			return err
		}
		grid = append(grid, []*plot.Plot{lat, thr})
	}
	width, height := 13*vg.Inch, vg.Length(len(grid))*5*vg.Inch
	c, err := draw.NewFormattedCanvas(width, height, format)
	if err != nil {
		return fmt.Errorf("plot: %w (want svg or png)", err)
	}
	dc := draw.New(c)
	tiles := draw.Tiles{Rows: len(grid), Cols: 2, PadX: vg.Inch / 2, PadY: vg.Inch / 2,
		PadTop: vg.Inch / 4, PadBottom: vg.Inch / 4, PadLeft: vg.Inch / 4, PadRight: vg.Inch / 4}
	canvases := plot.Align(grid, tiles, dc)
	for i, row := range grid {
		for j, p := range row {
			p.Draw(canvases[i][j])
		}
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("plot: %w", err)
	}
	return nil
}

// palette has twenty distinguishable colours (Tableau 20), dark first.
var palette = []color.RGBA{
	{31, 119, 180, 255}, {255, 127, 14, 255}, {44, 160, 44, 255}, {214, 39, 40, 255}, {148, 103, 189, 255},
	{140, 86, 75, 255}, {227, 119, 194, 255}, {127, 127, 127, 255}, {188, 189, 34, 255}, {23, 190, 207, 255},
	{174, 199, 232, 255}, {255, 187, 120, 255}, {152, 223, 138, 255}, {255, 152, 150, 255}, {197, 176, 213, 255},
	{196, 156, 148, 255}, {247, 182, 210, 255}, {199, 199, 199, 255}, {219, 219, 141, 255}, {158, 218, 229, 255},
}

func colour(i int) color.Color { return palette[i%len(palette)] }

// cdf is the empirical distribution of samples (µs) as points in ms.
func cdf(samples []int64) plotter.XYs {
	s := append([]int64(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	pts := make(plotter.XYs, len(s))
	for i, v := range s {
		pts[i] = plotter.XY{X: math.Max(float64(v), 1) / 1000, Y: float64(i+1) / float64(len(s))}
	}
	return pts
}

func cdfPlot(reports []bench.Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("%s: latency CDF (n=%d each)", reports[0].Function, reports[0].N)
	p.X.Label.Text = "ms (log)"
	p.Y.Label.Text = "fraction of boots"
	p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = false, false
	p.Legend.XOffs = -vg.Inch / 8
	p.Add(plotter.NewGrid())
	i := 0
	add := func(name string, samples []int64, dashed bool) error {
		if len(samples) == 0 {
			return nil
		}
		l, err := plotter.NewLine(cdf(samples))
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		l.StepStyle = plotter.PostStep
		l.Color = colour(i)
		l.Width = vg.Points(1.5)
		if dashed {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		}
		i++
		p.Add(l)
		p.Legend.Add(name, l)
		return nil
	}
	for _, r := range reports {
		if err := add(r.Boot+": accept to response", r.AcceptSamples, false); err != nil {
			return nil, err
		}
	}
	for _, r := range reports {
		if err := add(r.Boot+": start to entry", r.EntrySamples, true); err != nil {
			return nil, err
		}
	}
	seen := map[string]bool{}
	for _, r := range reports {
		names := make([]string, 0, len(r.BaselineRun))
		for k := range r.BaselineRun {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if seen[k] {
				continue
			}
			seen[k] = true
			b := r.BaselineRun[k]
			name, s := k+": start to response", b.TotalSamples
			if len(s) == 0 {
				name, s = k+": start to entry", b.EntrySamples
			}
			if err := add(name, s, true); err != nil {
				return nil, err
			}
		}
	}
	return p, nil
}

func phasePlot(reports []bench.Report) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = "boot phases, p50 (start to handler entry)"
	p.X.Label.Text = "ms"
	var modes, order []string
	seen := map[string]bool{}
	for _, r := range reports {
		modes = append(modes, r.Boot)
		for _, k := range r.PhaseOrder {
			if !seen[k] {
				seen[k] = true
				order = append(order, k)
			}
		}
	}
	var below *plotter.BarChart
	for i, ph := range order {
		vs := make(plotter.Values, len(reports))
		for j, r := range reports {
			vs[j] = float64(r.Phases[ph]) / 1000
		}
		b, err := plotter.NewBarChart(vs, vg.Points(18))
		if err != nil {
			return nil, fmt.Errorf("plot phase %s: %w", ph, err)
		}
		b.Horizontal = true
		b.LineStyle.Width = 0
		b.Color = colour(i)
		if below != nil {
			b.StackOn(below)
		}
		below = b
		p.Add(b)
		p.Legend.Add(ph, b)
	}
	// Room on the right for the legend.
	p.Legend.Top = true
	most := 0.0
	for _, r := range reports {
		sum := 0.0
		for _, ph := range order {
			sum += float64(r.Phases[ph]) / 1000
		}
		most = max(most, sum)
	}
	p.X.Max = most * 1.3
	p.NominalY(modes...)
	return p, nil
}

func hasSweep(reports []bench.Report) bool {
	for _, r := range reports {
		if len(r.Sweep) > 1 {
			return true
		}
	}
	return false
}

func sweepPlots(reports []bench.Report) (*plot.Plot, *plot.Plot, error) {
	lat, thr := plot.New(), plot.New()
	lat.Title.Text = "accept to response per concurrency level"
	lat.X.Label.Text, lat.Y.Label.Text = "boots in flight", "ms"
	thr.Title.Text = "throughput per concurrency level"
	thr.X.Label.Text, thr.Y.Label.Text = "boots in flight", "boots/s"
	lat.Add(plotter.NewGrid())
	thr.Add(plotter.NewGrid())
	for i, r := range reports {
		if len(r.Sweep) < 2 {
			continue
		}
		p50, p99, bps := make(plotter.XYs, len(r.Sweep)), make(plotter.XYs, len(r.Sweep)), make(plotter.XYs, len(r.Sweep))
		for j, l := range r.Sweep {
			c := float64(l.Concurrency)
			p50[j] = plotter.XY{X: c, Y: float64(l.Accept.P50) / 1000}
			p99[j] = plotter.XY{X: c, Y: float64(l.Accept.P99) / 1000}
			bps[j] = plotter.XY{X: c, Y: l.BootsPerSec}
		}
		for _, s := range []struct {
			p      *plot.Plot
			name   string
			xys    plotter.XYs
			dashed bool
		}{{lat, r.Boot + " p50", p50, false}, {lat, r.Boot + " p99", p99, true}, {thr, r.Boot, bps, false}} {
			l, pts, err := plotter.NewLinePoints(s.xys)
			if err != nil {
				return nil, nil, fmt.Errorf("plot sweep: %w", err)
			}
			l.Color, pts.Color = colour(i), colour(i)
			if s.dashed {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			s.p.Add(l, pts)
			s.p.Legend.Add(s.name, l, pts)
		}
	}
	lat.Legend.Top, lat.Legend.Left = true, true
	thr.Legend.Top, thr.Legend.Left = true, true
	return lat, thr, nil
}
