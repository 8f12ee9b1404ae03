package oci

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
)

// initEnv marks this binary re-executed as a container's init; its value
// is the number of preserved fds (3..3+n-1). The config pipe is fd 3+n,
// the sync socket fd 3+n+1.
const initEnv = "_CATALYZER_OCI_INIT"

// initConfig is what create sends the init (JSON on the config pipe).
type initConfig struct {
	ID            string
	Bundle        string
	Rootfs        string
	Spec          *specs.Spec
	NoPivot       bool
	ConsoleSocket string
	PreserveFDs   int
	Fifo          string            // host path of exec.fifo
	CgroupDirs    map[string]string // hierarchy -> host directory of the container's cgroup
	Seccomp       []unix.SockFilter // compiled linux.seccomp; nil: none
	// Exec: this is an exec'd process joining a running container (Spec
	// holds only its Process); the console socket, if any, is the fd
	// after the sync socket.
	Exec bool
	// MountNSFD is a mount namespace to join first (-1: none); ConsoleFD
	// an exec's connected console socket (-1: none).
	MountNSFD int
	ConsoleFD int
	// Restore: once the container is set up, exec the restorer (not
	// process.args) for create to restore an image into; RestoreImage
	// is the image's host directory, bound read-only at
	// /dev/.catalyzer-image until the restore has read it.
	Restore      bool
	RestoreImage string
	// ForkChanFD is a template's fork channel (-1: not a template): the
	// init puts it on templateChanFD(PreserveFDs), kept across exec.
	ForkChanFD int
	forkChan   *os.File // create's side: the file sent as ForkChanFD
}

// syncMsg is one line on the sync socket between create and the init.
type syncMsg struct {
	Type  string `json:"type"` // "hooks", "hooks-done", "created", "error"
	Error string `json:"error,omitempty"`
}

const (
	msgHooks     = "hooks"      // init -> create: run prestart and createRuntime hooks now
	msgHooksDone = "hooks-done" // create -> init: they ran
	msgCreated   = "created"    // init -> create: blocked on the fifo, ready for start
	msgError     = "error"
)

func init() {
	// The init's main goroutine stays on the main thread: credentials,
	// capabilities, no_new_privs and seccomp are per thread, and so is
	// the state execve keeps.
	if _, ok := os.LookupEnv(initEnv); ok {
		runtime.LockOSThread()
	}
}

// MaybeInit must be called first thing in main: in a container's init
// (this binary re-executed by Create) it sets the container up and execs
// its process, never returning; elsewhere it returns at once.
func MaybeInit() {
	maybeHolder()
	v, ok := os.LookupEnv(initEnv)
	if !ok {
		return
	}
	runtime.LockOSThread()
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		os.Exit(126)
	}
	os.Unsetenv(initEnv)
	sock := os.NewFile(uintptr(3+n+1), "sync")
	err = runInit(os.NewFile(uintptr(3+n), "config"), sock)
	b, _ := json.Marshal(syncMsg{Type: msgError, Error: err.Error()})
	if _, werr := sock.Write(append(b, '\n')); werr != nil {
		// create is gone (the container was started): say it where the
		// shim looks.
		fmt.Fprintln(os.Stderr, "catalyzer-runc init:", err)
	}
	os.Exit(127)
}

// initErr names the step of the init that failed.
func initErr(step string, err error, f string, a ...any) error {
	return fmt.Errorf("%s: %s: %w", step, fmt.Sprintf(f, a...), err)
}

func send(sock *os.File, m syncMsg) error {
	b, _ := json.Marshal(m)
	_, err := sock.Write(append(b, '\n'))
	return err
}

// runInit is the init's side of create (and, with cfg.Exec, of exec):
// it reads its config, sets the container up around itself and execs
// the container's process, or the restorer. It returns only on failure.
func runInit(cfgF, sock *os.File) error {
	var cfg initConfig
	if err := json.NewDecoder(cfgF).Decode(&cfg); err != nil {
		return initErr("config", err, "read config")
	}
	cfgF.Close()
	if cfg.ForkChanFD >= 0 {
		// On its number now, before anything else takes it: the config
		// pipe's, just closed.
		if err := unix.Dup2(cfg.ForkChanFD, templateChanFD(cfg.PreserveFDs)); err != nil {
			return initErr("template", err, "fork channel")
		}
	}
	if err := joinMountNS(cfg.MountNSFD); err != nil {
		return initErr("namespaces", err, "mount namespace")
	}
	if cfg.Exec {
		return runExec(&cfg)
	}
	if err := setupContainer(&cfg, sock); err != nil {
		return err
	}
	if cfg.Restore {
		return enterAndExecRestorer(&cfg, sock)
	}
	return enterAndExecProcess(&cfg, sock)
}

// setupContainer builds the container around the init, still in the
// runtime's root: its cgroup namespace and rootfs, then the hooks that
// run before pivot_root.
func setupContainer(cfg *initConfig, sock *os.File) error {
	// create put us in the container's cgroup before sending the config:
	// a cgroup namespace made now is rooted there.
	if hasNewNS(cfg.Spec, specs.CgroupNamespace) {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return initErr("namespaces", err, "unshare cgroup namespace")
		}
	}
	if err := prepareRootfs(cfg); err != nil {
		return err
	}
	return createHooks(cfg, sock)
}

