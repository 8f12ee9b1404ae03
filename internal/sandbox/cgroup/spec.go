package cgroup

import (
	"fmt"
	"path/filepath"
	"strings"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// v1SpecOptional are the extra v1 controllers a group made from an OCI
// spec (NewSpec) lives in when they are mounted: the spec's resources may
// name them (cpuset, blkio).
var v1SpecOptional = []cgroup1.Name{cgroup1.Cpuset, cgroup1.Blkio}

// checkPath validates an absolute group path such as "/default/ctr1" (an
// OCI cgroupsPath): no element empty, "." or ".."; a top-level group
// ("/ctr1") has parent "".
func checkPath(path string) (parent, name string, err error) {
	p := strings.Trim(path, "/")
	parent, name = filepath.Dir(p), filepath.Base(p)
	if !strings.HasPrefix(path, "/") || p == "" || p != filepath.Clean(p) {
		return "", "", fmt.Errorf("cgroup path %q: want /[<parent>/]<name>: %w", path, errdefs.ErrInvalid)
	}
	if parent == "." {
		parent = ""
	} else if err := checkParent(parent); err != nil {
		return "", "", err
	}
	if err := checkName("name", name); err != nil {
		return "", "", err
	}
	return parent, name, nil
}

// specDirs is the directory of group rel in each hierarchy of this host.
func specDirs(rel string) (map[string]string, []cgroup1.Name, error) {
	dirs := map[string]string{}
	if cgroups.Mode() == cgroups.Unified {
		dirs["unified"] = filepath.Join(Root, rel)
		return dirs, nil, nil
	}
	names, err := v1Hierarchies()
	if err != nil {
		return nil, nil, err
	}
	for _, n := range v1SpecOptional {
		if mounted(filepath.Join(Root, string(n))) {
			names = append(names, n)
		}
	}
	for _, n := range names {
		dirs[string(n)] = filepath.Join(Root, string(n), rel)
	}
	return dirs, names, nil
}

// NewSpec creates the group at path (an OCI cgroupsPath, "/<parent>/<name>",
// relative to every hierarchy root) with an OCI spec's resources, on v1
// or v2. Unlike New it applies res as given (nil: no limits) and adds no
// device rules of its own: an OCI bundle carries its own.
func NewSpec(path string, res *specs.LinuxResources) (*Group, error) {
	parent, name, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	if res == nil {
		res = &specs.LinuxResources{}
	}
	g := &Group{parent: parent, name: name}
	rel := g.Path()
	dirs, names, err := specDirs(rel)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", rel, err)
	}
	g.dirs = dirs
	if names == nil {
		g.unified = true
		m, err := cgroup2.NewManager(Root, rel, cgroup2.ToResources(res))
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", rel, wrapErr(err))
		}
		g.v2 = m
		return g, nil
	}
	if err := g.createV1(rel, names, res); err != nil {
		return nil, err
	}
	return g, nil
}

// OpenSpec returns the existing group at path (made by NewSpec, maybe by
// another process); a missing group wraps errdefs.ErrNotFound.
func OpenSpec(path string) (*Group, error) {
	parent, name, err := checkPath(path)
	if err != nil {
		return nil, err
	}
	g := &Group{parent: parent, name: name}
	rel := g.Path()
	dirs, names, err := specDirs(rel)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", rel, err)
	}
	g.dirs = dirs
	found := false
	for _, d := range dirs {
		found = found || exists(d)
	}
	if !found {
		return nil, fmt.Errorf("open cgroup %s: %w", rel, errdefs.ErrNotFound)
	}
	if names == nil {
		g.unified = true
		if g.v2, err = cgroup2.Load(rel, cgroup2.WithMountpoint(Root)); err != nil {
			return nil, fmt.Errorf("open cgroup %s: %w", rel, wrapErr(err))
		}
		return g, nil
	}
	hier := func() ([]cgroup1.Subsystem, error) {
		var s []cgroup1.Subsystem
		for _, n := range names {
			if exists(dirs[string(n)]) {
				s = append(s, v1Subsystem(n))
			}
		}
		return s, nil
	}
	if g.v1, err = cgroup1.Load(cgroup1.StaticPath(rel), cgroup1.WithHierarchy(hier)); err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", rel, wrapErr(err))
	}
	return g, nil
}

// Update applies res to the group (an OCI runtime's update verb).
func (g *Group) Update(res *specs.LinuxResources) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return err
	}
	var err error
	if g.unified {
		err = g.v2.Update(cgroup2.ToResources(res))
	} else {
		err = g.v1.Update(res)
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: update: %w", g.Path(), wrapErr(err))
	}
	return nil
}

// Freeze stops every task of the group (v1 freezer, v2 cgroup.freeze);
// Thaw lets them go on. A host without a freezer wraps
// errdefs.ErrNotSupported.
func (g *Group) Freeze() error { return g.setFrozen(true) }

// Thaw undoes Freeze.
func (g *Group) Thaw() error { return g.setFrozen(false) }

func (g *Group) setFrozen(on bool) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return err
	}
	if !g.unified {
		if _, ok := g.dirs["freezer"]; !ok {
			return fmt.Errorf("cgroup %s: no freezer hierarchy: %w", g.Path(), errdefs.ErrNotSupported)
		}
	}
	var err error
	switch {
	case g.unified && on:
		err = g.v2.Freeze()
	case g.unified:
		err = g.v2.Thaw()
	case on:
		err = g.v1.Freeze()
	default:
		err = g.v1.Thaw()
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: freeze=%v: %w", g.Path(), on, wrapErr(err))
	}
	return nil
}

// Frozen reports whether the group is frozen (Freeze).
func (g *Group) Frozen() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deleted {
		return false
	}
	if g.unified {
		v, err := readUint(filepath.Join(g.dirs["unified"], "cgroup.freeze"))
		return err == nil && v == 1
	}
	return g.v1.State() == cgroup1.Frozen
}
