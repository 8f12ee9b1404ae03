package cgroup

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Root is where the cgroup hierarchies are mounted.
const Root = "/sys/fs/cgroup"

// cpuPeriod is the CFS period in microseconds (the kernel default).
const cpuPeriod = 100000

// KillTimeout bounds how long Kill waits for a group to empty.
var KillTimeout = 10 * time.Second

// Limits are an instance's resource limits; 0 means unlimited.
type Limits struct {
	MemoryBytes int64 // memory (v1 memory.limit_in_bytes, v2 memory.max); no swap beyond it
	PidsMax     int64 // tasks (pids.max)
	CPUMillis   int64 // CPU bandwidth: 1000 = one CPU
}

// Stats is a small snapshot of a group's usage.
type Stats struct {
	MemoryUsage    uint64 // bytes charged now
	MemoryMaxUsage uint64 // high-water mark (v2: memory.peak; 0 where the kernel lacks it)
	PidsCurrent    uint64 // tasks now
}

// Mode returns "v1", "v2" or "hybrid" as detected on this host, or
// "unavailable" when no cgroup file system is mounted.
func Mode() string {
	switch cgroups.Mode() {
	case cgroups.Legacy:
		return "v1"
	case cgroups.Hybrid:
		return "hybrid"
	case cgroups.Unified:
		return "v2"
	}
	return "unavailable"
}

// v1 controllers: required ones must be mounted, optional ones are used
// when they are.
var (
	v1Required = []cgroup1.Name{cgroup1.Memory, cgroup1.Pids, cgroup1.Cpu, cgroup1.Devices}
	v1Optional = []cgroup1.Name{cgroup1.Cpuacct, cgroup1.Freezer}
)

// Group is one instance's cgroup. Its methods are safe for concurrent use.
type Group struct {
	parent, name string
	unified      bool

	mu      sync.Mutex
	deleted bool
	v1      cgroup1.Cgroup
	v2      *cgroup2.Manager
	dirs    map[string]string // hierarchy ("memory", "unified") -> absolute directory
}

// checkName validates one path element.
func checkName(what, s string) error {
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") {
		return fmt.Errorf("cgroup %s %q: %w", what, s, errdefs.ErrInvalid)
	}
	return nil
}

// checkParent validates a parent path ("catalyzer", "catalyzer/fn").
func checkParent(parent string) error {
	p := strings.Trim(parent, "/")
	if p == "" {
		return fmt.Errorf("cgroup parent %q: %w", parent, errdefs.ErrInvalid)
	}
	for _, el := range strings.Split(p, "/") {
		if err := checkName("parent", el); err != nil {
			return fmt.Errorf("cgroup parent %q: %w", parent, err)
		}
	}
	return nil
}

// DeviceRules is the device access every group gets, runc's default: no
// device may be read or written except the few a sandbox's /dev holds;
// mknod is allowed (as in Docker) but the node cannot then be opened.
// Without it a process with CAP_MKNOD could create and open the host's
// disks.
var DeviceRules = []specs.LinuxDeviceCgroup{
	devRule(false, "a", -1, -1, "rwm"),
	devRule(true, "c", -1, -1, "m"),
	devRule(true, "b", -1, -1, "m"),
	devRule(true, "c", 1, 3, "rwm"),    // null
	devRule(true, "c", 1, 5, "rwm"),    // zero
	devRule(true, "c", 1, 7, "rwm"),    // full
	devRule(true, "c", 1, 8, "rwm"),    // random
	devRule(true, "c", 1, 9, "rwm"),    // urandom
	devRule(true, "c", 5, 0, "rwm"),    // tty
	devRule(true, "c", 5, 1, "rwm"),    // console
	devRule(true, "c", 5, 2, "rwm"),    // ptmx
	devRule(true, "c", 136, -1, "rwm"), // pts/*
}

