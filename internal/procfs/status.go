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

// ThreadInfo is what /proc/PID/task/TID keeps of one thread of its own
// (credentials, capabilities, seccomp and pending signals are per thread
// in Linux; a process's status shows its main thread's).
type ThreadInfo struct {
	// Comm is the thread's name (task/TID/comm, at most 15 bytes:
	// pthread_setname_np, PR_SET_NAME).
	Comm string
	// NSTID is the thread's id in its own (innermost) PID namespace: the
	// last field of NSpid.
	NSTID int
	// Capability sets, bit n for capability n.
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64
	// Seccomp is the mode: 0 none, 1 strict, 2 filter.
	Seccomp int
	// SigPnd is the signals pending for this thread alone (not the
	// process's shared set, ShdPnd).
	SigPnd uint64
	// SigBlk is the thread's blocked signals; ShdPnd the process's
	// shared pending set (the same in every thread).
	SigBlk, ShdPnd uint64
	// Uid, Gid and Groups are the status lines as they are ("0\t0\t0\t0").
	Uid, Gid, Groups string
}

// Thread reads /proc/PID/task/TID/status and comm. See the package doc
// for its errors; a thread that has exited is an error wrapping
// fs.ErrNotExist as a process is.
func Thread(pid, tid int) (ThreadInfo, error) {
	if err := checkPID(tid); err != nil {
		return ThreadInfo{}, err
	}
	task := "task/" + strconv.Itoa(tid) + "/"
	comm, err := readLive(pid, task+"comm", func(b []byte) ([]byte, error) { return b, nil })
	if err != nil {
		return ThreadInfo{}, err
	}
	return readLive(pid, task+"status", func(b []byte) (ThreadInfo, error) { return parseThread(b, comm) })
}

// parseThread parses a thread's status and comm.
func parseThread(status, comm []byte) (ThreadInfo, error) {
	s, err := parseStatus(status)
	if err != nil {
		return ThreadInfo{}, err
	}
	ti := ThreadInfo{Comm: strings.TrimSuffix(string(comm), "\n"), Uid: s["Uid"], Gid: s["Gid"], Groups: s["Groups"]}
	if len(ti.Comm) > 15 {
		return ThreadInfo{}, fmt.Errorf("comm %q longer than 15 bytes: %w", ti.Comm, ErrFormat)
	}
	for k, p := range map[string]*uint64{"CapInh": &ti.CapInh, "CapPrm": &ti.CapPrm, "CapEff": &ti.CapEff,
		"CapBnd": &ti.CapBnd, "CapAmb": &ti.CapAmb, "SigPnd": &ti.SigPnd,
		"SigBlk": &ti.SigBlk, "ShdPnd": &ti.ShdPnd} {
		if *p, err = s.Uint(k, 16); err != nil {
			return ThreadInfo{}, err
		}
	}
	mode, err := s.Uint("Seccomp", 10)
	if err != nil {
		return ThreadInfo{}, err
	}
	ti.Seccomp = int(mode)
	ids, err := s.Uints("NSpid", 10)
	if err != nil {
		return ThreadInfo{}, err
	}
	if len(ids) == 0 {
		return ThreadInfo{}, fmt.Errorf("status: NSpid empty: %w", ErrFormat)
	}
	ti.NSTID = int(ids[len(ids)-1])
	return ti, nil
}
