package runtimes_test

import (
	"archive/zip"
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
	if got := runtimes.Names(); !reflect.DeepEqual(got, []string{"python", "node", "java", "native"}) {
		t.Fatalf("Names = %v", got)
	}
	for _, n := range runtimes.Names() {
		if r, err := runtimes.Lookup(n); err != nil || r.Name != n {
			t.Fatalf("Lookup(%q) = %+v, %v", n, r, err)
		}
	}
	_, err := runtimes.Lookup("ruby")
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "python, node, java, native") {
		t.Fatalf("Lookup(ruby): %v", err)
	}
}

func TestCheckHandler(t *testing.T) {
	dir := writeCode(t, map[string]string{
		"main.py": "", "main.js": "", "pkg/mod.py": "", "lib/util.js": "",
		"bin/fn": "", "data.txt": "", "p/q/C.class": "", "top.jar": "", "lib/x.jar": "", "lib/y.jar": "",
	})
	writeJar(t, filepath.Join(dir, "top.jar"), "p/Other.class")
	writeJar(t, filepath.Join(dir, "lib/x.jar"), "META-INF/MANIFEST.MF")
	writeJar(t, filepath.Join(dir, "lib/y.jar"), "r/InJar.class")
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
		{"java", "p.q.C::handle", true},
		{"java", "r.InJar::h", true},
		{"java", "p.q.C::h", true},
		{"java", "p.q.D::h", false},
		{"java", "p.q.C", false},
		{"java", "p.q.C::", false},
		{"java", "p/q/C::h", false},
		{"java", "p.q.C::h::i", false},
		{"java", "p..C::h", false},
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

// writeJar writes a jar at path holding one empty entry, name.
func writeJar(t *testing.T, path, name string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	z := zip.NewWriter(f)
	if _, err := z.Create(name); err != nil {
		t.Fatal(err)
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
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
	java, _ := runtimes.Lookup("java")
	want := append(append([]string{runtimes.Java}, runtimes.JavaFlags...), "-p", "/opt/catalyzer/agent.jar", "-m", "catalyzer/catalyzer.agent.Main")
	if got := java.Command("/var/task", "/opt/catalyzer", "p.C::h"); !reflect.DeepEqual(got, want) {
		t.Errorf("java: %v", got)
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
	if len(ents) != 4 {
		t.Fatalf("dir holds %d entries, want agent.py, agent.js, %s and agent.jar only", len(ents), runtimes.NodeReseedAddon)
	}
	for _, rt := range []string{"python", "node", "java"} {
		r, _ := runtimes.Lookup(rt)
		p := filepath.Join(dir, r.AgentFile)
		b, err := os.ReadFile(p)
		fi, _ := os.Stat(p)
		if err != nil || string(b) != string(runtimes.Agent(rt)) || fi.Mode().Perm() != 0o644 {
			t.Fatalf("%s: %v mode %v", p, err, fi.Mode())
		}
	}
}
