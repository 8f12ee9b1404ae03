package svgplot

import (
	"bytes"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/bench"
)

// TestWrite draws a two-mode run with a sweep: an SVG that names every
// mode, phase and baseline.
func TestWrite(t *testing.T) {
	mk := func(mode string, base int64) bench.Report {
		r := bench.Report{Function: "f", Boot: mode, N: 3, PhaseOrder: []string{"clone", "join"},
			Phases: map[string]int64{"clone": base, "join": base / 2}, AcceptSamples: []int64{base, 2 * base, 3 * base}, EntrySamples: []int64{base / 2, base, base},
			BaselineRun: map[string]bench.BaselineResult{bench.Zygote: {EntrySamples: []int64{10, 20}, TotalSamples: []int64{30, 40}}}}
		r.Sweep = []bench.Level{{Concurrency: 1, Accept: bench.Summary{P50: base, P99: 2 * base}, BootsPerSec: 10}, {Concurrency: 2, Accept: bench.Summary{P50: 2 * base, P99: 5 * base}, BootsPerSec: 15}}
		return r
	}
	var b bytes.Buffer
	if err := Write(&b, []bench.Report{mk("fork", 5000), mk("scratch", 60000)}); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	for _, s := range []string{"<svg", "fork: accept to response", "scratch: start to entry", "zygote: start to response", "clone", "join", "scratch p99", "boots/s"} {
		if !strings.Contains(svg, s) {
			t.Errorf("the SVG has no %q", s)
		}
	}
	if err := Write(&b, nil); err == nil {
		t.Error("a plot of no reports")
	}
}
