// Package testutil holds helpers shared by tests: root checks and
// counters of the kernel objects an instance may leak (read through
// procfs).
package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/procfs"
)

// RequiresRoot skips t when not running as root (Missing).
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root (namespaces, mounts, cgroups): run the tests as root, as CI does")
	}
}

// Missing skips t for a reason the CI machine never has (no root, no gcc,
// no runtime), saying why; under CI=true it fails instead, since there
// such a skip would hide a test. Skips CI may hit (a cgroup v2 only test
// on a v1 host) use t.Skip.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("CI=true, and this test cannot run here: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RunDir is where the daemon makes its instances' run dirs, one
// directory per cgroup parent (sandbox.RunDir; testutil cannot import
// sandbox, whose tests use it).
const RunDir = "/run/catalyzer/sandbox"

// Snapshot counts what an instance could leak: this process's children
// (and their descendants), mounts under the caller's own directories,
// cgroup dirs under parent, and this process's open fds.
type Snapshot struct {
	Descendants int
	Zombies     int // children of this process nobody reaped
	// Mounts counts the mounts of this mount namespace at or below the
	// run dir of parent (RunDir/parent) and the dirs given to Take: only
	// the caller's own, for other test suites on the machine mount and
	// unmount elsewhere meanwhile.
	Mounts  int
	Cgroups int
	FDs     int
}

// Take takes a Snapshot. parent is the cgroup parent name the instances
// run under: cgroups are counted under it, and mounts under RunDir/parent
// and under each of dirs (a state dir, where image layers are mounted).
func Take(t testing.TB, parent string, dirs ...string) Snapshot {
	t.Helper()
	mounts := 0
	for _, d := range append([]string{filepath.Join(RunDir, parent)}, dirs...) {
		mounts += len(MountsUnder(t, d))
	}
	return Snapshot{
		Descendants: len(Descendants(os.Getpid())),
		Zombies:     Zombies(os.Getpid()),
		Mounts:      mounts,
		Cgroups:     countCgroups(parent),
		FDs:         countFDs(),
	}
}

// MountsUnder lists the mount points at or below dir in this process's
// mount namespace, as mountinfo gives them (a point stacked k times
// appears k times). It fails t if mountinfo cannot be read.
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	out, err := procfs.MountPointsUnder(procfs.Self, dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// proc is one process as /proc/PID/stat shows it.
type proc struct {
	pid, ppid int
	state     byte
}

// procs lists every process; one that exits while they are read is left
// out.
func procs() []proc {
	var out []proc
	pids, _ := procfs.PIDs()
	for _, pid := range pids {
		st, err := procfs.Stat(pid)
		if err != nil {
			continue
		}
		out = append(out, proc{pid: pid, ppid: st.PPID(), state: st.State})
	}
	return out
}

// Descendants returns the pids of every live (not zombie) descendant of
// pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range procs() {
		if p.state != 'Z' {
			children[p.ppid] = append(children[p.ppid], p.pid)
		}
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			out = append(out, c)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// Zombies counts the unreaped (zombie) children of ppid.
func Zombies(ppid int) int {
	n := 0
	for _, p := range procs() {
		if p.state == 'Z' && p.ppid == ppid {
			n++
		}
	}
	return n
}

// countFDs counts this process's open descriptors, or -1.
func countFDs() int {
	fds, err := procfs.FDLinks(procfs.Self)
	if err != nil {
		return -1
	}
	return len(fds)
}

func countCgroups(parent string) int {
	return len(CgroupDirs(filepath.Join(parent, "*")))
}

// CgroupDirs lists the cgroup directories matching the glob rel on this
// host, whatever its cgroup version: /sys/fs/cgroup/<rel> (v2) and
// /sys/fs/cgroup/<controller>/<rel> (v1 and hybrid), so that a check for
// cgroups left behind cannot pass vacuously on either.
func CgroupDirs(rel string) []string {
	var dirs []string
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/*"} {
		matches, _ := filepath.Glob(filepath.Join(root, rel))
		for _, d := range matches {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				dirs = append(dirs, d)
			}
		}
	}
	return dirs
}

// CgroupFile is the path of a cgroup's control file on this host: on
// cgroup v2 /sys/fs/cgroup/<rel>/<v2>, on v1 (and hybrid)
// /sys/fs/cgroup/<controller>/<rel>/<v1>. A test asserts on the one the
// host has, so that no check passes vacuously on the other.
func CgroupFile(rel, controller, v1, v2 string) string {
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return filepath.Join("/sys/fs/cgroup", rel, v2)
	}
	return filepath.Join("/sys/fs/cgroup", controller, rel, v1)
}

// MemoryLimit reads the memory limit of cgroup rel ("max" on v2 means
// none, as a huge number does on v1).
func MemoryLimit(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(CgroupFile(rel, "memory", "memory.limit_in_bytes", "memory.max"))
	if err != nil {
		t.Fatalf("memory limit of %s: %v", rel, err)
	}
	return strings.TrimSpace(string(b))
}
