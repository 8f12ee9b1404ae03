package boot

import (
	"slices"
	"testing"
)

// TestInstanceEnvPinsRuntimeEnv: a function's env may add variables but
// not override the control fd or what its runtime pins (Node's
// UV_USE_IO_URING=0: an io_uring ring cannot be carried into a clone).
func TestInstanceEnvPinsRuntimeEnv(t *testing.T) {
	f := Function{Name: "f", Runtime: "node", Env: map[string]string{"UV_USE_IO_URING": "1", "CATALYZER_CONTROL_FD": "9", "MINE": "x"}}
	env := InstanceEnv(f)
	for _, want := range []string{"UV_USE_IO_URING=0", "CATALYZER_CONTROL_FD=3", "MINE=x", "CATALYZER_FUNCTION=f"} {
		if !slices.Contains(env, want) {
			t.Errorf("node env %q lacks %s", env, want)
		}
	}
	f.Runtime = "python"
	if env := InstanceEnv(f); !slices.Contains(env, "UV_USE_IO_URING=1") {
		t.Errorf("python env %q: UV_USE_IO_URING is the function's own there", env)
	}
}