// devRule is one device rule; -1 is the wildcard major or minor. Type,
// Major and Minor are always set: the v2 (eBPF) filter requires them.
func devRule(allow bool, typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
	return specs.LinuxDeviceCgroup{Allow: allow, Type: typ, Major: &major, Minor: &minor, Access: access}
}

func mounted(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && (st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC)
}

// v1Hierarchies returns the v1 controllers to use, or ErrNotSupported.
func v1Hierarchies() ([]cgroup1.Name, error) {
	var out []cgroup1.Name
	for _, n := range v1Required {
		if !mounted(filepath.Join(Root, string(n))) {
			return nil, fmt.Errorf("cgroup v1 controller %s not mounted at %s: %w", n, Root, errdefs.ErrNotSupported)
		}
		out = append(out, n)
	}
	for _, n := range v1Optional {
		if mounted(filepath.Join(Root, string(n))) {
			out = append(out, n)
		}
	}
	return out, nil
}

func v1Subsystem(n cgroup1.Name) cgroup1.Subsystem {
	switch n {
	case cgroup1.Memory:
		return cgroup1.NewMemory(Root)
	case cgroup1.Pids:
		return cgroup1.NewPids(Root)
	case cgroup1.Cpu:
		return cgroup1.NewCpu(Root)
	case cgroup1.Cpuacct:
		return cgroup1.NewCpuacct(Root)
	case cgroup1.Freezer:
		return cgroup1.NewFreezer(Root)
	case cgroup1.Devices:
		return cgroup1.NewDevices(Root)
	case cgroup1.Cpuset: // NewSpec's
		return cgroup1.NewCpuset(Root)
	case cgroup1.Blkio: // NewSpec's
		return cgroup1.NewBlkio(Root)
	}
	panic("cgroup: unexpected v1 controller " + n)
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// New creates <parent>/<name> with limits l in every needed hierarchy.
func New(parent, name string, l Limits) (*Group, error) {
	if err := checkParent(parent); err != nil {
		return nil, err
	}
	if err := checkName("name", name); err != nil {
		return nil, err
	}
	if l.MemoryBytes < 0 || l.PidsMax < 0 || l.CPUMillis < 0 {
		return nil, fmt.Errorf("cgroup %s/%s: negative limit %+v: %w", parent, name, l, errdefs.ErrInvalid)
	}
	parent = strings.Trim(parent, "/")
	rel := "/" + parent + "/" + name
	g := &Group{parent: parent, name: name, dirs: map[string]string{}}
	switch cgroups.Mode() {
	case cgroups.Unified:
		if err := g.newUnified(rel, l); err != nil {
			return nil, err
		}
		return g, nil
	case cgroups.Legacy, cgroups.Hybrid:
	default:
		return nil, fmt.Errorf("create cgroup %s: no cgroup file system at %s: %w", rel, Root, errdefs.ErrNotSupported)
	}
	names, err := v1Hierarchies()
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", rel, err)
	}
	for _, n := range names {
		g.dirs[string(n)] = filepath.Join(Root, string(n), parent, name)
	}
	if err := g.createV1(rel, names, v1Resources(l)); err != nil {
		return nil, err
	}
	return g, nil
}

// cpuQuota is the CFS quota per cpuPeriod that l.CPUMillis asks for; 0:
// none.
func cpuQuota(l Limits) int64 {
	if l.CPUMillis <= 0 {
		return 0
	}
	return max(l.CPUMillis*cpuPeriod/1000, 1000) // the kernel's minimum quota is 1 ms
}

