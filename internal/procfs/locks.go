package procfs

import (
	"fmt"
	"strconv"
	"strings"
)

// Lock is one "lock:" line of an fdinfo (fs/locks.c, lock_get_status):
// a file lock or lease held through that descriptor.
type Lock struct {
	Class string // "FLOCK", "POSIX", "OFDLCK", "LEASE", "DELEG", ...
	Mode  string // "ADVISORY", "MANDATORY"; a lease's "ACTIVE", "BREAKING", "BREAKER"
	Type  string // "READ", "WRITE", "UNLCK"
	Pid   int    // its owner (-1 for an OFD lock)
	Dev   string // "MAJ:MIN" in hex, as the kernel prints it
	Ino   uint64
	Start int64
	End   int64 // inclusive; -1 for "EOF" (to the end of the file)
}

// ParseLock parses the value of one "lock:" line ("1: FLOCK  ADVISORY
// WRITE 1234 fe:01:5678 0 EOF"). A line of another form is an error
// wrapping ErrFormat.
func ParseLock(line string) (Lock, error) {
	f := strings.Fields(line)
	bad := func() (Lock, error) { return Lock{}, fmt.Errorf("lock line %q: %w", line, ErrFormat) }
	// "1:" and, for a lock a waiter is blocked on, "->" come first.
	if len(f) < 8 || !strings.HasSuffix(f[0], ":") {
		return bad()
	}
	f = f[1:]
	if f[0] == "->" {
		f = f[1:]
	}
	if len(f) != 7 {
		return bad()
	}
	l := Lock{Class: f[0], Mode: f[1], Type: f[2]}
	var err error
	if l.Pid, err = strconv.Atoi(f[3]); err != nil {
		return bad()
	}
	i := strings.LastIndexByte(f[4], ':')
	if i < 0 {
		return bad()
	}
	l.Dev = f[4][:i]
	if l.Ino, err = strconv.ParseUint(f[4][i+1:], 10, 64); err != nil {
		return bad()
	}
	if l.Start, err = strconv.ParseInt(f[5], 10, 64); err != nil || l.Start < 0 {
		return bad()
	}
	if f[6] == "EOF" {
		l.End = -1
	} else if l.End, err = strconv.ParseInt(f[6], 10, 64); err != nil || l.End < l.Start {
		return bad()
	}
	return l, nil
}
