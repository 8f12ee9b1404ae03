package api

import (
	"errors"
	"fmt"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// TestErrorStatusIsTable: the API answers every errdefs value with its
// row of errdefs.Table, the row the platform's error metric names too
// (platform's TestCountErrorIsTable).
func TestErrorStatusIsTable(t *testing.T) {
	for _, k := range errdefs.Table {
		code, d := errorStatus(fmt.Errorf("op: %w", k.Err))
		if code != k.Status || d.Type != k.Type {
			t.Errorf("%v: %d %s, want %d %s", k.Err, code, d.Type, k.Status, k.Type)
		}
	}
	if code, d := errorStatus(errors.New("boom")); code != 500 || d.Type != "InternalError" {
		t.Errorf("plain error: %d %s", code, d.Type)
	}
	fe := &agent.FunctionError{Type: "ValueError", Message: "bad", Trace: "tb", Stdout: "out"}
	code, d := errorStatus(fmt.Errorf("invoke: %w", fe))
	if code != 502 || d.Type != "ValueError" || d.Message != "bad" || d.Trace != "tb" || d.Stdout != "out" {
		t.Errorf("function error: %d %+v", code, d)
	}
	if code, d := errorStatus(fmt.Errorf("platform is shut down: %w", errdefs.ErrShutdown)); code != 503 || d.Type != "ShuttingDown" {
		t.Errorf("shut down: %d %s, want 503 ShuttingDown", code, d.Type)
	}
}
