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

// StatusInfo is /proc/PID/status as key → value ("State" → "S (sleeping)",
// "Uid" → "0\t0\t0\t0"), values trimmed of surrounding space.
type StatusInfo map[string]string

// Uints parses the value of key as whitespace-separated unsigned numbers
// in base: "Uid" and "Groups" in 10, "Umask" in 8, "SigPnd" in 16. A key
// that is missing, or a field that is not such a number, is an error
// wrapping ErrFormat ("Groups" may be empty: nil, nil).
func (s StatusInfo) Uints(key string, base int) ([]uint64, error) {
	v, ok := s[key]
	if !ok {
		return nil, fmt.Errorf("status: no %s: %w", key, ErrFormat)
	}
	var out []uint64
	for _, f := range strings.Fields(v) {
		n, err := strconv.ParseUint(f, base, 64)
		if err != nil {
			return nil, fmt.Errorf("status: %s %q: %w", key, v, ErrFormat)
		}
		out = append(out, n)
	}
	return out, nil
}

// Uint is the first of Uints(key, base): the real uid of "Uid", the
// mask of "SigBlk". A value without a number is an error wrapping
// ErrFormat.
func (s StatusInfo) Uint(key string, base int) (uint64, error) {
	ns, err := s.Uints(key, base)
	if err != nil {
		return 0, err
	}
	if len(ns) == 0 {
		return 0, fmt.Errorf("status: %s empty: %w", key, ErrFormat)
	}
	return ns[0], nil
}

// Status reads /proc/PID/status. See the package doc for its errors; a
// zombie is an exited process.
func Status(pid int) (StatusInfo, error) {
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
		return nil, fmt.Errorf("procfs: /proc/%v/status: %w", procName(pid), err)
	}
	if isExitState(m["State"]) {
		return nil, exited(pid)
	}
	return m, nil
}

func parseStatus(b []byte) (StatusInfo, error) {
	m := StatusInfo{}
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
			return nil, fmt.Errorf("procfs: /proc/%v/task/%s: %w", procName(pid), e.Name(), ErrFormat)
		}
		tids = append(tids, tid)
	}
	slices.Sort(tids)
	return tids, alive(pid)
}
