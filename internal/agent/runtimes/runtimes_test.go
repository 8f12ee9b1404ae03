package runtimes_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

func TestLookup(t *testing.T) {
	if got := runtimes.Names(); !reflect.DeepEqual(got, []string{"python", "node", "native"}) {
		t.Fatalf("Names = %v", got)
	}
	for _, n := range runtimes.Names() {
		if r, err := runtimes.Lookup(n); err != nil || r.Name != n {
			t.Fatalf("Lookup(%q) = %+v, %v", n, r, err)
		}
	}
	_, err := runtimes.Lookup("java")
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "python, node, native") {
		t.Fatalf("Lookup(java): %v", err)
	}
}

func TestCheckHandler(t *testing.T) {
	dir := writeCode(t, map[string]string{
		"main.py": "", "main.js": "", "pkg/mod.py": "", "lib/util.js": "",
		"bin/fn": "", "data.txt": "",
	})
	os.Chmod(filepath.Join(dir, "bin/fn"), 0o755)
	os.Symlink("/bin/sh", filepath.Join(dir, "escape"))
	cases := []struct {
		rt, handler string
		ok          bool
	}{
		{"python", "main.handler", true},
		{"python", "pkg.mod.fn", true},
		{"python", "pkg/mod.fn", true},
		{"python", "main", false},
		{"python", "main.", false},
		{"python", ".handler", false},
		{"python", "../main.handler", false},
		{"python", "other.handler", false},
		{"python", "main.handler()", false},
		{"node", "main.handler", true},
		{"node", "lib.util.handler", true},
		{"node", "lib/util.handler", true},
		{"node", "nope.handler", false},
		{"native", "bin/fn", true},
		{"native", "./bin/fn", true},
		{"native", "data.txt", false},
		{"native", "bin", false},
		{"native", "missing", false},
		{"native", "../x", false},
		{"native", "bin/../bin/fn", false},
		{"native", "/bin/sh", false},
		{"native", "escape", false},
		{"native", "", false},
	}
	for _, tc := range cases {
		r, _ := runtimes.Lookup(tc.rt)
		err := r.CheckHandler(dir, tc.handler)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s CheckHandler(%q) = %v, want ok=%v", tc.rt, tc.handler, err, tc.ok)
		}
	}
}

func TestCommand(t *testing.T) {
	py, _ := runtimes.Lookup("python")
	node, _ := runtimes.Lookup("node")
	native, _ := runtimes.Lookup("native")
	if got := py.Command("/var/task", "/opt/catalyzer", "main.handler"); !reflect.DeepEqual(got, []string{"/usr/bin/python3", "-I", "-B", "/opt/catalyzer/agent.py"}) {
		t.Errorf("python: %v", got)
	}
	if got := node.Command("/var/task", "/opt/catalyzer", "main.handler"); !reflect.DeepEqual(got, []string{"/usr/bin/node", "/opt/catalyzer/agent.js"}) {
		t.Errorf("node: %v", got)
	}
	if !reflect.DeepEqual(node.Env, []string{"UV_USE_IO_URING=0"}) || py.Env != nil || native.Env != nil {
		t.Errorf("pinned env: node %q python %q native %q", node.Env, py.Env, native.Env)
	}
	if got := native.Command("/var/task", "/opt/catalyzer", "bin/fn"); !reflect.DeepEqual(got, []string{"/var/task/bin/fn"}) {
		t.Errorf("native: %v", got)
	}
}

func TestInstallAgents(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "opt")
	for i := 0; i < 2; i++ { // idempotent
		if err := runtimes.InstallAgents(dir); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "agent.py"), []byte("stale"), 0o600)
	if err := runtimes.InstallAgents(dir); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 3 {
		t.Fatalf("dir holds %d entries, want agent.py, agent.js and %s only", len(ents), runtimes.NodeReseedAddon)
	}
	for _, rt := range []string{"python", "node"} {
		r, _ := runtimes.Lookup(rt)
		p := filepath.Join(dir, r.AgentFile)
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != string(runtimes.Agent(rt)) || fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s: %v mode %v", p, err, fi.Mode())
		}
	}
}
