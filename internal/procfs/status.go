package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Status reads /proc/PID/status as key → value ("State" → "S (sleeping)",
// "Uid" → "0\t0\t0\t0"), values trimmed of surrounding space. See the
// package doc for its errors; a zombie is an exited process.
func Status(pid int) (map[string]string, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	b, err := readFile(pid, "status")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, exited(pid)
	}
	if err != nil {
		return nil, err
	}
	m, err := parseStatus(b)
	if err != nil {
		return nil, fmt.Errorf("procfs: /proc/%d/status: %w", pid, err)
	}
	if isExitState(m["State"]) {
		return nil, exited(pid)
	}
	return m, nil
}

func parseStatus(b []byte) (map[string]string, error) {
	m := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("status line %q: %w", line, ErrFormat)
		}
		m[k] = strings.TrimSpace(v)
	}
	if m["State"] == "" {
		return nil, fmt.Errorf("status without State: %w", ErrFormat)
	}
	return m, nil
}

// Threads lists the thread ids of pid (the entries of /proc/PID/task) in
// increasing order; the first is pid itself while its main thread lives.
// See the package doc for its errors.
func Threads(pid int) ([]int, error) {
	if err := checkPID(pid); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(path(pid, "task"))
	if err != nil {
		return nil, vanished(err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			return nil, fmt.Errorf("procfs: /proc/%d/task/%s: %w", pid, e.Name(), ErrFormat)
		}
		tids = append(tids, tid)
	}
	slices.Sort(tids)
	return tids, alive(pid)
}
