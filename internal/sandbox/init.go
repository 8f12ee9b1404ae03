package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/pause"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
)

// initEnv marks the re-executed init helper; its value is the number of
// caller ExtraFiles (fds 3..3+n-1). The config pipe is fd 3+n, the status
// pipe fd 3+n+1.
const initEnv = "_CATALYZER_SANDBOX_INIT"

// parentEnv carries the daemon's pid to a helper that changed its
// credentials before its Go code ran (an env holder started as nsenter):
// that cleared its parent-death signal, which it sets again and then
// checks that its parent is still the daemon.
const parentEnv = "_CATALYZER_SANDBOX_PARENT"

// initConfig is what the daemon sends the helper (JSON over a pipe).
type initConfig struct {
	Argv       []string
	Env        []string
	Cwd        string
	Lower      string // overlay lower layer
	Dir        string // instance run dir (host path)
	Prepared   bool   // the daemon already mounted the overlay on Dir/merged (UserNS)
	UpperBytes int64
	Binds      []Bind
	Hostname   string
	NewNet     bool
	Rlimits    []Rlimit
	Caps       []string
	Seccomp    []unix.SockFilter // nil: no filter
	NExtra     int
	Template   bool // keep CAP_SYS_ADMIN in the bounding and permitted sets
	Hold       bool // an Env's holder: build the env, report ready, block (no proc, no exec)
}

func helperConfig(cfg Config, dir string) initConfig {
	return initConfig{
		Argv: cfg.Argv, Env: cfg.Env, Cwd: cfg.Cwd, Lower: lowerDir(cfg), Dir: dir,
		Prepared: cfg.UserNS, UpperBytes: cfg.UpperBytes, Binds: cfg.Binds,
		Hostname: cfg.Hostname, NewNet: cfg.Network != NetworkHost, Rlimits: cfg.Rlimits,
		Caps: cfg.Caps, NExtra: len(cfg.ExtraFiles), Template: cfg.Template,
	}
}

// holderConfig is the config of an Env's holder.
func holderConfig(cfg EnvConfig, dir string) initConfig {
	return initConfig{
		Lower: holderLower(cfg), Dir: dir, Prepared: cfg.UserNS != nil,
		UpperBytes: cfg.UpperBytes, Binds: cfg.Binds, Hostname: cfg.Hostname,
		NewNet: cfg.Network != NetworkHost, Hold: true,
	}
}

// holderLower is an env's overlay lowerdir option: its Lowers, then its
// root.
func holderLower(cfg EnvConfig) string {
	lower := "/"
	if cfg.Rootfs != "" {
		lower = cfg.Rootfs
	}
	return strings.Join(append(append([]string{}, cfg.Lowers...), lower), ":")
}

// seccompCache holds compiled default programs by capability set: the
// daemon compiles once, helpers only install.
var seccompCache sync.Map // string -> []unix.SockFilter

// SeccompProgram is the seccomp program every sandbox holding caps gets
// (Docker's default profile, compiled once per capability set): for a
// restored process, which installs it from an injected batch.
func SeccompProgram(caps []string) ([]unix.SockFilter, error) { return seccompProgram(caps) }

func seccompProgram(caps []string) ([]unix.SockFilter, error) {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = "CAP_" + trimCap(c)
	}
	key := strings.Join(names, ",")
	if p, ok := seccompCache.Load(key); ok {
		return p.([]unix.SockFilter), nil
	}
	prog, err := seccomp.DefaultProgram(seccomp.Options{Caps: names})
	if err != nil {
		return nil, err
	}
	seccompCache.Store(key, prog)
	return prog, nil
}

// MaybeInit must be the first call in main (and in TestMain of packages
// that start sandboxes). In the daemon it returns at once; in the init
// helper re-executed by Start it builds the sandbox and execs the program,
// never returning.
// init keeps the init helper's main goroutine on the main thread (the
// thread-group leader): credentials are per thread, and the kernel checks
// the leader's when another process joins an env by the holder's pidfd.
func init() {
	if _, ok := os.LookupEnv(initEnv); ok {
		runtime.LockOSThread()
	}
}

