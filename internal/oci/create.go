package oci

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
)

// DefaultCgroupParent holds the cgroups of containers whose config names
// no cgroupsPath. (Not sandbox.DefaultCgroupParent: the daemon sweeps
// that one at start.)
const DefaultCgroupParent = "catalyzer-oci"

// CreateOpts are create's options, as runc's.
type CreateOpts struct {
	Bundle        string
	PidFile       string // written once the container is created
	ConsoleSocket string // process.terminal: where the pty master is sent
	NoPivot       bool
	PreserveFDs   int // fds 3..3+n-1 of the caller pass to the container
	// Stdio of the container's process (nil: the caller's own 0, 1, 2).
	Stdin, Stdout, Stderr *os.File
}

// Create builds container id from a bundle and leaves its init blocked
// before exec, in state "created", until Start. The init is our child
// and becomes the caller's parent's (the shim's, a subreaper) when the
// runtime exits: its pid is the one in PidFile. Whatever was half-built
// is undone on failure.
func (r Root) Create(id string, o CreateOpts) error {
	if err := CheckID(id); err != nil {
		return err
	}
	b, err := LoadBundle(o.Bundle)
	if err != nil {
		return err
	}
	var ri *restoreInput
	switch {
	case b.Boot.Mode == BootFork:
		return fmt.Errorf("container %s: %s=fork from template %s: not built: a template without CAP_SYS_ADMIN (containerd's default capabilities) cannot clone its forks into a PID namespace of their own (docs/KUBERNETES.md, \"Fork\"); boot from an image instead (%s=restore, %s=<dir>): %w",
			id, AnnotationBoot, b.Boot.TemplateID, AnnotationBoot, AnnotationImage, errdefs.ErrNotSupported)
	case b.Boot.Mode == BootRestore:
		// Restored at start, not now: a created container's process
		// has not run yet (restore.go, Container.start).
		if err := checkRestoreBundle(id, b); err != nil {
			return err
		}
		img, err := openRestoreImage(id, b.Boot.Image)
		if err != nil {
			return fmt.Errorf("annotation %s: %w", AnnotationImage, err)
		}
		ri = &restoreInput{img: img, onStart: true}
	}
	_, err = r.create(id, b, o, ri)
	return err
}

// create builds container id from bundle b: state dir, cgroup, init.
// With ri the init execs the restorer instead of process.args, and ri's
// image is restored into it (restore.go): now, and the container is
// then running; or with ri.onStart once start has let the init go on,
// and the container is created. It returns the container's record.
func (r Root) create(id string, b *Bundle, o CreateOpts, ri *restoreInput) (*record, error) {
	s := b.Spec
	if s.Process.Terminal && o.ConsoleSocket == "" {
		return nil, invalid("container %s: process.terminal needs --console-socket", id)
	}
	if !s.Process.Terminal && o.ConsoleSocket != "" {
		return nil, invalid("container %s: --console-socket without process.terminal", id)
	}
	var c cleanup.Cleanup
	defer c.Clean()

	dir, err := r.makeStateDir(id)
	if err != nil {
		return nil, err
	}
	c.Add(func() { _ = os.RemoveAll(dir) })
	fifo := ""
	if ri == nil || ri.onStart {
		if fifo, err = makeExecFifo(id, dir); err != nil {
			return nil, err
		}
	}
	prog, err := compileSeccomp(id, s)
	if err != nil {
		return nil, err
	}
	cg, cgPath, err := newCgroup(id, s)
	if err != nil {
		return nil, err
	}
	c.Add(func() { _ = cg.Delete() })

	cfg := initConfig{
		ID: id, Bundle: b.Dir, Rootfs: b.Rootfs, Spec: s, NoPivot: o.NoPivot,
		ConsoleSocket: o.ConsoleSocket, PreserveFDs: o.PreserveFDs, Fifo: fifo,
		CgroupDirs: cg.Dirs(), Seccomp: prog, ForkChanFD: -1,
	}
	// A template's fork channel: the init's end goes to its process, the
	// other to the holder (template.go).
	var chanOurs *os.File
	if b.Boot.Template {
		if chanOurs, cfg.forkChan, err = socketPair("fork-channel", "fork-channel-template"); err != nil {
			return nil, fmt.Errorf("container %s: fork channel: %w", id, err)
		}
		defer chanOurs.Close()
		defer cfg.forkChan.Close()
	}
	if ri != nil {
		cfg.Restore, cfg.RestoreImage = true, ri.img.Dir
	}
	cmd, sock, err := spawnInit(cfg, cg, o)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	c.Add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	defer sock.Close()

	rec := newRecord(id, b, cmd.Process.Pid, cgPath, ri)
	if err := awaitCreated(sock, rec, ri, s); err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	if chanOurs != nil {
		h, err := startHolder(dir, rec, o.PreserveFDs, chanOurs)
		if err != nil {
			return nil, fmt.Errorf("container %s: %w", id, err)
		}
		c.Add(func() { rec.stopHolder() })
		defer func() { _ = h.Process.Release() }()
	}
	if err := r.saveState(rec, o.PidFile); err != nil {
		return nil, err
	}
	c.Release()
	// Not waited for: it is the shim's once we exit.
	return rec, cmd.Process.Release()
}

