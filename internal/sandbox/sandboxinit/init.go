package sandboxinit

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/pause"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
)

// init keeps the init helper's main goroutine on the main thread (the
// thread-group leader): credentials are per thread, and the kernel checks
// the leader's when another process joins an env by the holder's pidfd.
func init() {
	if _, ok := os.LookupEnv(initEnv); ok {
		runtime.LockOSThread()
	}
}

const initEnv = initwire.InitEnv

// IsHelper reports whether this process is the init helper (the daemon
// binary re-executed by the host with initwire.InitEnv set).
func IsHelper() bool {
	_, ok := os.LookupEnv(initEnv)
	return ok
}

// Main is the init helper's whole life: it builds the sandbox and execs
// the program (or, for an env's holder, becomes the pause binary), never
// returning. A failure is reported on the status pipe and ends the
// process (exit 127; 125: the daemon is gone). Call it only when
// IsHelper.
func Main() {
	// Capabilities, no_new_privs and seccomp are per thread: do all of it,
	// and the execve, on this one.
	runtime.LockOSThread()
	if pp, ok := os.LookupEnv(initwire.ParentEnv); ok {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil || strconv.Itoa(os.Getppid()) != pp {
			os.Exit(125) // the daemon is already gone
		}
	}
	h := &helper{config: initwire.ConfigFD, status: initwire.StatusFD}
	unix.CloseOnExec(h.config)
	unix.CloseOnExec(h.status)
	err := h.run()
	var ie *initwire.InitError
	if !errors.As(err, &ie) {
		ie = &initwire.InitError{Step: "init", Msg: err.Error()}
	}
	_ = initwire.WriteReport(h.status, initwire.Report{Error: ie})
	os.Exit(127)
}

// helper is the init helper's state: its two channel fds.
type helper struct{ config, status int }

// mark reports the end of the named step.
func (h *helper) mark(name string) {
	_ = initwire.WriteReport(h.status, initwire.Report{Mark: &initwire.Mark{Phase: name, T: initwire.MonoNow()}})
}

// stepErr is the *InitError of a failed step.
func stepErr(step string, err error, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	ie := &initwire.InitError{Step: step, Msg: msg + ": " + err.Error()}
	var en syscall.Errno
	if errors.As(err, &en) {
		ie.Errno = en
	}
	return ie
}

// run does the steps of the package doc, in order, reporting a mark after
// each.
func (h *helper) run() error {
	var cfg initwire.Config
	if _, err := initwire.Recv(h.config, &cfg); err != nil {
		return stepErr("config", err, "read config")
	}
	// The daemon put us in our cgroup before it sent the config: a cgroup
	// namespace made now is rooted there, and the sandbox sees its
	// cgroup as "/" (not the host's hierarchy and its siblings' names).
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return stepErr("config", err, "unshare cgroup namespace")
	}
	h.mark("config")

	if err := buildRootfs(&cfg); err != nil {
		return err
	}
	h.mark("rootfs")

	if err := setupNet(&cfg); err != nil {
		return err
	}
	h.mark("net")

	if cfg.Hold {
		return h.hold()
	}
	if err := initwire.WriteReport(h.status, initwire.Report{Ready: true}); err != nil {
		return stepErr("ready", err, "report ready")
	}
	var p initwire.Process
	files, err := initwire.Recv(h.config, &p)
	if err != nil {
		return stepErr("process", err, "read process")
	}
	if err := h.placeFiles(&p, files); err != nil {
		return err
	}
	h.mark("process")
	if err := secure(&p); err != nil {
		return err
	}
	h.mark("security")
	err = syscall.Exec(p.Argv[0], p.Argv, p.Env)
	return stepErr("exec", err, "exec %s", p.Argv[0])
}

// placeFiles puts the files that came with p where the program expects
// them: stdout on 1, stderr on 2, the others on 3, 4, ... First the
// helper's own fds and the received ones move above every target, so
// that no dup3 closes one of them.
func (h *helper) placeFiles(p *initwire.Process, files []int) error {
	if len(files) != p.NFiles() {
		return stepErr("process", unix.EINVAL, "%d files for %d", len(files), p.NFiles())
	}
	top := 3 + p.NExtra
	lift := func(fd *int) error {
		if *fd >= top {
			return nil
		}
		nfd, err := unix.FcntlInt(uintptr(*fd), unix.F_DUPFD_CLOEXEC, top)
		if err != nil {
			return err
		}
		_ = unix.Close(*fd)
		*fd = nfd
		return nil
	}
	for _, fd := range append([]*int{&h.config, &h.status}, ptrs(files)...) {
		if err := lift(fd); err != nil {
			return stepErr("process", err, "move fd %d", *fd)
		}
	}
	var targets []int
	if p.Stdout {
		targets = append(targets, 1)
	}
	if p.Stderr {
		targets = append(targets, 2)
	}
	for i := range p.NExtra {
		targets = append(targets, 3+i)
	}
	for i, fd := range files {
		if err := unix.Dup3(fd, targets[i], 0); err != nil {
			return stepErr("process", err, "dup fd %d to %d", fd, targets[i])
		}
		_ = unix.Close(fd)
	}
	return nil
}

