// Package initwire is the wire between the two sides of a sandbox: the
// host (package sandbox, in the daemon) and the init helper (package
// sandboxinit: the daemon binary re-executed inside the new namespaces).
// Both import it; neither imports the other.
//
// # Channel
//
// The host starts the helper with InitEnv in its environment and:
//
//	fd 0-2  /dev/null
//	fd 3    config socket (AF_UNIX, SOCK_SEQPACKET): host -> helper, one
//	        message a datagram (JSON): first a Config, later, for a
//	        sandbox, a Process with its files (SCM_RIGHTS)
//	fd 4    status pipe (helper -> host, close-on-exec): Reports, one JSON
//	        object a line
//	fd 5..  what a helper started by nsenter needs (an env holder)
//
// A helper that changed its credentials before its Go code ran (an env
// holder started by nsenter) finds the daemon's pid in ParentEnv.
//
// # Report stream
//
// After the Config the helper writes phase marks ({"mark":{"phase":P,
// "t":T}}, T in CLOCK_MONOTONIC ns, comparable with the host's MonoNow)
// and {"ready":true} once the env is built: an env's holder then becomes
// the pause binary, a sandbox's helper waits for its Process. After the
// Process: marks, then nothing: the pipe closes at execve (close-on-exec),
// which tells the host the program runs. At any point {"error":{...}} (an
// InitError: the step that failed) ends the stream. Reports reads it; it
// keeps at most MaxReports lines, and anything that is not a report is
// errdefs.ErrInvalid.
package initwire

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// InitEnv marks the re-executed init helper (see the package doc for its
// fds).
const InitEnv = "_CATALYZER_SANDBOX_INIT"

// The helper's fds.
const (
	ConfigFD = 3
	StatusFD = 4
)

// MaxMessage bounds a datagram on the config socket.
const MaxMessage = 1 << 20

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

// Config is the first message: the env. Every decision is the host's
// (defaults, policy lists); the helper only applies it, in the order of
// package sandboxinit.
type Config struct {
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
	// become the pause binary; no Process follows.
	Hold bool
}

// Process is the second message: the program and its privileges. Its
// datagram carries the files Stdout, Stderr (each if set) and then
// NExtra more, which become fds 1, 2, and 3..3+NExtra-1.
type Process struct {
	Argv     []string
	Env      []string
	Cwd      string
	Rlimits  []Rlimit
	Caps     []capability.Cap // kept in bounding, permitted, effective
	Template bool             // also keep CAP_SYS_ADMIN in bounding and permitted
	Seccomp  []byte           // the filter program, as EncodeFilter gives it; nil: none
	Stdout   bool             // a file for fd 1 comes first (else /dev/null stays)
	Stderr   bool             // then one for fd 2
	NExtra   int
}

// EncodeFilter is prog as bytes: struct sock_filter as the kernel lays it
// out (code u16, jt u8, jf u8, k u32; native byte order). A program is
// ~300 instructions: a JSON array of objects would cost the helper ~1 ms
// to decode on the boot path, these bytes nothing.
func EncodeFilter(prog []unix.SockFilter) []byte {
	if prog == nil {
		return nil
	}
	b := make([]byte, 0, 8*len(prog))
	for _, f := range prog {
		b = binary.NativeEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.NativeEndian.AppendUint32(b, f.K)
	}
	return b
}

// DecodeFilter is EncodeFilter's inverse; a length that is not a whole
// number of instructions is errdefs.ErrInvalid.
func DecodeFilter(b []byte) ([]unix.SockFilter, error) {
	if b == nil {
		return nil, nil
	}
	if len(b)%8 != 0 {
		return nil, fmt.Errorf("seccomp program of %d bytes: %w", len(b), errdefs.ErrInvalid)
	}
	prog := make([]unix.SockFilter, len(b)/8)
	for i := range prog {
		c := b[8*i:]
		prog[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(c), Jt: c[2], Jf: c[3], K: binary.NativeEndian.Uint32(c[4:])}
	}
	return prog, nil
}

// NFiles is the number of files that come with p.
func (p *Process) NFiles() int {
	n := p.NExtra
	if p.Stdout {
		n++
	}
	if p.Stderr {
		n++
	}
	return n
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

// Reports reads a helper's status stream.
type Reports struct {
	sc *bufio.Scanner
	n  int
}

// NewReports reads the stream r.
func NewReports(r io.Reader) *Reports { return &Reports{sc: bufio.NewScanner(r)} }

// Next reads reports up to a ready report or EOF: the phase marks, whether
// it stopped at ready, or the error the helper reported (an *InitError).
// A line that is not a report, or more than MaxReports of them in the
// whole stream, is errdefs.ErrInvalid.
func (r *Reports) Next() (marks []Mark, ready bool, err error) {
	for r.sc.Scan() {
		if r.n++; r.n > MaxReports {
			return nil, false, fmt.Errorf("more than %d status reports: %w", MaxReports, errdefs.ErrInvalid)
		}
		var rep Report
		if err := json.Unmarshal(r.sc.Bytes(), &rep); err != nil {
			return nil, false, fmt.Errorf("bad status report %q: %v: %w", r.sc.Text(), err, errdefs.ErrInvalid)
		}
		switch {
		case rep.Error != nil:
			return nil, false, rep.Error
		case rep.Mark != nil:
			marks = append(marks, *rep.Mark)
		case rep.Ready:
			return marks, true, nil
		}
	}
	if err := r.sc.Err(); err != nil {
		return nil, false, fmt.Errorf("read status: %w", err)
	}
	return marks, false, nil
}

// Send writes v (JSON) as one datagram on the config socket fd, with
// files passed along (SCM_RIGHTS).
func Send(fd int, v any, files []int) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("config message of %d bytes (max %d): %w", len(b), MaxMessage, errdefs.ErrInvalid)
	}
	var oob []byte
	if len(files) > 0 {
		oob = unix.UnixRights(files...)
	}
	return unix.Sendmsg(fd, b, oob, nil, 0)
}

// maxFiles bounds the files one message may carry.
const maxFiles = 64

// Recv reads one datagram from the config socket fd into v and returns
// the files that came with it (close-on-exec). EOF (the host closed its
// end) is io.EOF.
func Recv(fd int, v any) ([]int, error) {
	buf := make([]byte, MaxMessage)
	oob := make([]byte, unix.CmsgSpace(maxFiles*4))
	n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	var files []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			fds, err := unix.ParseUnixRights(&m)
			if err != nil {
				return nil, err
			}
			files = append(files, fds...)
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		for _, f := range files {
			unix.Close(f)
		}
		return nil, fmt.Errorf("config message truncated: %w", errdefs.ErrInvalid)
	}
	if n == 0 && len(files) == 0 {
		return nil, io.EOF
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		for _, f := range files {
			unix.Close(f)
		}
		return nil, fmt.Errorf("config message: %v: %w", err, errdefs.ErrInvalid)
	}
	return files, nil
}
