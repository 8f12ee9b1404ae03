package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestRestoreFidelity: instances restored from an image answer exactly
// as a scratch-booted one, over many invocations.
func TestRestoreFidelity(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ex := examples(t)
	n := 1000
	if testing.Short() {
		n = 100
	}
	for _, c := range []struct{ name, runtime, handler, dir string }{
		{"py", "python", "main.handler", filepath.Join(ex, "python", "hello")},
		{"c", "native", "hello", filepath.Join(ex, "native-c")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(c.dir, c.handler)); c.runtime == "native" && err != nil {
				testutil.Missing(t, "example not built (run make examples; make test does): %v", err)
			}
			e.deploy(c.name, wire.DeployRequest{Runtime: c.runtime, Handler: c.handler, CodePath: c.dir, MaxInstances: 4})
			e.requireImage(t, c.name)
			norm := func(b []byte) string {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("output %s: %v", b, err)
				}
				delete(m, "invocation")
				delete(m, "remaining_ms")
				return fmt.Sprint(m)
			}
			ctx := context.Background()
			ref, err := e.c.Invoke(ctx, c.name, "scratch", []byte(`{"name":"f"}`))
			if err != nil {
				t.Fatal(err)
			}
			want := norm(ref.Output)
			for _, mode := range []string{"cold", "warm"} {
				inv, err := e.c.Invoke(ctx, c.name, mode, []byte(`{"name":"f"}`))
				if err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if got := norm(inv.Output); got != want {
					t.Fatalf("%s boot answered %s, scratch %s", mode, got, want)
				}
			}
			// Many invocations of live restored instances (auto reuses
			// them; the most recent is the warm one).
			for i := 0; i < n; i++ {
				inv, err := e.c.Invoke(ctx, c.name, "", []byte(`{"name":"f"}`))
				if err != nil {
					t.Fatalf("invocation %d: %v", i, err)
				}
				if got := norm(inv.Output); got != want {
					t.Fatalf("invocation %d (%s, reused %v) answered %s, want %s", i, inv.Boot, inv.Reused, got, want)
				}
			}
		})
	}
}
