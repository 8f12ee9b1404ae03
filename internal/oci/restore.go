package oci

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/sandbox/seccomp"
)

// restoreImageMount is where the restorer finds the image inside the
// container: a read-only bind in the container's /dev tmpfs (never in
// its root file system), removed once the restore has read it.
const restoreImageMount = "/dev/.catalyzer-image"

// RestoreOpts are restore's options, as runc's: create's (the bundle,
// the pid file, --no-pivot) and the image.
type RestoreOpts struct {
	CreateOpts
	ImagePath string // an image directory written by Checkpoint
	WorkPath  string // where restore.log goes ("": nowhere)
}

// restoreLog is the file in --work-path that says how the restore went.
const restoreLog = "restore.log"

// restoreInput is what create needs to restore an image into the
// container it builds.
type restoreInput struct {
	img  *image.Image
	work string
	// onStart: the init waits on the exec fifo before it execs the
	// restorer, and start restores (boot by annotation); otherwise
	// create restores at once (the restore verb).
	onStart bool
}

// Restore builds container id from a bundle, as Create does, and
// restores the image into it instead of starting process.args: the
// container's init execs the restorer (PID 1 of the container's PID
// namespace, in its root, cgroup and namespaces, its seccomp filter
// installed from the bundle), which create seizes and turns into the
// checkpointed process (image.Restore). The restored process is then
// the container's init: our child, the shim's once we exit, the pid in
// PidFile, with the shim's stdio (ours) in place of the image's
// reconnected fds 0, 1 and 2. The container is running when Restore
// returns. Whatever the image engine refuses (another kernel, a corrupt
// image, a taken tid) is an error naming it, and nothing of the
// container is left.
func (r Root) Restore(id string, o RestoreOpts) error {
	if err := CheckID(id); err != nil {
		return err
	}
	if o.ImagePath == "" {
		return invalid("container %s: restore needs --image-path", id)
	}
	b, err := LoadBundle(o.Bundle)
	if err != nil {
		return err
	}
	if b.Boot.Template || b.Boot.Mode == BootFork {
		return fmt.Errorf("container %s: restore of a bundle with boot %s (template=%v): %w", id, b.Boot.Mode, b.Boot.Template, errdefs.ErrNotSupported)
	}
	if err := checkRestoreBundle(id, b); err != nil {
		return err
	}
	img, err := openRestoreImage(id, o.ImagePath)
	if err != nil {
		return err
	}
	rec, err := r.create(id, b, o.CreateOpts, &restoreInput{img: img, work: o.WorkPath})
	if err != nil {
		return err
	}
	if rec.Hooks != nil {
		if err := runHooks("poststart", rec.Hooks.Poststart, rec.specState(specs.StateRunning)); err != nil {
			return fmt.Errorf("container %s: %w", id, err)
		}
	}
	return nil
}

// checkRestoreBundle refuses what a restore cannot give a bundle.
func checkRestoreBundle(id string, b *Bundle) error {
	if b.Spec.Process.Terminal {
		return fmt.Errorf("container %s: restore with process.terminal (a new pty for a checkpointed process): %w", id, errdefs.ErrNotSupported)
	}
	return nil
}

// openRestoreImage opens and validates the image at path for a
// container restore: it must be an image package image reads (its
// manifest, this kernel) whose reconnected fds are only 0, 1 and 2.
func openRestoreImage(id, path string) (*image.Image, error) {
	dir, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("container %s: image path: %w", id, err)
	}
	img, err := image.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", id, err)
	}
	for _, fd := range img.FDs {
		if fd.Kind == image.FDReconnect && (fd.Fd < 0 || fd.Fd > 2) {
			return nil, fmt.Errorf("container %s: image %s: fd %d must be reconnected, a container restore reconnects only 0, 1 and 2: %w", id, dir, fd.Fd, errdefs.ErrNotSupported)
		}
	}
	return img, nil
}

// restore runs in create once the init reported itself set up: it waits
// for the init's exec of the restorer (the sync socket, close-on-exec,
// reaches EOF), then restores the image into it (restoreInto).
func (ri *restoreInput) restore(rec *record, rd *bufio.Reader, s *specs.Spec) error {
	line, err := rd.ReadBytes('\n')
	switch {
	case err == io.EOF && len(line) == 0:
	case err == nil || err == io.EOF:
		var m syncMsg
		if jerr := json.Unmarshal(line, &m); jerr == nil && m.Type == msgError {
			return errors.New(m.Error)
		}
		return fmt.Errorf("sync with init: unexpected %q", line)
	default:
		return fmt.Errorf("sync with init: %w", err)
	}
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", rec.Pid)); !strings.Contains(exe, restorerName) {
		return fmt.Errorf("restore: the container's init did not become the restorer (exe %q)", exe)
	}
	return ri.restoreInto(rec, s.Process.Capabilities)
}