// awaitCreated answers the init on sock until it reports created and,
// for a restore now (ri and not ri.onStart), restores ri's image into it.
func awaitCreated(sock *os.File, rec *record, ri *restoreInput, s *specs.Spec) error {
	rd := bufio.NewReader(sock)
	if err := syncCreate(sock, rd, rec); err != nil {
		return err
	}
	if ri != nil && !ri.onStart {
		return ri.restore(rec, rd, s)
	}
	return nil
}

// saveState saves rec and then, if asked, writes the pid file: once
// the pid file is there, so is the state.
func (r Root) saveState(rec *record, pidFile string) error {
	if err := r.save(rec); err != nil {
		return err
	}
	if pidFile != "" {
		if err := writePidFile(pidFile, rec.Pid); err != nil {
			return fmt.Errorf("container %s: pid file: %w", rec.ID, err)
		}
	}
	return nil
}

// makeStateDir makes container id's state directory (and the state
// root if need be); an id already there is a conflict.
func (r Root) makeStateDir(id string) (string, error) {
	if err := os.MkdirAll(r.Dir, 0o711); err != nil {
		return "", fmt.Errorf("state root %s: %w", r.Dir, err)
	}
	dir := r.dir(id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("container with id %s already exists: %w", id, errdefs.ErrConflict)
		}
		return "", fmt.Errorf("container %s: %w", id, err)
	}
	return dir, nil
}

// makeExecFifo makes the exec fifo in dir, on which the init blocks
// until start opens it (waitStart).
func makeExecFifo(id, dir string) (string, error) {
	fifo := filepath.Join(dir, fifoFile)
	if err := unix.Mkfifo(fifo, 0o622); err != nil {
		return "", fmt.Errorf("container %s: exec fifo: %w", id, err)
	}
	_ = os.Chmod(fifo, 0o622) // the umask must not take the write bits
	return fifo, nil
}

// newCgroup makes the container's cgroup, with the spec's resources
// and runc's default devices, and returns it with its path.
func newCgroup(id string, s *specs.Spec) (*cgroup.Group, string, error) {
	if r := s.Linux.Resources; r != nil && r.Network != nil {
		if _, err := os.Stat("/sys/fs/cgroup/net_cls"); err != nil {
			return nil, "", fmt.Errorf("container %s: linux.resources.network: no net_cls cgroup hierarchy here: %w", id, errdefs.ErrNotSupported)
		}
		return nil, "", fmt.Errorf("container %s: linux.resources.network (net_cls, net_prio): %w", id, errdefs.ErrNotSupported)
	}
	cgPath, err := cgroupPath(id, s.Linux.CgroupsPath)
	if err != nil {
		return nil, "", err
	}
	cg, err := cgroup.NewSpec(cgPath, withDefaultDevices(s.Linux.Resources))
	if err != nil {
		return nil, "", fmt.Errorf("container %s: %w", id, err)
	}
	return cg, cgPath, nil
}

