// Package testutil holds helpers shared by tests: root checks and
// counters of the kernel objects an instance may leak.
package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// RequiresRoot skips t when not running as root.
func RequiresRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, cgroups): run the tests as root, as CI does")
	}
}

// Snapshot counts what an instance could leak: this process's children
// (and their descendants), mounts in this mount namespace, cgroup dirs
// under parent, and this process's open fds.
type Snapshot struct {
	Descendants int
	Zombies     int // children of this process nobody reaped
	Mounts      int
	Cgroups     int
	FDs         int
}

// Take takes a Snapshot. parent is the cgroup parent name to count under.
func Take(t testing.TB, parent string) Snapshot {
	t.Helper()
	return Snapshot{
		Descendants: len(Descendants(os.Getpid())),
		Zombies:     Zombies(os.Getpid()),
		Mounts:      countLines("/proc/self/mountinfo"),
		Cgroups:     countCgroups(parent),
		FDs:         countDir("/proc/self/fd"),
	}
}

// proc is one process as /proc/PID/stat shows it.
type proc struct {
	pid, ppid int
	state     string
}

// procs lists every process.
func procs() []proc {
	var out []proc
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		out = append(out, proc{pid: pid, ppid: ppid, state: f[0]})
	}
	return out
}

// Descendants returns the pids of every live (not zombie) descendant of
// pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	for _, p := range procs() {
		if p.state != "Z" {
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
		if p.state == "Z" && p.ppid == ppid {
			n++
		}
	}
	return n
}

func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	return strings.Count(string(b), "\n")
}

func countDir(path string) int {
	ents, err := os.ReadDir(path)
	if err != nil {
		return -1
	}
	return len(ents)
}

func countCgroups(parent string) int {
	n := 0
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/*"} {
		dirs, _ := filepath.Glob(filepath.Join(root, parent, "*"))
		for _, d := range dirs {
			if st, err := os.Stat(d); err == nil && st.IsDir() {
				n++
			}
		}
	}
	return n
}