// v2Resources are l, and DeviceRules, on cgroup v2: no swap (where the
// kernel accounts it) and the whole group OOM-killed together.
func v2Resources(l Limits) *cgroup2.Resources {
	res := &cgroup2.Resources{Devices: DeviceRules}
	if l.MemoryBytes > 0 {
		zero, oomGroup := int64(0), true
		res.Memory = &cgroup2.Memory{Max: &l.MemoryBytes, OOMGroup: &oomGroup}
		if exists(filepath.Join(Root, "memory.swap.max")) || exists(filepath.Join(Root, "init.scope", "memory.swap.max")) {
			res.Memory.Swap = &zero
		}
	}
	if l.PidsMax > 0 {
		res.Pids = &cgroup2.Pids{Max: l.PidsMax}
	}
	if quota := cpuQuota(l); quota > 0 {
		period := uint64(cpuPeriod)
		res.CPU = &cgroup2.CPU{Max: cgroup2.NewCPUMax(&quota, &period)}
	}
	return res
}

// v1Resources are l, and DeviceRules, on cgroup v1: memory+swap equal to
// memory (no swap) where the kernel accounts swap, swappiness 0, and the
// OOM killer on.
func v1Resources(l Limits) *specs.LinuxResources {
	res := &specs.LinuxResources{Devices: DeviceRules}
	if l.MemoryBytes > 0 {
		swappiness, noDisable := uint64(0), false
		res.Memory = &specs.LinuxMemory{Limit: &l.MemoryBytes, Swappiness: &swappiness, DisableOOMKiller: &noDisable}
		if exists(filepath.Join(Root, "memory", "memory.memsw.limit_in_bytes")) {
			res.Memory.Swap = &l.MemoryBytes
		}
	}
	if l.PidsMax > 0 {
		res.Pids = &specs.LinuxPids{Limit: &l.PidsMax}
	}
	if quota := cpuQuota(l); quota > 0 {
		period := uint64(cpuPeriod)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
	return res
}

// newUnified creates g at rel on cgroup v2 with limits l, and has the
// parent delegate memory and pids to it even when no limit asks for them,
// so that Stats and OOMKilled work: without memory.events an OOM kill
// would pass for a plain SIGKILL. (A controller the parent has already
// delegated is a no-op; only the direct parent's write decides the
// result.) What it made is removed when it fails.
func (g *Group) newUnified(rel string, l Limits) error {
	m, err := cgroup2.NewManager(Root, rel, v2Resources(l))
	if err != nil {
		return fmt.Errorf("create cgroup %s: %w", rel, wrapErr(err))
	}
	g.unified, g.v2 = true, m
	g.dirs["unified"] = filepath.Join(Root, rel)
	if err := m.ToggleControllers([]string{"memory", "pids"}, cgroup2.Enable); err != nil {
		err = fmt.Errorf("create cgroup %s: delegate the memory and pids controllers: %w", rel, wrapErr(err))
		if derr := m.Delete(); derr != nil {
			err = errors.Join(err, fmt.Errorf("remove cgroup %s: %w", rel, derr))
		}
		return err
	}
	return nil
}

// createV1 creates g (its dirs set) at rel in the v1 hierarchies names,
// with res; it removes what it made when it fails.
func (g *Group) createV1(rel string, names []cgroup1.Name, res *specs.LinuxResources) error {
	hier := func() ([]cgroup1.Subsystem, error) {
		var s []cgroup1.Subsystem
		for _, n := range names {
			s = append(s, v1Subsystem(n))
		}
		return s, nil
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(rel), res, cgroup1.WithHierarchy(hier))
	if err != nil {
		_ = g.removeDirs()
		return fmt.Errorf("create cgroup %s: %w", rel, wrapErr(err))
	}
	g.v1 = cg
	return nil
}

func wrapErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotSupported)
	}
	return err
}

// LiftMemoryLimit removes the group's memory limit (memory and
// memory+swap). For a frozen template: it allocates nothing any more, but
// the kernel memory its forks take at clone (page tables, task structs)
// is charged to it, and its OOM kill would end every fork nested in its
// PID namespace.
func (g *Group) LiftMemoryLimit() error {
	if dir, ok := g.dirs["unified"]; ok {
		if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte("max"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroup %s: lift memory limit: %w", g.Path(), err)
		}
		return nil
	}
	dir, ok := g.dirs["memory"]
	if !ok {
		return nil
	}
	// memory+swap first: it may never be below memory.
	for _, f := range []string{"memory.memsw.limit_in_bytes", "memory.limit_in_bytes"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("-1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("cgroup %s: lift memory limit: %s: %w", g.Path(), f, err)
		}
	}
	return nil
}