// newRecord is the state record of container id, whose init is pid.
// A container restored at start keeps the spec's capabilities for the
// restored process (ri.onStart).
func newRecord(id string, b *Bundle, pid int, cgPath string, ri *restoreInput) *record {
	s := b.Spec
	rec := &record{
		Version: stateVersion, ID: id, Bundle: b.Dir, Rootfs: b.Rootfs, Pid: pid,
		Created: time.Now().UTC(), Annotations: s.Annotations, CgroupPath: cgPath,
		Hooks: s.Hooks, Boot: b.Boot,
	}
	if ri != nil && ri.onStart {
		rec.RestoreCaps = s.Process.Capabilities
	}
	rec.PidStart, _ = procStart(rec.Pid)
	return rec
}

// cgroupPath is the container's cgroup below every hierarchy root.
// systemd's "slice:prefix:name" form is refused (no systemd cgroup
// driver here).
func cgroupPath(id, p string) (string, error) {
	switch {
	case p == "":
		return "/" + DefaultCgroupParent + "/" + id, nil
	case strings.Count(p, ":") == 2 && !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("cgroupsPath %q is systemd's slice:prefix:name form: the systemd cgroup driver is not supported: %w", p, errdefs.ErrNotSupported)
	}
	return "/" + strings.Trim(filepath.Clean("/"+p), "/"), nil
}

// withDefaultDevices adds runc's default device allowances after the
// spec's rules: containerd's default spec denies all and lets the
// runtime allow the nodes every container has.
func withDefaultDevices(res *specs.LinuxResources) *specs.LinuxResources {
	out := specs.LinuxResources{}
	if res != nil {
		out = *res
	}
	out.Devices = append([]specs.LinuxDeviceCgroup{}, out.Devices...)
	for _, d := range cgroup.DeviceRules {
		if d.Allow {
			out.Devices = append(out.Devices, d)
		}
	}
	return &out
}

// spawnInit starts the init (this binary re-executed) with the new
// namespaces, in cg, having joined the namespaces the spec names by path,
// and sends it its config. It returns the sync socket.
func spawnInit(cfg initConfig, cg *cgroup.Group, o CreateOpts) (*exec.Cmd, *os.File, error) {
	var c cleanup.Cleanup
	defer c.Clean()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	c.Add(func() { cfgW.Close() })
	defer cfgR.Close()
	parent, child, err := socketPair("sync", "sync-init")
	if err != nil {
		return nil, nil, err
	}
	c.Add(func() { parent.Close() })
	defer child.Close()

	cmd, intoCgroup, err := startInit(&cfg, cg, o, cfgR, child)
	if err != nil {
		return nil, nil, err
	}
	c.Add(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !intoCgroup {
		// It blocks reading its config: account it before it runs.
		if err := cg.Add(cmd.Process.Pid); err != nil {
			return nil, nil, err
		}
	}
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		return nil, nil, fmt.Errorf("send init config: %w", err)
	}
	cfgW.Close()
	c.Release()
	return cmd, parent, nil
}

// startInit starts the init with the namespaces of cfg's spec, and in
// cg when the kernel can clone it there (intoCgroup; if not, the caller
// adds it). Its config pipe and sync socket are cfgR and child; cfg gets
// the fd numbers of the fork channel and of the mount namespace it joins
// itself. The fds opened for the start are closed once it is done.
func startInit(cfg *initConfig, cg *cgroup.Group, o CreateOpts, cfgR, child *os.File) (cmd *exec.Cmd, intoCgroup bool, err error) {
	extra := preservedFiles(o.PreserveFDs)
	if cfg.forkChan != nil {
		// After the config pipe and the sync socket.
		cfg.ForkChanFD = 3 + len(extra) + 2
	}
	cmd = reexecCmd("catalyzer-runc-init", o.PreserveFDs, append(extra, cfgR, child), o.Stdin, o.Stdout, o.Stderr)
	join := newNamespaces(cmd.SysProcAttr, cfg.Spec)
	if fd := cloneIntoCgroup(cmd.SysProcAttr, cg.Dirs()); fd >= 0 {
		defer unix.Close(fd)
		intoCgroup = true
	}
	join, mnt, err := splitMountNS(join)
	if err != nil {
		return nil, false, err
	}
	if cfg.forkChan != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, cfg.forkChan)
	}
	cfg.MountNSFD = -1
	if mnt != nil {
		defer mnt.Close()
		cfg.MountNSFD = 3 + len(cmd.ExtraFiles)
		cmd.ExtraFiles = append(cmd.ExtraFiles, mnt)
	}
	if err := startJoined(cmd, join); err != nil {
		return nil, false, fmt.Errorf("start init: %w", err)
	}
	return cmd, intoCgroup, nil
}

