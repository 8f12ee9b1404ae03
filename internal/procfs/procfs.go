package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// ErrFormat is wrapped by errors for text that does not have the form
// proc(5) gives it.
var ErrFormat = errors.New("unexpected format in /proc")

// Self stands for the calling process where a function takes a pid: it
// reads /proc/self, which names the caller even where /proc belongs to
// another PID namespace than the caller's pid.
const Self = math.MinInt32

func path(pid int, name string) string {
	if pid == Self {
		return "/proc/self/" + name
	}
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

// procName names pid in errors: its number, or "self".
type procName int

func (p procName) String() string {
	if p == Self {
		return "self"
	}
	return strconv.Itoa(int(p))
}

func checkPID(pid int) error {
	if pid <= 0 && pid != Self {
		return fmt.Errorf("procfs: pid %d: %w", pid, errdefs.ErrInvalid)
	}
	return nil
}

// exited is the error for a process that has exited (or whose main thread
// has: its maps and fds then read empty too).
func exited(pid int) error {
	return fmt.Errorf("procfs: process %v has exited (or its main thread has): %w", procName(pid), fs.ErrNotExist)
}

// vanished maps ESRCH (a process reaped between open and read) onto
// fs.ErrNotExist; other errors pass unchanged (ENOENT already is one).
func vanished(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	}
	return err
}

// readFile reads /proc/PID/name. A read that fails because the process
// has exited (some files of a zombie fail with EINVAL) is the error of an
// exited process.
func readFile(pid int, name string) ([]byte, error) {
	b, err := os.ReadFile(path(pid, name))
	if err = vanished(err); err != nil && name != "stat" && !errors.Is(err, fs.ErrNotExist) {
		if aerr := alive(pid); errors.Is(aerr, fs.ErrNotExist) {
			return nil, aerr
		}
	}
	return b, err
}

// readLive reads /proc/PID/name of a live process and parses it: the
// read, then the check that pid is alive (an exited process's files read
// empty), then parse, whose error names the file.
func readLive[T any](pid int, name string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	if err := checkPID(pid); err != nil {
		return zero, err
	}
	b, err := readFile(pid, name)
	if err != nil {
		return zero, err
	}
	if err := alive(pid); err != nil {
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("procfs: /proc/%v/%s: %w", procName(pid), name, err)
	}
	return v, nil
}

// parseLines parses text one line at a time (a final newline is not a
// line; no text is no lines); a line parse refuses is an error wrapping
// ErrFormat that names it.
func parseLines[T any](b []byte, parse func(string) (T, error)) ([]T, error) {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil, nil
	}
	var out []T
	for n, line := range strings.Split(s, "\n") {
		v, err := parse(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %s: %w", n+1, line, err, ErrFormat)
		}
		out = append(out, v)
	}
	return out, nil
}

// alive returns nil if pid is a live process (not gone, not a zombie).
// Functions call it after reading: files of an exited process read empty.
func alive(pid int) error {
	st, err := Stat(pid)
	if err != nil {
		return err
	}
	if st.Exited() {
		return exited(pid)
	}
	return nil
}

// isExitState reports whether a state letter from stat or status ("Z",
// "X", "Z (zombie)") is that of an exited process.
func isExitState(s string) bool {
	return strings.HasPrefix(s, "Z") || strings.HasPrefix(s, "X")
}