// Path returns the group's path below each hierarchy root, "/<parent>/<name>".
func (g *Group) Path() string {
	if g.parent == "" { // a top-level group (NewSpec)
		return "/" + g.name
	}
	return "/" + g.parent + "/" + g.name
}

// Dirs returns the group's directory in each hierarchy, keyed by hierarchy
// ("memory", "pids", ... on v1; "unified" on v2).
func (g *Group) Dirs() map[string]string {
	out := make(map[string]string, len(g.dirs))
	for k, v := range g.dirs {
		out[k] = v
	}
	return out
}

func (g *Group) live() error {
	if g.deleted {
		return fmt.Errorf("cgroup %s: deleted: %w", g.Path(), errdefs.ErrNotFound)
	}
	return nil
}

// Add moves process pid (all its threads) into the group.
func (g *Group) Add(pid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return err
	}
	if pid <= 0 {
		return fmt.Errorf("cgroup %s: add pid %d: %w", g.Path(), pid, errdefs.ErrInvalid)
	}
	var err error
	if g.unified {
		err = g.v2.AddProc(uint64(pid))
	} else {
		err = g.v1.Add(cgroup1.Process{Pid: pid})
	}
	if err != nil {
		return fmt.Errorf("cgroup %s: add pid %d: %w", g.Path(), pid, err)
	}
	return nil
}

// Procs returns the pids in the group (in any of its hierarchies), sorted.
func (g *Group) Procs() ([]int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return nil, err
	}
	return procsIn(g.dirs)
}

func readPids(file string) ([]int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(data)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", file, err)
		}
		out = append(out, pid)
	}
	return out, nil
}

// procsIn returns the union of cgroup.procs over dirs; a missing directory
// counts as empty.
func procsIn(dirs map[string]string) ([]int, error) {
	var all []int
	for _, d := range dirs {
		pids, err := readPids(filepath.Join(d, "cgroup.procs"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("cgroup procs: %w", err)
		}
		all = append(all, pids...)
	}
	slices.Sort(all)
	return slices.Compact(all), nil
}

// readKV returns the value of key in a "key value" per line file.
func readKV(file, key string) (uint64, bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, false, fmt.Errorf("parse %s %s: %w", file, key, err)
			}
			return n, true, nil
		}
	}
	return 0, false, sc.Err()
}

func readUint(file string) (uint64, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "max" {
		return 0, nil
	}
	return strconv.ParseUint(s, 10, 64)
}

// OOMKilled reports whether the kernel has OOM-killed a process in the
// group (v1: memory.oom_control "oom_kill", kernel 4.13+; v2:
// memory.events "oom_kill").
func (g *Group) OOMKilled() (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return false, err
	}
	var file string
	if g.unified {
		file = filepath.Join(g.dirs["unified"], "memory.events")
	} else {
		file = filepath.Join(g.dirs["memory"], "memory.oom_control")
	}
	n, ok, err := readKV(file, "oom_kill")
	if err != nil {
		return false, fmt.Errorf("cgroup %s: oom state: %w", g.Path(), wrapErr(err))
	}
	if !ok {
		return false, fmt.Errorf("cgroup %s: %s has no oom_kill counter: %w", g.Path(), file, errdefs.ErrNotSupported)
	}
	return n > 0, nil
}

