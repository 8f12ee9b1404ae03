package sandbox

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestPrestartExec: a prestarted sandbox runs the program Exec gives it,
// with its files in place (stdout, an extra file on fd 3), its own PID 1,
// and only Exec's phases; it runs one program.
func TestPrestartExec(t *testing.T) {
	requireRoot(t)
	for _, userns := range []bool{false, true} {
		cfg := baseConfig()
		cfg.Process = Process{}
		cfg.OwnUserNS = userns
		p, err := Prestart(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// A bad process part leaves it ready.
		if _, err := p.Exec(Process{Argv: []string{"relative"}}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("relative argv: %v", err)
		}
		extraR, extraW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		extraW.WriteString("from-fd-3")
		extraW.Close()
		outR, outW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		s, err := p.Exec(Process{Argv: []string{sh, "-c", "echo pid=$$; cat <&3; ls /proc/self/fd"},
			Env: []string{"PATH=/usr/bin:/bin"}, ExtraFiles: []*os.File{extraR}, Stdout: outW})
		extraR.Close()
		outW.Close()
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(outR)
		outR.Close()
		ex, err := s.Wait()
		if err != nil || ex.Code != 0 {
			t.Fatalf("exit %+v %v; output %q", ex, err, out)
		}
		fds := strings.Fields(string(out[strings.Index(string(out), "from-fd-3")+len("from-fd-3"):]))
		if !strings.HasPrefix(string(out), "pid=1\n") || !strings.Contains(string(out), "from-fd-3") || !slices.Equal(fds, []string{"0", "1", "2", "3", "4"}) {
			t.Errorf("userns %v: output %q (fds %v: want 0-3 and ls's own)", userns, out, fds)
		}
		var names []string
		for _, ph := range s.Phases() {
			names = append(names, ph.Name)
		}
		if want := []string{"send", "process", "security", "exec"}; !slices.Equal(names, want) {
			t.Errorf("Exec's phases %v, want %v", names, want)
		}
		if _, err := p.Exec(Process{Argv: []string{"/bin/true"}}); !errors.Is(err, errdefs.ErrConflict) {
			t.Errorf("second Exec: %v", err)
		}
		if err := p.Release(); err != nil {
			t.Errorf("Release after Exec: %v", err)
		}
		if err := s.Destroy(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPrestartRelease: a Pending never used leaves nothing behind once
// released, and cannot run a program after.
func TestPrestartRelease(t *testing.T) {
	requireRoot(t)
	parent := testParent + "-pre"
	before := testutil.Take(t, parent)
	cfg := baseConfig()
	cfg.Process = Process{}
	cfg.CgroupParent = parent
	p, err := Prestart(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Release(); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	if _, err := p.Exec(Process{Argv: []string{"/bin/true"}}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("Exec after Release: %v", err)
	}
	if after := testutil.Take(t, parent); after.Descendants != before.Descendants || after.Zombies != before.Zombies || after.Mounts != before.Mounts || after.Cgroups != before.Cgroups {
		t.Errorf("leak: before %+v after %+v", before, after)
	}
	if _, err := Prestart(Config{EnvConfig: EnvConfig{ID: newID(), CgroupParent: parent}, Process: Process{Argv: []string{sh}}}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("Prestart with a process part: %v", err)
	}
	if err := Tidy(parent); err != nil {
		t.Error(err)
	}
}