// createHooks runs the hooks of the create: prestart and createRuntime
// in the runtime's namespaces (create runs them when asked on sock),
// after ours exist and before pivot_root; then createContainer, here.
func createHooks(cfg *initConfig, sock *os.File) error {
	s := cfg.Spec
	if s.Hooks == nil {
		return nil
	}
	//lint:ignore SA1019 prestart is deprecated but still honoured (runc runs it)
	if len(s.Hooks.Prestart) > 0 || len(s.Hooks.CreateRuntime) > 0 {
		if err := send(sock, syncMsg{Type: msgHooks}); err != nil {
			return initErr("hooks", err, "sync")
		}
		line, err := bufio.NewReader(sock).ReadBytes('\n')
		var m syncMsg
		if err == nil {
			err = json.Unmarshal(line, &m)
		}
		if err != nil || m.Type != msgHooksDone {
			return initErr("hooks", errors.Join(err, errors.New(m.Error)), "createRuntime hooks")
		}
	}
	st := specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateCreating, Pid: os.Getpid(), Bundle: cfg.Bundle, Annotations: s.Annotations}
	if err := runHooks("createContainer", s.Hooks.CreateContainer, st); err != nil {
		return initErr("hooks", err, "createContainer")
	}
	return nil
}

// enterAndExecRestorer moves into the container's root and execs the
// restorer, for create (or start, with an exec fifo) to restore the
// image into.
func enterAndExecRestorer(cfg *initConfig, sock *os.File) error {
	fifoFD := -1
	if cfg.Fifo != "" {
		var err error
		if fifoFD, err = openFifo(cfg.Fifo); err != nil {
			return err
		}
	}
	if err := enterRoot(cfg); err != nil {
		return err
	}
	return execRestorer(cfg, sock, fifoFD)
}

// enterAndExecProcess moves into the container's root, readies its
// process, reports created and, once start has opened the exec fifo,
// runs the startContainer hooks and execs the process.
func enterAndExecProcess(cfg *initConfig, sock *os.File) error {
	s := cfg.Spec
	var console *os.File
	if cfg.ConsoleSocket != "" {
		c, err := dialConsole(cfg.ConsoleSocket)
		if err != nil {
			return initErr("console", err, "connect %s", cfg.ConsoleSocket)
		}
		console = c
	}
	// The fifo is opened (O_PATH) before pivot_root, reopened for writing
	// through /proc/self/fd once created.
	fifoFD, err := openFifo(cfg.Fifo)
	if err != nil {
		return err
	}
	if err := enterRoot(cfg); err != nil {
		return err
	}
	if console != nil {
		if err := setupConsole(console, s.Process.ConsoleSize); err != nil {
			return initErr("console", err, "pty")
		}
	}
	proc := s.Process
	keep := cfg.PreserveFDs
	if cfg.ForkChanFD >= 0 {
		keep++ // the fork channel, on templateChanFD
	}
	argv0, err := prepareProcess(proc, cfg.Seccomp, keep)
	if err != nil {
		return err
	}
	if err := send(sock, syncMsg{Type: msgCreated}); err != nil {
		return initErr("sync", err, "report created")
	}
	sock.Close()

	if err := waitStart(fifoFD); err != nil {
		return err
	}
	if err := startContainerHooks(cfg); err != nil {
		return err
	}
	return execProcess(proc, argv0, cfg.Seccomp)
}

// openFifo opens the exec fifo O_PATH: from the runtime's root, where
// its host path is.
func openFifo(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, initErr("fifo", err, "open %s", path)
	}
	return fd, nil
}

// enterRoot pivots into the container's root (enterRootfs) and sets up
// what is set from inside it (finishRootfs).
func enterRoot(cfg *initConfig) error {
	if err := enterRootfs(cfg); err != nil {
		return err
	}
	return finishRootfs(cfg)
}

// waitStart blocks until start opens the exec fifo (open at fifoFD,
// O_PATH) for reading, and writes it the byte start waits for.
func waitStart(fifoFD int) error {
	w, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fifoFD), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return initErr("start", err, "open exec fifo")
	}
	if _, err := unix.Write(w, []byte{'0'}); err != nil {
		return initErr("start", err, "write exec fifo")
	}
	unix.Close(w)
	unix.Close(fifoFD)
	return nil
}

// startContainerHooks run in the container once start let the init go on.
func startContainerHooks(cfg *initConfig) error {
	s := cfg.Spec
	if s.Hooks == nil {
		return nil
	}
	st := specs.State{Version: specs.Version, ID: cfg.ID, Status: specs.StateCreated, Pid: os.Getpid(), Bundle: cfg.Bundle, Annotations: s.Annotations}
	if err := runHooks("startContainer", s.Hooks.StartContainer, st); err != nil {
		return initErr("hooks", err, "startContainer")
	}
	return nil
}