// Stats returns memory usage, its high-water mark and the task count.
func (g *Group) Stats() (Stats, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return Stats{}, err
	}
	var s Stats
	var err error
	read := func(dst *uint64, file string, optional bool) {
		if err != nil {
			return
		}
		v, e := readUint(file)
		if e != nil {
			if optional && errors.Is(e, fs.ErrNotExist) {
				return
			}
			err = fmt.Errorf("cgroup %s: stats: %w", g.Path(), e)
			return
		}
		*dst = v
	}
	if g.unified {
		d := g.dirs["unified"]
		read(&s.MemoryUsage, filepath.Join(d, "memory.current"), false)
		read(&s.MemoryMaxUsage, filepath.Join(d, "memory.peak"), true)
		read(&s.PidsCurrent, filepath.Join(d, "pids.current"), false)
	} else {
		read(&s.MemoryUsage, filepath.Join(g.dirs["memory"], "memory.usage_in_bytes"), false)
		read(&s.MemoryMaxUsage, filepath.Join(g.dirs["memory"], "memory.max_usage_in_bytes"), false)
		read(&s.PidsCurrent, filepath.Join(g.dirs["pids"], "pids.current"), false)
	}
	return s, err
}

// Kill sends SIGKILL to every process in the group and waits until the
// group is empty, or fails after KillTimeout.
func (g *Group) Kill() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.live(); err != nil {
		return err
	}
	return killDirs(g.Path(), g.dirs)
}

// killDirs kills every process in dirs (one group's directories, keyed by
// hierarchy) and waits for them to be gone.
func killDirs(what string, dirs map[string]string) error {
	if d, ok := dirs["unified"]; ok {
		// cgroup.kill (5.14+) kills atomically, forks included.
		if err := os.WriteFile(filepath.Join(d, "cgroup.kill"), []byte("1"), 0); err == nil {
			return waitEmpty(what, dirs, nil)
		} else if errors.Is(err, fs.ErrNotExist) && !exists(d) {
			return nil
		}
	}
	freezer := ""
	if d, ok := dirs["freezer"]; ok {
		freezer = filepath.Join(d, "freezer.state")
	} else if d, ok := dirs["unified"]; ok && exists(filepath.Join(d, "cgroup.freeze")) {
		freezer = filepath.Join(d, "cgroup.freeze")
	}
	freeze := func(on bool) {
		if freezer == "" {
			return
		}
		v := "THAWED"
		if strings.HasSuffix(freezer, "cgroup.freeze") {
			v = "0"
			if on {
				v = "1"
			}
		} else if on {
			v = "FROZEN"
		}
		_ = os.WriteFile(freezer, []byte(v), 0)
	}
	return waitEmpty(what, dirs, func(pids []int) {
		// Freeze so nothing forks while we signal; a frozen task dies
		// of SIGKILL once thawed.
		freeze(true)
		if again, err := procsIn(dirs); err == nil {
			pids = again
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		freeze(false)
	})
}

// waitEmpty polls until dirs hold no process, calling kill (if not nil)
// with what remains on each round.
func waitEmpty(what string, dirs map[string]string, kill func([]int)) error {
	deadline := time.Now().Add(KillTimeout)
	delay := time.Millisecond
	for {
		pids, err := procsIn(dirs)
		if err != nil {
			return fmt.Errorf("kill cgroup %s: %w", what, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kill cgroup %s: %d processes (%v) still there after %v: %w",
				what, len(pids), pids, KillTimeout, os.ErrDeadlineExceeded)
		}
		if kill != nil {
			kill(pids)
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Delete kills every process in the group and removes its directory in
// every hierarchy. Deleting a deleted group does nothing.
func (g *Group) Delete() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.deleted {
		return nil
	}
	if err := killDirs(g.Path(), g.dirs); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := g.removeDirs(); err != nil {
		return err
	}
	g.deleted = true
	return nil
}

func (g *Group) removeDirs() error {
	var errs []error
	for _, d := range g.dirs {
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete cgroup %s: %w", g.Path(), err)
	}
	return nil
}

// rmdir removes a cgroup directory, retrying while the kernel still reports
// it busy (tasks just killed); a missing directory is not an error.
func rmdir(dir string) error {
	deadline := time.Now().Add(KillTimeout)
	for {
		err := unix.Rmdir(dir)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT):
			return nil
		case (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EAGAIN)) && time.Now().Before(deadline):
			time.Sleep(10 * time.Millisecond)
		default:
			return fmt.Errorf("rmdir %s: %w", dir, err)
		}
	}
}