func ptrs(s []int) []*int {
	out := make([]*int, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}

// setupNet sets the hostname and brings lo up in a network namespace of
// the sandbox's own.
func setupNet(cfg *initwire.Config) error {
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return stepErr("net", err, "sethostname %q", cfg.Hostname)
	}
	if cfg.NewNet {
		if err := LoopbackUp(); err != nil {
			return stepErr("net", err, "bring lo up")
		}
	}
	return nil
}

// secure is the process part's security step: rlimits, cwd, capabilities,
// no_new_privs, seccomp, and every fd but 0-2 and the caller's marked
// close-on-exec.
func secure(cfg *initwire.Process) error {
	for _, r := range cfg.Rlimits {
		// syscall.Setrlimit (not x/sys) so that exec does not restore the
		// NOFILE limit the Go runtime saved at start.
		if err := syscall.Setrlimit(r.Resource, &syscall.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return stepErr("security", err, "setrlimit %d", r.Resource)
		}
	}
	if err := unix.Chdir(cfg.Cwd); err != nil {
		return stepErr("security", err, "chdir %s", cfg.Cwd)
	}
	if err := dropCaps(cfg.Caps, cfg.Template); err != nil {
		return stepErr("security", err, "drop capabilities")
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return stepErr("security", err, "no_new_privs")
	}
	prog, err := initwire.DecodeFilter(cfg.Seccomp)
	if err != nil {
		return stepErr("security", err, "seccomp program")
	}
	if prog != nil {
		if err := seccomp.Install(prog); err != nil {
			return stepErr("security", err, "seccomp install")
		}
	}
	// Everything but 0-2 and the caller's files closes at exec (the status
	// pipe included: EOF tells the daemon exec succeeded).
	if err := unix.CloseRange(uint(3+cfg.NExtra), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return stepErr("security", err, "close_range")
	}
	return nil
}

// dropCaps limits the calling thread's bounding, permitted and effective
// sets to caps and clears the inheritable and ambient ones (as runc and
// Docker do since CVE-2022-24769: an inheritable set would carry the
// capabilities through an execve of a file with inheritable file
// capabilities). A template also keeps CAP_SYS_ADMIN in its bounding and
// permitted sets (not in the inheritable and effective ones; but see
// package sandbox's doc: execve as uid 0 makes the effective set equal
// to the permitted one).
func dropCaps(caps []capability.Cap, template bool) error {
	c, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	c.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
	c.Set(capability.BOUNDING|capability.PERMITTED|capability.EFFECTIVE, caps...)
	if template {
		c.Set(capability.BOUNDING|capability.PERMITTED, capability.CAP_SYS_ADMIN)
	}
	return c.Apply(capability.CAPS | capability.BOUNDS | capability.AMBS)
}

// hold is the rest of an Env holder's life: report ready, close the
// status pipe, become the pause binary. The daemon retires the holder
// with SIGKILL; the parent-death signal ends it with the daemon.
func (h *helper) hold() error {
	// Once ready the holder only has to exist: it becomes the pause
	// binary (a few pages instead of a Go runtime, ~2 MB of anonymous
	// memory per pre-built env), exec'd from a memfd since no host path
	// is visible after pivot_root.
	mfd, err := unix.MemfdCreate("catalyzer-env-holder", unix.MFD_CLOEXEC)
	if err == nil {
		_, err = unix.Write(mfd, pause.Binary())
	}
	if err != nil {
		return stepErr("ready", err, "holder binary")
	}
	// A process joins the env with setns(pidfd of the holder), which the
	// kernel allows only if it may ptrace-read the holder: the holder's
	// permitted capabilities must be a subset of the joiner's. It needs
	// none: drop them all, the bounding set too (execve as uid 0 would
	// otherwise give them back). The kernel looks at the thread-group
	// leader, which this is (see init).
	if err := dropCaps(nil, false); err != nil {
		return stepErr("ready", err, "drop capabilities")
	}
	if err := initwire.WriteReport(h.status, initwire.Report{Ready: true}); err != nil {
		return stepErr("ready", err, "report ready")
	}
	_ = unix.Close(h.status)
	_ = unix.Close(h.config)
	argv0, _ := unix.BytePtrFromString("catalyzer-env-holder")
	empty, _ := unix.BytePtrFromString("")
	argv := []*byte{argv0, nil}
	envp := []*byte{nil}
	_, _, errno := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(mfd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argv[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	// Still here: exec failed after "ready"; die so the daemon sees it.
	fmt.Fprintf(os.Stderr, "sandbox env holder: exec pause: %v\n", errno)
	os.Exit(127)
	return nil
}

// LoopbackUp sets IFF_UP on lo in the current network namespace.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