func MaybeInit() {
	if name, ok := os.LookupEnv(helperEnv); ok {
		runHelper(name) // never returns
	}
	v, ok := os.LookupEnv(initEnv)
	if !ok {
		return
	}
	// Capabilities, no_new_privs and seccomp are per thread: do all of it,
	// and the execve, on this one.
	runtime.LockOSThread()
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		os.Exit(126)
	}
	if pp, ok := os.LookupEnv(parentEnv); ok {
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil || strconv.Itoa(os.Getppid()) != pp {
			os.Exit(125) // the daemon is already gone
		}
	}
	status := 3 + n + 1
	unix.CloseOnExec(status)
	err = runInit(3+n, status)
	var ie *InitError
	if !errors.As(err, &ie) {
		ie = &InitError{Step: "init", Msg: err.Error()}
	}
	b, _ := json.Marshal(report{Error: ie})
	_, _ = unix.Write(status, append(b, '\n'))
	os.Exit(127)
}

func stepErr(step string, err error, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	ie := &InitError{Step: step, Msg: msg + ": " + err.Error()}
	var en syscall.Errno
	if errors.As(err, &en) {
		ie.Errno = en
	}
	return ie
}

func runInit(cfgFD, status int) error {
	f := os.NewFile(uintptr(cfgFD), "config")
	var cfg initConfig
	if err := json.NewDecoder(f).Decode(&cfg); err != nil {
		return stepErr("config", err, "read config")
	}
	if !cfg.Hold {
		f.Close()
	}
	// The daemon put us in our cgroup before it sent the config: a cgroup
	// namespace made now is rooted there, and the sandbox sees its
	// cgroup as "/" (not the host's hierarchy and its siblings' names).
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return stepErr("config", err, "unshare cgroup namespace")
	}
	sendMark := func(name string) {
		b, _ := json.Marshal(report{Mark: &mark{name, monoNow()}})
		_, _ = unix.Write(status, append(b, '\n'))
	}
	sendMark("config")

	if err := buildRootfs(&cfg); err != nil {
		return err
	}
	sendMark("rootfs")

	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return stepErr("net", err, "sethostname %q", cfg.Hostname)
	}
	if cfg.NewNet {
		if err := loopbackUp(); err != nil {
			return stepErr("net", err, "bring lo up")
		}
	}
	sendMark("net")

	if cfg.Hold {
		return hold(f, status)
	}

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
	if cfg.Seccomp != nil {
		if err := seccomp.Install(cfg.Seccomp); err != nil {
			return stepErr("security", err, "seccomp install")
		}
	}
	// Everything but 0-2 and the caller's files closes at exec (the status
	// pipe included: EOF tells the daemon exec succeeded).
	if err := unix.CloseRange(uint(3+cfg.NExtra), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return stepErr("security", err, "close_range")
	}
	sendMark("security")
	err := syscall.Exec(cfg.Argv[0], cfg.Argv, cfg.Env)
	return stepErr("exec", err, "exec %s", cfg.Argv[0])
}

func trimCap(c string) string {
	if len(c) > 4 && (c[:4] == "CAP_" || c[:4] == "cap_") {
		c = c[4:]
	}
	b := []byte(c)
	for i := range b {
		if b[i] >= 'a' && b[i] <= 'z' {
			b[i] -= 'a' - 'A'
		}
	}
	return string(b)
}

// dropCaps limits the calling thread's bounding, permitted and effective
// sets to names and clears the inheritable and ambient ones (as runc and
// Docker do since CVE-2022-24769: an inheritable set would carry the
// capabilities through an execve of a file with inheritable file
// capabilities). A template also
// keeps CAP_SYS_ADMIN in its bounding and permitted sets (not in the
// inheritable and effective ones; but see doc.go: execve as uid 0 makes
// the effective set equal to the permitted one).
func dropCaps(names []string, template bool) error {
	caps, err := parseCaps(names)
	if err != nil {
		return err
	}
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
// status pipe, then block reading the config pipe; the daemon retires the
// holder with SIGKILL, and EOF (the daemon closed its end, or died) ends
// it too. It keeps every capability: it runs no user code.
func hold(cfgPipe *os.File, status int) error {
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
	c, err := capability.NewPid2(0)
	if err == nil {
		c.Clear(capability.CAPS | capability.BOUNDS | capability.AMBS)
		err = c.Apply(capability.CAPS | capability.BOUNDS | capability.AMBS)
	}
	if err != nil {
		return stepErr("ready", err, "drop capabilities")
	}
	b, _ := json.Marshal(report{Ready: true})
	if _, err := unix.Write(status, append(b, '\n')); err != nil {
		return stepErr("ready", err, "report ready")
	}
	_ = unix.Close(status)
	cfgPipe.Close()
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

// loopbackUp sets IFF_UP on lo in the current network namespace.
func loopbackUp() error {
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
