package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sandbox/sandboxinit"
)

// MaybeInit must be the first call in main (and in TestMain of packages
// that start sandboxes). In the daemon it returns at once. In a process
// this package re-executed it never returns: it runs the init helper
// (package sandboxinit) or a helper registered with RegisterHelper.
func MaybeInit() {
	if name, ok := os.LookupEnv(helperEnv); ok {
		runHelper(name) // never returns
	}
	if sandboxinit.IsHelper() {
		sandboxinit.Main() // never returns
	}
}

// envWire is the env part of the helper's config (cfg has its defaults).
func envWire(cfg EnvConfig, dir string) initwire.Config {
	return initwire.Config{
		Lower: envLower(cfg), Dir: dir, UpperBytes: cfg.UpperBytes,
		TmpBytes: DefaultTmpBytes, ShmBytes: DefaultShmBytes, Binds: cfg.Binds,
		Masked: MaskedPaths, Readonly: ReadonlyPaths,
		Hostname: cfg.Hostname, NewNet: cfg.Network != NetworkHost,
	}
}

// processWire is the helper's Process message for p (with its defaults)
// and the files that go with it.
func processWire(p Process, template bool) (initwire.Process, []*os.File, error) {
	caps, err := parseCaps(p.Caps)
	if err != nil {
		return initwire.Process{}, nil, err
	}
	var prog []unix.SockFilter
	if !p.NoSeccomp {
		if prog, err = seccompProgram(p.Caps); err != nil {
			return initwire.Process{}, nil, fmt.Errorf("seccomp: %w", err)
		}
	}
	w := initwire.Process{Argv: p.Argv, Env: p.Env, Cwd: p.Cwd, Rlimits: p.Rlimits,
		Caps: caps, Template: template, Seccomp: initwire.EncodeFilter(prog), NExtra: len(p.ExtraFiles)}
	var files []*os.File
	if p.Stdout != nil {
		w.Stdout, files = true, append(files, p.Stdout)
	}
	if p.Stderr != nil {
		w.Stderr, files = true, append(files, p.Stderr)
	}
	return w, append(files, p.ExtraFiles...), nil
}

// helperLaunch is one start of the init helper (this binary re-executed,
// or nsenter ahead of it): what Prestart and NewEnv share.
type helperLaunch struct {
	what, id string
	// cmd has its Path, Args, Env and SysProcAttr set. The config socket
	// and the status pipe become its fds 3 and 4, after 5, 6, ...
	cmd   *exec.Cmd
	after []*os.File
	cg    *cgroup.Group
	// config is sent once the helper is in cg; sendMark names that step.
	config   initwire.Config
	sendMark string
	markNow  func(string)
}

// launched is a helper that reported its env ready: its reports' marks,
// its config socket (the host's end) and its status stream, which a
// sandbox's helper goes on with once it gets its Process.
type launched struct {
	marks   []initwire.Mark
	config  *os.File
	status  *os.File
	reports *initwire.Reports
}

// close closes the host's ends of the helper's channels.
func (l launched) close() {
	l.config.Close()
	l.status.Close()
}

// run starts the helper in its cgroup (born there on cgroup v2: no
// migration, which costs a synchronize_rcu, ~20 ms measured on a 16-core
// host, whenever attaches are sparse; added before it reads its config
// on v1), sends its config and reads its status reports until it is
// ready. What it made is undone by c on failure.
func (l helperLaunch) run(c *cleanup.Cleanup) (launched, error) {
	fail := func(f string, err error) (launched, error) {
		return launched{}, fmt.Errorf("%s %s: "+f+": %w", l.what, l.id, err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fail("config socket", err)
	}
	cfgOurs, cfgTheirs := os.NewFile(uintptr(fds[0]), "config"), os.NewFile(uintptr(fds[1]), "config-helper")
	defer cfgTheirs.Close()
	c.Add(func() { cfgOurs.Close() })
	stR, stW, err := os.Pipe()
	if err != nil {
		return fail("status pipe", err)
	}
	defer stW.Close()
	c.Add(func() { stR.Close() })

	cmd := l.cmd
	cmd.Env = append(cmd.Env, initwire.InitEnv+"=1")
	cmd.ExtraFiles = append([]*os.File{cfgTheirs, stW}, l.after...)
	intoCgroup := false
	if dir, ok := l.cg.Dirs()["unified"]; ok {
		if fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err == nil {
			defer unix.Close(fd)
			cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
			intoCgroup = true
		}
	}
	if err := cmd.Start(); err != nil {
		return fail("spawn helper", err)
	}
	c.Add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	cfgTheirs.Close()
	stW.Close()
	if !intoCgroup {
		// It blocks reading its config: account it before it runs.
		if err := l.cg.Add(cmd.Process.Pid); err != nil {
			return fail("cgroup add", err)
		}
	}
	l.markNow("spawn")
	// Marked before the send: once sent, the helper's "config" mark may
	// come first.
	l.markNow(l.sendMark)
	if err := initwire.Send(int(cfgOurs.Fd()), l.config, nil); err != nil {
		return fail("send config", err)
	}
	reports := initwire.NewReports(stR)
	marks, ready, err := reports.Next()
	if err != nil {
		return launched{}, fmt.Errorf("%s %s: %w", l.what, l.id, err)
	}
	if !ready {
		return fail("helper", fmt.Errorf("exited before it was ready"))
	}
	return launched{marks: marks, config: cfgOurs, status: stR, reports: reports}, nil
}

// prepareRoot mounts, as real root in the daemon's namespaces, the
// overlay (on dir: a tmpfs of size bytes with the upper and work dirs,
// the overlay on dir/merged) and the binds of a root that a helper in a
// user namespace cannot build itself (overlayfs refuses lower layers with
// locked submounts there, and root inside can neither create bind
// targets in host-root-owned directories nor, maybe, reach the sources);
// the helper binds its copy. rootUID owns the upper's root.
func prepareRoot(dir, lower string, size int64, rootUID int, binds []Bind, c *cleanup.Cleanup) error {
	if err := sandboxinit.MountOverlay(dir, lower, size, rootUID); err != nil {
		return err
	}
	c.Add(func() { sandboxinit.UnmountOverlay(dir) })
	return sandboxinit.BindAll(filepath.Join(dir, "merged"), binds)
}
