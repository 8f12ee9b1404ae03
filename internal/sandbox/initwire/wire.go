// Package initwire is the wire between the two sides of a sandbox: the
// host (package sandbox, in the daemon) and the init helper (package
// sandboxinit: the daemon binary re-executed inside the new namespaces).
// Both import it; neither imports the other's internals.
//
// # Channel
//
// The host starts the helper with InitEnv=n in its environment, where n
// is the number of caller files (fds 3 .. 3+n-1, the sandboxed program's
// ExtraFiles). Then:
//
//	fd 3+n    config pipe (host -> helper): one Config, JSON, one line;
//	          an env holder keeps it open and blocks on it
//	fd 3+n+1  status pipe (helper -> host, close-on-exec): Reports, one
//	          JSON object a line
//
// A helper that changed its credentials before its Go code ran (an env
// holder started by nsenter) finds the daemon's pid in ParentEnv.
//
// # Report stream
//
// The helper writes zero or more phase marks ({"mark":{"phase":P,"t":T}},
// T in CLOCK_MONOTONIC ns, comparable with the host's MonoNow), then one
// of: {"ready":true} (an env's holder is built), {"error":{...}} (an
// InitError: the step that failed), or nothing: the pipe closes at execve
// (close-on-exec), which tells the host the program runs. ReadReports
// reads that stream; it keeps at most MaxReports lines, and anything that
// is not a report is errdefs.ErrInvalid.
package initwire

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// InitEnv marks the re-executed init helper; its value is the number of
// caller files (see the package doc for the fd layout).
const InitEnv = "_CATALYZER_SANDBOX_INIT"

// ParentEnv carries the daemon's pid to a helper that changed its
// credentials before its Go code ran (an env holder started as nsenter):
// that cleared its parent-death signal, which it sets again and then
// checks that its parent is still the daemon.
const ParentEnv = "_CATALYZER_SANDBOX_PARENT"

// Bind makes the host path Source visible at Target inside the sandbox,
// read-only unless Writable.
type Bind struct {
	Source, Target string
	Writable       bool
}

// Rlimit is one resource limit set in the sandbox before exec.
// Resource is a unix.RLIMIT_* value.
type Rlimit struct {
	Resource   int
	Soft, Hard uint64
}

// Config is what the host sends the helper: every decision is the host's
// (defaults, policy lists, the compiled seccomp program); the helper only
// applies it, in the order of package sandboxinit.
type Config struct {
	// The env.
	Lower      string // overlay lowerdir option (layers joined by ':')
	Dir        string // instance run dir (host path)
	Prepared   bool   // the host already mounted the overlay and binds on Dir/merged
	UpperBytes int64  // overlay upper tmpfs
	TmpBytes   int64  // /tmp
	ShmBytes   int64  // /dev/shm
	Binds      []Bind
	Masked     []string // masked after pivot_root (/dev/null or an empty tmpfs on top)
	Readonly   []string // bound read-only after pivot_root
	Hostname   string
	NewNet     bool
	// Hold: an Env's holder: build the env (no /proc), report ready,
	// become the pause binary; no process part.
	Hold bool

	// The process.
	Argv     []string
	Env      []string
	Cwd      string
	Rlimits  []Rlimit
	Caps     []capability.Cap // kept in bounding, permitted, effective
	Template bool             // also keep CAP_SYS_ADMIN in bounding and permitted
	Seccomp  []unix.SockFilter
	NExtra   int // caller files, fds 3..3+NExtra-1, cross the exec
}

// InitError is a setup step of the init helper that failed inside the
// sandbox (Step is e.g. "rootfs", "exec"). It unwraps to the errno, so
// errors.Is(err, fs.ErrNotExist) works for a missing argv[0].
type InitError struct {
	Step  string
	Msg   string
	Errno syscall.Errno
}

func (e *InitError) Error() string { return e.Msg }

func (e *InitError) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// Mark is a point in time (CLOCK_MONOTONIC ns, comparable across the
// daemon and the init helper) at which the named phase ended.
type Mark struct {
	Phase string `json:"phase"`
	T     int64  `json:"t"`
}

// Report is one line of the status stream.
type Report struct {
	Mark  *Mark      `json:"mark,omitempty"`
	Error *InitError `json:"error,omitempty"`
	Ready bool       `json:"ready,omitempty"` // an Env's holder is built
}

// MonoNow is CLOCK_MONOTONIC in ns.
func MonoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// WriteReport writes r as one line on fd (the status pipe).
func WriteReport(fd int, r Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = unix.Write(fd, append(b, '\n'))
	return err
}

// MaxReports bounds what the host keeps of a helper's status stream: a
// dozen phase marks, one ready or error report.
const MaxReports = 64

// ReadReports reads a helper's status stream to EOF: its phase marks,
// whether it reported ready, or the error it reported (an *InitError). A
// line that is not a report, or more than MaxReports of them, is
// errdefs.ErrInvalid.
func ReadReports(r io.Reader) (marks []Mark, ready bool, err error) {
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		if n++; n > MaxReports {
			return nil, false, fmt.Errorf("more than %d status reports: %w", MaxReports, errdefs.ErrInvalid)
		}
		var rep Report
		if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
			return nil, false, fmt.Errorf("bad status report %q: %v: %w", sc.Text(), err, errdefs.ErrInvalid)
		}
		switch {
		case rep.Error != nil:
			return nil, false, rep.Error
		case rep.Mark != nil:
			marks = append(marks, *rep.Mark)
		case rep.Ready:
			ready = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read status: %w", err)
	}
	return marks, ready, nil
}
