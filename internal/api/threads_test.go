package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// threadedFunction is one runtime's multi-threaded function and the
// fields of its answer that must differ in every instance.
type threadedFunction struct {
	name   string
	req    wire.DeployRequest
	random []string
}

func threadedFunctions(t *testing.T) []threadedFunction {
	t.Helper()
	ex := examples(t)
	gothreads := filepath.Join(ex, "native", "threads")
	if _, err := os.Stat(filepath.Join(gothreads, "threads")); err != nil {
		testutil.Missing(t, "example not built (run make examples; make test does): %v", err)
	}
	pyRandom := []string{"random", "urandom", "uuid"}
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		testutil.Missing(t, "numpy for /usr/bin/python3 (python3-numpy; scripts/install-deps.sh)")
	} else {
		pyRandom = append(pyRandom, "np_random")
	}
	return []threadedFunction{
		{"node-threads", wire.DeployRequest{Runtime: "node", Handler: "main.handler", CodePath: filepath.Join(ex, "node", "threads")},
			[]string{"bytes", "uuid", "int", "math", "key"}},
		{"go-threads", wire.DeployRequest{Runtime: "native", Handler: "threads", CodePath: gothreads},
			[]string{"rand", "crypto"}},
		{"py-threads", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(ex, "python", "threads")},
			pyRandom},
	}
}

// TestThreadedRuntimesBoot: Node, a Go function with a goroutine ticker
// and Python with a ticker thread, a thread pool and OpenBLAS boot by
// fork, warm and cold: their threads run after the boot, they answer as
// scratch does, and every random value differs across 100 instances of
// each mode.
func TestThreadedRuntimesBoot(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	n := 100
	if testing.Short() {
		n = 10
	}
	for _, f := range threadedFunctions(t) {
		t.Run(f.name, func(t *testing.T) { checkThreadedBoots(t, e, f, n) })
	}
}

// checkThreadedBoots deploys f and checks that it boots in fork, warm and
// cold, n instances each: every answer equals scratch's (whose ticker must
// be running), and none of f.random's values repeats across instances.
func checkThreadedBoots(t *testing.T, e *env, f threadedFunction, n int) {
	t.Helper()
	if f.req.MaxInstances == 0 {
		f.req.MaxInstances = 4
	}
	e.deploy(f.name, f.req)
	e.requireTemplate(t, f.name)
	split := func(out []byte) (fixed string, random []string) {
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("output %s: %v", out, err)
		}
		for _, k := range f.random {
			v, ok := m[k]
			if !ok {
				t.Fatalf("output %s has no %q", out, k)
			}
			random = append(random, fmt.Sprint(v))
			delete(m, k)
		}
		return fmt.Sprint(m), random
	}
	ref, err := e.c.Invoke(context.Background(), f.name, "scratch", nil)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := split(ref.Output)
	if !strings.Contains(want, "ticking:true") {
		t.Fatalf("scratch: %s, want its ticker running", ref.Output)
	}
	e.requireImage(t, f.name)
	for _, mode := range []string{"fork", "warm", "cold"} {
		seen := make([]map[string]bool, len(f.random))
		for i := range seen {
			seen[i] = map[string]bool{}
		}
		for i := range n {
			inv, err := e.c.Invoke(context.Background(), f.name, mode, nil)
			if err != nil {
				t.Fatalf("%s %d: %v", mode, i, err)
			}
			got, random := split(inv.Output)
			if inv.Boot != mode || got != want {
				t.Fatalf("%s %d (boot %s) answered %s, scratch %s", mode, i, inv.Boot, got, want)
			}
			for k, v := range random {
				if seen[k][v] {
					t.Fatalf("%s %d: %s %s repeats an earlier instance's", mode, i, f.random[k], v)
				}
				seen[k][v] = true
			}
		}
	}
}
