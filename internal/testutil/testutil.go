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

// Descendants returns the pids of every live descendant of pid.
func Descendants(pid int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
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
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		children[pp] = append(children[pp], p)
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
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(ppid) {
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
