package procfs

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Rlimit is one resource limit: soft (Cur) and hard (Max), math.MaxUint64
// for "unlimited" (RLIM_INFINITY).
type Rlimit struct{ Cur, Max uint64 }

// Limits reads /proc/PID/limits: the process's resource limits indexed by
// RLIMIT_* number, as ParseLimits returns them. Unlike prlimit(2) on
// another process it needs no CAP_SYS_RESOURCE, only ptrace read access.
func Limits(pid int) ([]Rlimit, error) {
	return readLive(pid, "limits", ParseLimits)
}

// ParseLimits parses the text of /proc/PID/limits: a header line, then one
// line per resource in RLIMIT_* order, "name soft hard [units]". A line
// without two limits is an error wrapping ErrFormat.
func ParseLimits(b []byte) ([]Rlimit, error) {
	s, ok := strings.CutPrefix(string(b), "Limit")
	if !ok {
		return nil, fmt.Errorf("no header: %w", ErrFormat)
	}
	_, s, _ = strings.Cut(s, "\n")
	return parseLines([]byte(s), func(line string) (Rlimit, error) {
		f := strings.Fields(line)
		// Units are optional ("Max nice priority 0 0").
		if n := len(f); n >= 3 && !isLimit(f[n-1]) {
			f = f[:n-1]
		}
		n := len(f)
		if n < 3 || !isLimit(f[n-2]) || !isLimit(f[n-1]) {
			return Rlimit{}, fmt.Errorf("want a soft and a hard limit")
		}
		return Rlimit{limit(f[n-2]), limit(f[n-1])}, nil
	})
}

func isLimit(s string) bool {
	if s == "unlimited" {
		return true
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func limit(s string) uint64 {
	if s == "unlimited" {
		return math.MaxUint64
	}
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}
