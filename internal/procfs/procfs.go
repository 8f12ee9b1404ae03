package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// ErrFormat is wrapped by errors for text that does not have the form
// proc(5) gives it.
var ErrFormat = errors.New("unexpected format in /proc")

func path(pid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + name
}

func checkPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("procfs: pid %d: %w", pid, errdefs.ErrInvalid)
	}
	return nil
}

// exited is the error for a process that has exited (or whose main thread
// has: its maps and fds then read empty too).
func exited(pid int) error {
	return fmt.Errorf("procfs: process %d has exited (or its main thread has): %w", pid, fs.ErrNotExist)
}

// vanished maps ESRCH (a process reaped between open and read) onto
// fs.ErrNotExist; other errors pass unchanged (ENOENT already is one).
func vanished(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	}
	return err
}

// readFile reads /proc/PID/name.
func readFile(pid int, name string) ([]byte, error) {
	b, err := os.ReadFile(path(pid, name))
	return b, vanished(err)
}

// alive returns nil if pid is a live process (not gone, not a zombie).
// Functions call it after reading: files of an exited process read empty.
func alive(pid int) error {
	b, err := readFile(pid, "stat")
	if errors.Is(err, fs.ErrNotExist) {
		return exited(pid)
	}
	if err != nil {
		return err
	}
	// pid (comm) state ...; comm may hold ')' and spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+3 > len(s) {
		return fmt.Errorf("procfs: /proc/%d/stat %q: %w", pid, s, ErrFormat)
	}
	if isExitState(s[i+2 : i+3]) {
		return exited(pid)
	}
	return nil
}

// isExitState reports whether a state letter from stat or status ("Z",
// "X", "Z (zombie)") is that of an exited process.
func isExitState(s string) bool {
	return strings.HasPrefix(s, "Z") || strings.HasPrefix(s, "X")
}