// prepareProcess readies the calling thread for process p: cwd, the
// program's path, rlimits, oom score, no_new_privs, the user and
// capabilities, and (without no_new_privs, which needs the privilege
// still held) the seccomp filter. It returns argv[0]'s path.
func prepareProcess(p *specs.Process, prog []unix.SockFilter, preserve int) (string, error) {
	if err := unix.Chdir(p.Cwd); err != nil {
		return "", initErr("process", err, "chdir %s", p.Cwd)
	}
	argv0, err := lookPath(p.Args[0], p.Env)
	if err != nil {
		return "", initErr("process", err, "exec %q", p.Args[0])
	}
	if err := setRlimits(p.Rlimits, false); err != nil {
		return "", err
	}
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return "", initErr("process", err, "oom_score_adj")
		}
	}
	// Before any seccomp filter: an older profile may deny close_range.
	if err := markCloseOnExec(3 + preserve); err != nil {
		return "", initErr("process", err, "close-on-exec")
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return "", initErr("security", err, "no_new_privs")
		}
	} else if prog != nil {
		// Without no_new_privs installing a filter needs CAP_SYS_ADMIN:
		// do it before the capabilities go.
		if err := seccomp.Install(prog); err != nil {
			return "", initErr("security", err, "seccomp")
		}
	}
	if err := setUser(p); err != nil {
		return "", err
	}
	return argv0, nil
}

// execProcess installs the seccomp filter (with no_new_privs: last, so
// that it filters only the program) and execs. Every fd from
// 3+preserve is close-on-exec by then (prepareProcess; the ones opened
// since are O_CLOEXEC).
func execProcess(p *specs.Process, argv0 string, prog []unix.SockFilter) error {
	// Limits on memory last: the Go runtime of this process must not
	// run under them (it aborts when an allocation fails).
	if err := setRlimits(p.Rlimits, true); err != nil {
		return err
	}
	if p.NoNewPrivileges && prog != nil {
		if err := seccomp.Install(prog); err != nil {
			return initErr("security", err, "seccomp")
		}
	}
	err := syscall.Exec(argv0, p.Args, p.Env)
	return initErr("exec", err, "exec %s", argv0)
}

// markCloseOnExec sets close-on-exec on every fd from "from" up:
// close_range, or fd by fd where the kernel lacks it.
func markCloseOnExec(from int) error {
	err := unix.CloseRange(uint(from), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	if err == nil || !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
		return err
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd >= from {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// lookPath resolves argv0 with the process's own PATH, inside the
// container's root.
func lookPath(argv0 string, env []string) (string, error) {
	if strings.Contains(argv0, "/") {
		if _, err := os.Stat(argv0); err != nil {
			return "", err
		}
		return argv0, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, argv0)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// memoryRlimits are set just before execve (setRlimits with memory).
var memoryRlimits = map[int]bool{unix.RLIMIT_AS: true, unix.RLIMIT_DATA: true, unix.RLIMIT_STACK: true}

// setRlimits sets the limits of rls that limit memory (memory) or the
// others.
func setRlimits(rls []specs.POSIXRlimit, memory bool) error {
	for _, r := range rls {
		res := rlimitByName[r.Type]
		if memoryRlimits[res] != memory {
			continue
		}
		// syscall.Setrlimit, not x/sys: exec must not restore the NOFILE
		// limit the Go runtime saved at start.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: r.Soft, Max: r.Hard}); err != nil {
			return initErr("process", err, "setrlimit %s", r.Type)
		}
	}
	return nil
}

// finishRootfs is what runs inside the new root: sysctls, hostname,
// loopback, masked and read-only paths, a read-only root.
func finishRootfs(cfg *initConfig) error {
	s := cfg.Spec
	for k, v := range s.Linux.Sysctl {
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return initErr("sysctl", err, "%s=%s", k, v)
		}
	}
	if hasNewNS(s, specs.UTSNamespace) {
		if s.Hostname != "" {
			if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
				return initErr("hostname", err, "sethostname %q", s.Hostname)
			}
		}
		if s.Domainname != "" {
			if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
				return initErr("hostname", err, "setdomainname %q", s.Domainname)
			}
		}
	} else if s.Hostname != "" {
		return initErr("hostname", errors.New("no uts namespace of its own"), "hostname %q", s.Hostname)
	}
	if hasNewNS(s, specs.NetworkNamespace) {
		if err := sandbox.LoopbackUp(); err != nil {
			return initErr("network", err, "bring lo up")
		}
	}
	for _, p := range s.Linux.ReadonlyPaths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return initErr("readonlyPaths", err, "bind %s", p)
		}
		if err := sandbox.RemountReadonly(p); err != nil {
			return initErr("readonlyPaths", err, "remount %s", p)
		}
	}
	for _, p := range s.Linux.MaskedPaths {
		if err := sandbox.MaskPath(p); err != nil {
			return initErr("maskedPaths", err, "mask %s", p)
		}
	}
	if s.Root.Readonly {
		if err := sandbox.RemountReadonly("/"); err != nil {
			return initErr("rootfs", err, "remount / read-only")
		}
	}
	return nil
}
