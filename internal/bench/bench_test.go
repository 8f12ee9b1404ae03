package bench

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
)

func examples(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

// TestZygote runs the zygote floor on the Python example: in every
// sample, handler entry and fork's return in the parent (the child may
// run first) come before the result is read.
func TestZygote(t *testing.T) {
	if _, err := os.Stat(runtimes.Python); err != nil {
		t.Skipf("no %s: %v", runtimes.Python, err)
	}
	code := filepath.Join(examples(t), "python", "hello")
	z, k, err := runZygote(context.Background(), "python", "main.handler", code, []byte(`{"name":"z"}`), 5)
	if err != nil {
		t.Fatal(err)
	}
	if z.Entry.N != 5 || z.Total.N != 5 || k.Entry.N != 5 {
		t.Fatalf("samples: zygote %+v, kernel fork %+v", z, k)
	}
	for i := range z.EntrySamples {
		if !(k.EntrySamples[i] > 0 && k.EntrySamples[i] <= z.TotalSamples[i] && z.EntrySamples[i] > 0 && z.EntrySamples[i] <= z.TotalSamples[i]) {
			t.Fatalf("sample %d: fork %d µs, entry %d µs, result %d µs: not in order", i, k.EntrySamples[i], z.EntrySamples[i], z.TotalSamples[i])
		}
	}
	// A handler that fails in the child is an error, with the reason.
	if _, _, err := runZygote(context.Background(), "python", "main.nosuch", code, nil, 1); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("missing handler: %v", err)
	}
	if _, _, err := runZygote(context.Background(), "node", "main.handler", code, nil, 1); err == nil {
		t.Fatal("a node function got a python zygote")
	}
}

// TestCompare checks the ratios and goals a report derives from its
// baselines and the other modes of its run.
func TestCompare(t *testing.T) {
	scratch := Report{Boot: "scratch", Entry: Summary{N: 4, P50: 1000, P99: 2000}}
	cold := Report{Boot: "cold", N: 4, P50: 300, P99: 600, Entry: Summary{N: 4, P50: 200, P99: 400}, BaselineRun: map[string]BaselineResult{}}
	cold.BaselineRun[Zygote] = BaselineResult{Entry: Summary{N: 4, P50: 50, P99: 100}, Total: Summary{N: 4, P50: 100, P99: 300}}
	cold.First = &FirstInvocation{Mode: Summary{N: 4, P50: 30, P99: 90}, ScratchSecond: Summary{N: 4, P50: 10, P99: 30}}
	cold.compare([]Report{scratch, cold})
	got := map[string]Comparison{}
	for _, c := range cold.Compare {
		got[c.Name] = c
	}
	want := map[string][3]float64{ // ratio p50, ratio p99, goal
		"accept-to-response / zygote start-to-response":            {3, 2, 0},
		"start-to-entry / zygote start-to-entry":                   {4, 4, 0},
		"first invocation / scratch's second invocation (handler)": {3, 3, 1.5},
		"start-to-entry / scratch start-to-entry":                  {0.2, 0.2, 0.1},
	}
	if len(got) != len(want) {
		t.Fatalf("comparisons %+v, want %v", cold.Compare, want)
	}
	for name, w := range want {
		c, ok := got[name]
		if !ok || c.RatioP50 != w[0] || c.RatioP99 != w[1] || c.Goal != w[2] {
			t.Errorf("%s = %+v, want ratios %v", name, c, w)
		}
	}
}