// newNamespaces sets attr to clone the namespaces s makes new (all but
// the cgroup namespace, which the init unshares once in its cgroup),
// with s's id mappings when one is a user namespace, and returns those
// s names by path, to join.
func newNamespaces(attr *syscall.SysProcAttr, s *specs.Spec) []specs.LinuxNamespace {
	var join []specs.LinuxNamespace
	for _, ns := range s.Linux.Namespaces {
		switch {
		case ns.Path != "":
			join = append(join, ns)
		case ns.Type == specs.CgroupNamespace:
			// Unshared by the init once it is in its cgroup.
		default:
			attr.Cloneflags |= nsFlags[ns.Type]
		}
	}
	if hasNewNS(s, specs.UserNamespace) {
		for _, m := range s.Linux.UIDMappings {
			attr.UidMappings = append(attr.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		for _, m := range s.Linux.GIDMappings {
			attr.GidMappings = append(attr.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		attr.GidMappingsEnableSetgroups = true
		// Root of the new namespace: capabilities survive our exec.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return join
}

// reexecCmd is this binary re-executed as arg0 (the init's verb), given
// the preserved fds and extra after them (initEnv says how many were
// preserved), with the container's stdio (nil: ours).
func reexecCmd(arg0 string, preserve int, extra []*os.File, stdin, stdout, stderr *os.File) *exec.Cmd {
	return &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{arg0},
		Env:         []string{initEnv + "=" + strconv.Itoa(preserve)},
		ExtraFiles:  extra,
		Stdin:       orFile(stdin, os.Stdin),
		Stdout:      orFile(stdout, os.Stdout),
		Stderr:      orFile(stderr, os.Stderr),
		SysProcAttr: &syscall.SysProcAttr{},
	}
}

// preservedFiles are the caller's fds 3..3+n-1, passed on to the
// container as they are.
func preservedFiles(n int) []*os.File {
	extra := make([]*os.File, 0, n+3)
	for i := 0; i < n; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved"))
	}
	return extra
}

// socketPair is a connected pair of close-on-exec stream sockets, named
// ours and theirs.
func socketPair(ours, theirs string) (*os.File, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), ours), os.NewFile(uintptr(fds[1]), theirs), nil
}

// cloneIntoCgroup has the child of attr cloned straight into the
// unified (v2) directory of dirs (CLONE_INTO_CGROUP), so it never runs
// outside it. It returns the directory's fd, to close once the child
// started, or -1 when there is none or it cannot be opened: the caller
// then adds the child itself.
func cloneIntoCgroup(attr *syscall.SysProcAttr, dirs map[string]string) int {
	dir, ok := dirs["unified"]
	if !ok {
		return -1
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	attr.UseCgroupFD, attr.CgroupFD = true, fd
	return fd
}

// compileSeccomp compiles the spec's linux.seccomp (nil: none) for
// container id.
func compileSeccomp(id string, s *specs.Spec) ([]unix.SockFilter, error) {
	if s.Linux.Seccomp == nil {
		return nil, nil
	}
	prog, err := seccomp.Compile(s.Linux.Seccomp, seccomp.Options{})
	if err != nil {
		return nil, fmt.Errorf("container %s: seccomp: %w", id, err)
	}
	return prog, nil
}

// writePidFile writes pid to path, atomically: a reader never sees a
// half-written pid.
func writePidFile(path string, pid int) error {
	return atomicfile.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644)
}

// startJoined starts cmd from a locked OS thread that has joined the
// namespaces in join (setns is per thread for all but the user
// namespace). The thread is never given back to the Go scheduler: its
// goroutine ends locked, and the runtime drops it. The mount namespace is
// not joined here: a child exec'ing /proc/self/exe from inside another
// mount namespace gets ENOENT, so mountNS (if not nil) is the open
// namespace the child joins itself (initConfig.MountNSFD).
func startJoined(cmd *exec.Cmd, join []specs.LinuxNamespace) error {
	if len(join) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		// Open every path first: a joined namespace may change what a
		// path names.
		fds := make([]int, 0, len(join))
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		for _, ns := range join {
			fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				errc <- fmt.Errorf("join %s namespace %s: %w", ns.Type, ns.Path, err)
				return
			}
			fds = append(fds, fd)
		}
		for i, ns := range join {
			if err := unix.Setns(fds[i], int(nsFlags[ns.Type])); err != nil {
				errc <- fmt.Errorf("join %s namespace %s: %w", ns.Type, ns.Path, err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// splitMountNS takes the mount namespace out of join and opens it, for
// the child to join (see startJoined); nil when join has none.
func splitMountNS(join []specs.LinuxNamespace) ([]specs.LinuxNamespace, *os.File, error) {
	var rest []specs.LinuxNamespace
	var f *os.File
	for _, ns := range join {
		if ns.Type != specs.MountNamespace {
			rest = append(rest, ns)
			continue
		}
		var err error
		if f, err = os.Open(ns.Path); err != nil {
			return nil, nil, fmt.Errorf("join mount namespace %s: %w", ns.Path, err)
		}
	}
	return rest, f, nil
}

// joinMountNS is the child's side of splitMountNS: on the calling
// (locked) thread, which must have an fs struct of its own to be let in.
func joinMountNS(fd int) error {
	if fd < 0 {
		return nil
	}
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare fs: %w", err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("join mount namespace: %w", err)
	}
	return unix.Close(fd)
}

// syncCreate answers the init's requests (run the createRuntime hooks)
// until it reports created, or fails with its error.
func syncCreate(sock *os.File, rd *bufio.Reader, rec *record) error {
	for {
		line, err := rd.ReadBytes('\n')
		if err == io.EOF {
			return errors.New("container init exited during setup")
		}
		if err != nil {
			return fmt.Errorf("sync with init: %w", err)
		}
		var m syncMsg
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("sync with init: %q: %w", line, err)
		}
		switch m.Type {
		case msgCreated:
			return nil
		case msgError:
			return errors.New(m.Error)
		case msgHooks:
			st := rec.specState(specs.StateCreating)
			//lint:ignore SA1019 prestart is deprecated but still honoured (runc runs it)
			err := runHooks("prestart", rec.Hooks.Prestart, st)
			if err == nil {
				err = runHooks("createRuntime", rec.Hooks.CreateRuntime, st)
			}
			reply := syncMsg{Type: msgHooksDone}
			if err != nil {
				reply = syncMsg{Type: msgError, Error: err.Error()}
			}
			if werr := send(sock, reply); werr != nil || err != nil {
				return errors.Join(err, werr)
			}
		default:
			return fmt.Errorf("sync with init: unexpected %q", m.Type)
		}
	}
}

// specState is the state hooks get on stdin.
func (rec *record) specState(st specs.ContainerState) specs.State {
	return specs.State{Version: specs.Version, ID: rec.ID, Status: st, Pid: rec.Pid, Bundle: rec.Bundle, Annotations: rec.Annotations}
}

// orFile is f, or def when f is nil (a nil *os.File in an exec.Cmd's
// Stdin would be a closed fd 0 in the child, not the default).
func orFile(f, def *os.File) *os.File {
	if f == nil {
		return def
	}
	return f
}
