package platform

import (
	"errors"
	"fmt"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// errorCount is catalyzer_errors_total{function=fn,type=typ}.
func errorCount(t *testing.T, m *Metrics, fn, typ string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "catalyzer_errors_total" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["function"] == fn && labels["type"] == typ {
				return s.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// TestCountErrorIsTable: the error metric names every errdefs value by
// its row of errdefs.Table, the row the API answers with (api's
// TestErrorStatusIsTable).
func TestCountErrorIsTable(t *testing.T) {
	m := newMetrics()
	for _, k := range errdefs.Table {
		m.countError("f", fmt.Errorf("op: %w", k.Err))
		if n := errorCount(t, m, "f", k.Type); n != 1 {
			t.Errorf("%v: catalyzer_errors_total{type=%q} = %v, want 1", k.Err, k.Type, n)
		}
	}
	m.countError("g", errors.New("boom"))
	m.countError("g", &agent.FunctionError{Type: "ValueError"})
	m.countError("g", &agent.FunctionError{})
	for _, typ := range []string{"InternalError", "ValueError", "FunctionError"} {
		if n := errorCount(t, m, "g", typ); n != 1 {
			t.Errorf("catalyzer_errors_total{type=%q} = %v, want 1", typ, n)
		}
	}
}