// hierarchyRoots returns the hierarchy roots a group lives in on this
// host, keyed like Group.Dirs.
func hierarchyRoots() (map[string]string, error) {
	roots := map[string]string{}
	if cgroups.Mode() == cgroups.Unified {
		roots["unified"] = Root
		return roots, nil
	}
	names, err := v1Hierarchies()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		roots[string(n)] = filepath.Join(Root, string(n))
	}
	return roots, nil
}

// Sweep kills and deletes every group under parent, in every hierarchy:
// what a killed daemon left behind. It returns how many groups (distinct
// names) it removed; a parent that does not exist yields 0. The parent's
// own directory (its last path element) is removed when left empty; call
// Sweep before creating groups under parent, not concurrently.
func Sweep(parent string) (int, error) {
	if err := checkParent(parent); err != nil {
		return 0, err
	}
	parent = strings.Trim(parent, "/")
	roots, err := hierarchyRoots()
	if err != nil {
		return 0, fmt.Errorf("sweep cgroup %s: %w", parent, err)
	}
	groups := map[string]map[string]string{} // name -> hierarchy -> dir
	for h, root := range roots {
		entries, err := os.ReadDir(filepath.Join(root, parent))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("sweep cgroup %s: %w", parent, err)
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			if groups[e.Name()] == nil {
				groups[e.Name()] = map[string]string{}
			}
			groups[e.Name()][h] = filepath.Join(root, parent, e.Name())
		}
	}
	var errs []error
	n := 0
	for name, dirs := range groups {
		what := "/" + parent + "/" + name
		if err := sweepTree(what, dirs); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("sweep cgroup %s: %w", parent, err)
	}
	// The parent goes too when empty (New recreates it on demand); one a
	// concurrent New has just used stays (EBUSY).
	for _, root := range roots {
		if err := unix.Rmdir(filepath.Join(root, parent)); err != nil &&
			!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", filepath.Join(root, parent), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("sweep cgroup %s: %w", parent, err)
	}
	return n, nil
}

// sweepTree kills and removes a group and any groups nested in it (ours
// have none, but a killed daemon's successor must not trip over them).
func sweepTree(what string, dirs map[string]string) error {
	children := map[string]map[string]string{}
	for h, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sweep %s: %w", what, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				if children[e.Name()] == nil {
					children[e.Name()] = map[string]string{}
				}
				children[e.Name()][h] = filepath.Join(d, e.Name())
			}
		}
	}
	for name, c := range children {
		if err := sweepTree(what+"/"+name, c); err != nil {
			return err
		}
	}
	if err := killDirs(what, dirs); err != nil {
		return err
	}
	for _, d := range dirs {
		if err := rmdir(d); err != nil {
			return fmt.Errorf("sweep %s: %w", what, err)
		}
	}
	return nil
}

// RemoveParent removes parent's directory in every hierarchy if it holds
// no group any more (a one-shot command's parent, once its group is
// gone); a parent still in use is left alone.
func RemoveParent(parent string) error {
	if err := checkParent(parent); err != nil {
		return err
	}
	roots, err := hierarchyRoots()
	if err != nil {
		return err
	}
	if cgroups.Mode() != cgroups.Unified {
		// Spec-driven groups (package oci) also live in these.
		for _, n := range v1SpecOptional {
			roots[string(n)] = filepath.Join(Root, string(n))
		}
	}
	for _, root := range roots {
		err := os.Remove(filepath.Join(root, strings.Trim(parent, "/")))
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove cgroup parent %s: %w", parent, err)
		}
	}
	return nil
}