// restoreInto seizes the container's init, now the restorer, restores
// the image into it with capabilities bounded by caps, then removes the
// image's bind from the container.
func (ri *restoreInput) restoreInto(rec *record, caps *specs.LinuxCapabilities) error {
	pid := rec.Pid
	tr := ptrace.NewTracer()
	defer tr.Close()
	// Clones traced: the threads the plan re-creates start stopped. The
	// filter installed from the bundle is suspended while we work.
	tc, err := tr.Seize(pid, ptrace.TraceFork(false), ptrace.TraceClone(true), ptrace.ExitKill(true), ptrace.SuspendSeccomp(true))
	if err != nil {
		return fmt.Errorf("restore: seize the restorer: %w", err)
	}
	reconnect := map[int]int{}
	for _, fd := range ri.img.FDs {
		if fd.Kind == image.FDReconnect {
			reconnect[int(fd.Fd)] = int(fd.Fd) // the restorer's own 0, 1, 2: the shim's
		}
	}
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	tcaps := ptrace.ThreadCaps{Bounding: capBits(caps.Bounding), Effective: capBits(caps.Effective),
		Permitted: capBits(caps.Permitted), Inheritable: capBits(caps.Inheritable), Ambient: capBits(caps.Ambient)}
	_, st, err := image.Restore(tr, ri.img, image.RestoreOptions{
		Tracee:     tc,
		Reconnect:  reconnect,
		PagesPath:  filepath.Join(restoreImageMount, image.PagesFile),
		Epilogue:   capsEpilogue(tcaps),
		ThreadCaps: &tcaps,
	})
	if err != nil {
		return err
	}
	if err := unmountIn(pid, restoreImageMount); err != nil {
		return fmt.Errorf("restore: remove the image's bind %s: %w", restoreImageMount, err)
	}
	if ri.work != "" {
		if err := os.MkdirAll(ri.work, 0o700); err == nil {
			var sb strings.Builder
			fmt.Fprintf(&sb, "restored %s into container %s (pid %d) in %v, %d plan entries, %d ptrace stops\n", ri.img.Dir, rec.ID, pid, st.Total, st.Entries, st.RoundTrips)
			for _, p := range st.Phases {
				fmt.Fprintf(&sb, "  %-10s %v\n", p.Name, p.D)
			}
			_ = os.WriteFile(filepath.Join(ri.work, restoreLog), []byte(sb.String()), 0o600)
		}
	}
	return nil
}

// capBits is a capability list as a bit set.
func capBits(names []string) uint64 {
	var b uint64
	for _, c := range capList(names) {
		b |= 1 << uint(c)
	}
	return b
}

// capsEpilogue bounds the restored main thread's capabilities by the
// bundle's: the bounding set loses what the bundle does not list, and
// the other sets become the bundle's within what the thread still holds
// (a process restored as another uid than 0 has lost its capabilities
// already, and keeps none).
func capsEpilogue(c ptrace.ThreadCaps) func(*ptrace.Tracee) (*ptrace.Batch, error) {
	return func(t *ptrace.Tracee) (*ptrace.Batch, error) {
		st, err := procfs.Status(t.Pid())
		if err != nil {
			return nil, err
		}
		held := func(k string) uint64 {
			v, _ := strconv.ParseUint(strings.TrimSpace(st[k]), 16, 64)
			return v
		}
		prm := held("CapPrm")
		b := ptrace.NewBatch()
		last, err := capability.LastCap()
		if err != nil {
			return nil, err
		}
		for i := 0; i <= int(last); i++ {
			if c.Bounding&(1<<uint(i)) == 0 {
				b.Add(unix.SYS_PRCTL, ptrace.Lit(unix.PR_CAPBSET_DROP), ptrace.Lit(int64(i))).With(ptrace.IgnoreError)
			}
		}
		ptrace.AddCapset(b, c.Effective&prm, c.Permitted&prm, c.Inheritable&(prm|held("CapInh")))
		return b, nil
	}
}

// unmountIn detaches mount point p in process pid's mount namespace,
// from a locked OS thread of its own that is never given back (setns
// changes the thread's root for good), and removes the directory.
func unmountIn(pid int, p string) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/ns/mnt", pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare fs: %w", err)
			return
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("join mount namespace: %w", err)
			return
		}
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			errc <- err
			return
		}
		errc <- unix.Rmdir(p)
	}()
	return <-errc
}

// The init's side.

