package procfs

import (
	"fmt"
	"strconv"
	"strings"
)

// PosixTimer is one POSIX timer (timer_create(2)) of a process, as
// /proc/PID/timers shows it. Its time left and interval are not there:
// only timer_gettime, run by the process, reads them.
type PosixTimer struct {
	ID     int32
	Signo  int    // sigev_signo (0 for a SIGEV_NONE timer made without one)
	Value  uint64 // sigev_value, as the kernel prints sival_ptr
	Notify int    // SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD_ID (glibc's SIGEV_THREAD is one of these)
	// TID is the thread a SIGEV_THREAD_ID timer signals (in /proc's PID
	// namespace); the process's pid otherwise.
	TID   int
	Clock int
}

// sigev_notify values as the kernel keeps them.
const (
	SigevSignal   = 0
	SigevNone     = 1
	SigevThreadID = 4
)

// PosixTimers reads pid's POSIX timers from /proc/PID/timers, in the
// kernel's order. See the package doc for its errors.
func PosixTimers(pid int) ([]PosixTimer, error) {
	return readLive(pid, "timers", ParseTimers)
}

// ParseTimers parses the text of /proc/PID/timers: records of four lines
// ("ID: 3", "signal: 14/00000000000000ff", "notify: signal/pid.42",
// "ClockID: 0"); a line the kernel may add later is skipped.
func ParseTimers(b []byte) ([]PosixTimer, error) {
	var out []PosixTimer
	bad := func(line string) error { return fmt.Errorf("timers: %q: %w", line, ErrFormat) }
	var cur *PosixTimer
	seen := 0 // fields of cur read: signal, notify, clock
	for _, line := range strings.Split(string(b), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			if strings.TrimSpace(line) != "" {
				return nil, bad(line)
			}
			continue
		}
		val = strings.TrimSpace(val)
		if key == "ID" {
			if cur != nil && seen != 7 {
				return nil, bad(line)
			}
			id, err := strconv.ParseInt(val, 10, 32)
			if err != nil || id < 0 {
				return nil, bad(line)
			}
			out = append(out, PosixTimer{ID: int32(id)})
			cur, seen = &out[len(out)-1], 0
			continue
		}
		if cur == nil {
			return nil, bad(line)
		}
		switch key {
		case "signal":
			sig, v, ok := strings.Cut(val, "/")
			n, err1 := strconv.Atoi(sig)
			x, err2 := strconv.ParseUint(v, 16, 64)
			if !ok || err1 != nil || err2 != nil || n < 0 || n > 64 {
				return nil, bad(line)
			}
			cur.Signo, cur.Value = n, x
			seen |= 1
		case "notify":
			how, target, ok := strings.Cut(val, "/")
			kind, id, ok2 := strings.Cut(target, ".")
			n, err := strconv.Atoi(id)
			if !ok || !ok2 || err != nil || n < 0 {
				return nil, bad(line)
			}
			switch how {
			case "signal":
				cur.Notify = SigevSignal
			case "none":
				cur.Notify = SigevNone
			default: // "thread": the kernel never keeps SIGEV_THREAD itself
				return nil, bad(line)
			}
			switch kind {
			case "pid":
			case "tid":
				if cur.Notify != SigevSignal {
					return nil, bad(line)
				}
				cur.Notify = SigevThreadID
			default:
				return nil, bad(line)
			}
			cur.TID = n
			seen |= 2
		case "ClockID":
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 {
				return nil, bad(line)
			}
			cur.Clock = n
			seen |= 4
		}
	}
	if cur != nil && seen != 7 {
		return nil, fmt.Errorf("timers: timer %d incomplete: %w", cur.ID, ErrFormat)
	}
	return out, nil
}
