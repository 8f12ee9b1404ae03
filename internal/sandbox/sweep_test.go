package sandbox

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"

	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestSweepStackedAndBusy: what a killed daemon leaves in its run dir
// that a plain unmount of each directory does not remove: three tmpfs
// layers stacked on one directory (three functions with one image key),
// an overlay on a tmpfs (an instance's root), and a tmpfs some process
// still has its cwd in (busy). Sweep removes all of it, and reports
// nothing left (it refused to go on: "remove .../layer-...: device or
// resource busy").
func TestSweepStackedAndBusy(t *testing.T) {
	requireRoot(t)
	parent := testParent + "-stacked"
	base := filepath.Join(RunDir, parent)
	t.Cleanup(func() { Sweep(parent) })
	for range 3 {
		if _, err := NewLayerTmpfs(parent, "layer-0123456789abcdef", 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	inst := filepath.Join(base, "inst-1")
	if err := os.MkdirAll(inst, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sandboxinit.MountOverlay(inst, filepath.Join(base, "layer-0123456789abcdef"), 1<<20, 0); err != nil {
		t.Fatal(err)
	}
	busy, err := NewLayerTmpfs(parent, "busy-1", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	sleeper := exec.Command("/bin/sleep", "100")
	sleeper.Dir = busy.Dir
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sleeper.Process.Kill(); sleeper.Wait() })
	if err := unix.Unmount(busy.Dir, 0); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("unmount of a tmpfs that a process has its cwd in: %v, want EBUSY", err)
	}
	mps, _ := sandboxinit.MountsUnder(base)
	if len(mps) != 6 {
		t.Fatalf("set up %d mounts, want 6: %v", len(mps), mps)
	}

	n, err := Sweep(parent)
	if err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if n != 3 {
		t.Errorf("Sweep removed %d run dirs, want 3", n)
	}
	if mps, _ := sandboxinit.MountsUnder(base); len(mps) != 0 {
		t.Errorf("still mounted after Sweep: %v", mps)
	}
	if _, err := os.Stat(base); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run dir after Sweep: %v", err)
	}
}

// TestSweepReportsLeftovers: what Sweep cannot remove comes back as a
// *Leftover naming the path, and the next Sweep, once the cause is gone,
// removes it.
func TestSweepReportsLeftovers(t *testing.T) {
	requireRoot(t)
	parent := testParent + "-leftover"
	base := filepath.Join(RunDir, parent)
	t.Cleanup(func() { unix.Unmount(filepath.Join(base, "x"), unix.MNT_DETACH); Sweep(parent) })
	d := filepath.Join(base, "x", "sub")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	// Immutable: not even root may remove it.
	if err := exec.Command("chattr", "+i", filepath.Join(base, "x")).Run(); err != nil {
		testutil.Missing(t, "chattr +i: %v", err)
	}
	t.Cleanup(func() { exec.Command("chattr", "-i", filepath.Join(base, "x")).Run() })
	_, err := Sweep(parent)
	var l *Leftover
	if !errors.As(err, &l) || l.Path != filepath.Join(base, "x") {
		t.Fatalf("Sweep of an undeletable dir: %v, want a Leftover for %s", err, filepath.Join(base, "x"))
	}
	exec.Command("chattr", "-i", filepath.Join(base, "x")).Run()
	if _, err := Sweep(parent); err != nil {
		t.Fatalf("second Sweep: %v", err)
	}
	if _, err := os.Stat(base); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("run dir after Sweep: %v", err)
	}
}

// testutil keeps its own copy of RunDir (it cannot import this package,
// whose tests use it): the two must not drift apart, or leak counts would
// look at a directory nothing uses.
func TestRunDirMatchesTestutil(t *testing.T) {
	if RunDir != testutil.RunDir {
		t.Fatalf("sandbox.RunDir %q, testutil.RunDir %q", RunDir, testutil.RunDir)
	}
}