// restorerName is the restorer's memfd name: /proc/PID/exe shows it.
const restorerName = "catalyzer-restorer"

// bindRestoreImage binds the image read-only at restoreImageMount under
// the prepared root, whose /dev must be a tmpfs of the container's own.
func bindRestoreImage(cfg *initConfig) error {
	dev := filepath.Join(cfg.Rootfs, "dev")
	var fs unix.Statfs_t
	if err := unix.Statfs(dev, &fs); err != nil {
		return err
	}
	if fs.Type != unix.TMPFS_MAGIC {
		return fmt.Errorf("the image is bound in the container's /dev, which must be a tmpfs of its own (containerd's default spec mounts one): %w", errdefs.ErrNotSupported)
	}
	mp := filepath.Join(cfg.Rootfs, restoreImageMount)
	if err := os.Mkdir(mp, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(cfg.RestoreImage, mp, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", cfg.RestoreImage, err)
	}
	return unix.Mount("", mp, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// execRestorer ends a restoring init: every descriptor but 0-2 closed
// on exec (the sync socket's EOF tells create the exec happened),
// no_new_privs and the bundle's seccomp filter set (create's tracer
// suspends it while it restores; the restored process keeps it), then
// the restorer, still root with every capability (the restore plan sets
// credentials and mm fields; create's epilogue bounds them), exec'd
// from a sealed memfd. With fifoFD (>= 0: boot by annotation) it
// blocks until start first, as a scratch init does, and start restores.
func execRestorer(cfg *initConfig, sock *os.File, fifoFD int) error {
	fd, err := restorerMemfd()
	if err != nil {
		return initErr("restore", err, "restorer")
	}
	if err := markCloseOnExec(3); err != nil {
		return initErr("process", err, "close-on-exec")
	}
	if adj := cfg.Spec.Process.OOMScoreAdj; adj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*adj)), 0); err != nil {
			return initErr("process", err, "oom_score_adj")
		}
	}
	if cfg.Spec.Process.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return initErr("security", err, "no_new_privs")
		}
	}
	if cfg.Seccomp != nil {
		if err := seccomp.Install(cfg.Seccomp); err != nil {
			return initErr("security", err, "seccomp")
		}
	}
	if err := send(sock, syncMsg{Type: msgCreated}); err != nil {
		return initErr("sync", err, "report created")
	}
	if fifoFD >= 0 {
		sock.Close()
		if err := waitStart(fifoFD); err != nil {
			return err
		}
		if err := startContainerHooks(cfg); err != nil {
			return err
		}
	}
	err = execveat(fd, []string{restorerName})
	return initErr("exec", err, "exec the restorer")
}

// execveat execs the program open at fd (AT_EMPTY_PATH), with no
// environment.
func execveat(fd int, argv []string) error {
	empty, err := unix.BytePtrFromString("")
	if err != nil {
		return err
	}
	argvp := make([]*byte, 0, len(argv)+1)
	for _, a := range argv {
		p, err := unix.BytePtrFromString(a)
		if err != nil {
			return err
		}
		argvp = append(argvp, p)
	}
	argvp = append(argvp, nil)
	envp := []*byte{nil}
	_, _, e := unix.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envp[0])), unix.AT_EMPTY_PATH, 0)
	return e
}

// restorerMemfd is image's restorer binary in a sealed, close-on-exec
// memfd (it is exec'd by descriptor: the container's root has no copy).
func restorerMemfd() (int, error) {
	fd, err := unix.MemfdCreate(restorerName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(restorerName, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return -1, fmt.Errorf("memfd: %w", err)
	}
	bin := image.RestorerBinary()
	for off := 0; off < len(bin); {
		n, err := unix.Pwrite(fd, bin[off:], int64(off))
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("memfd: write: %w", err)
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("memfd: seal: %w", err)
	}
	return fd, nil
}

// restoreOnStart is start's part of a boot by annotation: the init, let
// go by the fifo, execs the restorer; once it has (its exe is the
// restorer's memfd) the image is restored into it as create restores
// for the restore verb.
func (c *Container) restoreOnStart() error {
	img, err := openRestoreImage(c.rec.ID, c.rec.Boot.Image)
	if err != nil {
		return fmt.Errorf("annotation %s: %w", AnnotationImage, err)
	}
	for {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.rec.Pid))
		if strings.Contains(exe, restorerName) {
			break
		}
		if !c.rec.alive() {
			return errors.New("restore: the container's init exited before it became the restorer")
		}
		time.Sleep(100 * time.Microsecond)
	}
	ri := &restoreInput{img: img}
	return ri.restoreInto(c.rec, c.rec.RestoreCaps)
}
