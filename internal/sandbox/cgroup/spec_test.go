package cgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

func TestCheckPath(t *testing.T) {
	for _, p := range []string{"", "/", "x", "/a/..", "a/b", "/a//..", "/a/./b"} {
		if _, _, err := checkPath(p); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("checkPath(%q) = %v, want ErrInvalid", p, err)
		}
	}
	if parent, name, err := checkPath("/default/ctr-1"); err != nil || parent != "default" || name != "ctr-1" {
		t.Errorf("checkPath(/default/ctr-1) = %q %q %v", parent, name, err)
	}
	if parent, name, err := checkPath("/top"); err != nil || parent != "" || name != "top" {
		t.Errorf("checkPath(/top) = %q %q %v", parent, name, err)
	}
}

// An OCI container's cgroup: limits from the spec, freeze and thaw,
// update, reopen from another "process" (OpenSpec), delete.
func TestNewSpecFreezeUpdate(t *testing.T) {
	testutil.RequiresRoot(t)
	path := fmt.Sprintf("/catalyzer-spec-test/g%d", os.Getpid())
	limit := int64(64 << 20)
	g, err := NewSpec(path, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = RemoveParent("catalyzer-spec-test") }()
	defer g.Delete()
	if got := testutil.MemoryLimit(t, path); got != fmt.Sprint(limit) {
		t.Errorf("memory limit %s, want %d", got, limit)
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := g.Freeze(); err != nil {
		t.Fatal(err)
	}
	if !g.Frozen() {
		t.Error("not frozen after Freeze")
	}
	if err := g.Thaw(); err != nil {
		t.Fatal(err)
	}
	if g.Frozen() {
		t.Error("frozen after Thaw")
	}
	limit2 := int64(32 << 20)
	if err := g.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit2}}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.MemoryLimit(t, path); got != fmt.Sprint(limit2) {
		t.Errorf("memory limit after update %s, want %d", got, limit2)
	}
	h, err := OpenSpec(path)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := h.Procs()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Errorf("reopened group's procs %v %v, want [%d]", pids, err, cmd.Process.Pid)
	}
	if err := h.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSpec(path); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("OpenSpec after Delete: %v, want ErrNotFound", err)
	}
}

// TestRemoveParentSpecHierarchies: a spec group's parent is gone from
// every hierarchy once its group is deleted, cpuset and blkio included
// (which instances' groups do not use).
func TestRemoveParentSpecHierarchies(t *testing.T) {
	testutil.RequiresRoot(t)
	parent := fmt.Sprintf("catalyzer-spec-rmtest-%d", os.Getpid())
	g, err := NewSpec("/"+parent+"/g", &specs.LinuxResources{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Delete(); err != nil {
		t.Fatal(err)
	}
	if err := RemoveParent(parent); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(Root, "*", parent))
	if _, err := os.Stat(filepath.Join(Root, parent)); err == nil { // cgroup v2
		left = append(left, filepath.Join(Root, parent))
	}
	if len(left) != 0 {
		t.Fatalf("parent left in %v", left)
	}
}
