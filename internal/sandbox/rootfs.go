package sandbox

import (
	"errors"
	"fmt"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MaskedPaths and ReadonlyPaths are runc's defaults: every sandbox gets
// /dev/null (files) or an empty read-only tmpfs (directories) over each
// masked path that exists, and a read-only bind over each read-only path.
// Start applies them after pivot_root; an Env applies the /sys entries
// and leaves /proc to the process that joins it, which must apply the
// /proc entries over the proc it mounts (the sfork batch does).
var (
	MaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	ReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	devNodes      = []string{"null", "zero", "full", "random", "urandom", "tty"}
)

// buildRootfs runs in the init helper (own mount namespace): it builds the
// sandbox's root and pivots into it. See doc.go for the order.
func buildRootfs(cfg *initConfig) error {
	fail := func(err error, f string, a ...any) error { return stepErr("rootfs", err, f, a...) }
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(err, "make / rprivate")
	}
	root := filepath.Join(cfg.Dir, "merged")
	if cfg.Prepared {
		// Our copy of the daemon's overlay is locked (it came from a more
		// privileged mount namespace) and cannot be pivoted into: bind it.
		if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail(err, "bind %s", root)
		}
	} else if err := mountOverlay(cfg.Dir, cfg.Lower, cfg.UpperBytes, 0); err != nil {
		return fail(err, "overlay")
	}

	if !cfg.Prepared {
		if err := bindAll(root, cfg.Binds); err != nil {
			return fail(err, "binds")
		}
	}

	type mnt struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}
	nsd := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	mounts := []mnt{
		{"proc", "/proc", "proc", nsd, ""},
		{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", nsd, fmt.Sprintf("mode=1777,size=%d", DefaultShmBytes)},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, fmt.Sprintf("mode=1777,size=%d", DefaultTmpBytes)},
	}
	if cfg.Hold {
		// An env's /proc stays an empty directory: the process that joins
		// mounts proc for its own PID namespace there.
		if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
			return fail(err, "mkdir /proc")
		}
		mounts = mounts[1:]
	}
	for _, m := range mounts {
		dst := filepath.Join(root, m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fail(err, "mkdir %s", m.dst)
		}
		if err := unix.Mount(m.src, dst, m.fstype, m.flags, m.data); err != nil {
			return fail(err, "mount %s on %s", m.fstype, m.dst)
		}
	}
	for _, n := range devNodes {
		dst := filepath.Join(root, "dev", n)
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return fail(err, "create /dev/%s", n)
		}
		if err := unix.Mount("/dev/"+n, dst, "", unix.MS_BIND, ""); err != nil {
			return fail(err, "bind /dev/%s", n)
		}
	}
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd",
		"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(root, "dev", name)); err != nil {
			return fail(err, "symlink /dev/%s", name)
		}
	}

	sys := filepath.Join(root, "sys")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		return fail(err, "mkdir /sys")
	}
	if cfg.NewNet {
		if err := unix.Mount("sysfs", sys, "sysfs", nsd|unix.MS_RDONLY, ""); err != nil {
			return fail(err, "mount sysfs")
		}
	} else {
		// The host's /sys, every mount of it read-only.
		if err := unix.Mount("/sys", sys, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail(err, "bind /sys")
		}
		subs, err := mountsUnder(sys)
		if err != nil {
			return fail(err, "list /sys mounts")
		}
		for _, p := range subs {
			if err := remountRO(p); err != nil {
				return fail(err, "remount %s read-only", p)
			}
		}
	}

	// pivot_root(".", ".") stacks the old root on the new one; detaching it
	// leaves only the new root (runc's way, no put_old directory needed).
	if err := unix.Chdir(root); err != nil {
		return fail(err, "chdir %s", root)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fail(err, "pivot_root")
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fail(err, "detach old root")
	}
	if err := unix.Chdir("/"); err != nil {
		return fail(err, "chdir /")
	}

	for _, p := range MaskedPaths {
		if err := maskPath(p); err != nil {
			return fail(err, "mask %s", p)
		}
	}
	for _, p := range ReadonlyPaths {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fail(err, "bind %s", p)
		}
		if err := remountRO(p); err != nil {
			return fail(err, "remount %s read-only", p)
		}
	}
	return nil
}

// bindAll bind-mounts each of binds under root (read-only unless
// Writable). The daemon does it for a prepared root (a user namespace's
// root need not be able to reach the sources), the init helper otherwise.
func bindAll(root string, binds []Bind) error {
	for _, b := range binds {
		dst := filepath.Join(root, b.Target)
		if err := mkMountpoint(b.Source, dst); err != nil {
			return fmt.Errorf("bind target %s: %w", b.Target, err)
		}
		if err := unix.Mount(b.Source, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s -> %s: %w", b.Source, b.Target, err)
		}
		if !b.Writable {
			if err := remountRO(dst); err != nil {
				return fmt.Errorf("remount %s read-only: %w", b.Target, err)
			}
		}
	}
	return nil
}

// mkMountpoint creates dst as a directory or an empty file, like src.
func mkMountpoint(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return os.MkdirAll(dst, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

// remountRO makes the mount at p read-only, keeping its other flags (a
// user namespace may not clear nosuid/nodev/noexec of a locked mount).
func remountRO(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
		unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	return unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|keep, "")
}

// maskPath hides p: /dev/null over a file, an empty read-only tmpfs over
// a directory. Missing paths are skipped.
func maskPath(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	if st.IsDir() {
		return unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
	}
	return unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
}

// mountsUnder lists the mount points at or below dir in the caller's
// mount namespace, parents first (mountinfo's order), a point stacked k
// times k times.
func mountsUnder(dir string) ([]string, error) {
	ms, err := procfs.Mounts(procfs.Self)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.Under(dir) {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}

// MountCall is one mount(2) call, as data: what a process that joins an
// Env (a forked instance, from an injected batch) must still do itself.
type MountCall struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	// Optional calls may fail (a path this kernel lacks).
	Optional bool
}

// ProcMounts is what a process that joined an Env does to get the /proc
// of Start: a fresh proc for its own PID namespace, then runc's masked
// and read-only paths under /proc, decided from the host's /proc (same
// kernel, same entries) exactly as Start's helper decides from its own.
func ProcMounts() []MountCall {
	calls := []MountCall{{Source: "proc", Target: "/proc", FSType: "proc",
		Flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC}}
	for _, p := range MaskedPaths {
		if !strings.HasPrefix(p, "/proc/") {
			continue
		}
		st, err := os.Lstat(p)
		switch {
		case err != nil:
		case st.IsDir():
			calls = append(calls, MountCall{Source: "tmpfs", Target: p, FSType: "tmpfs", Flags: unix.MS_RDONLY, Data: "size=0", Optional: true})
		default:
			calls = append(calls, MountCall{Source: "/dev/null", Target: p, Flags: unix.MS_BIND, Optional: true})
		}
	}
	for _, p := range ReadonlyPaths {
		if _, err := os.Lstat(p); err != nil || !strings.HasPrefix(p, "/proc/") {
			continue
		}
		calls = append(calls,
			MountCall{Source: p, Target: p, Flags: unix.MS_BIND | unix.MS_REC, Optional: true},
			MountCall{Target: p, Flags: unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RELATIME, Optional: true})
	}
	return calls
}

// LayerTmpfs is a tmpfs the daemon mounts for an extra lower layer: overlayfs
// refuses a lower layer that lies on the same file system as another
// layer below it (ELOOP, "overlapping layers"), which any directory under
// the host's "/" does when "/" is the bottom layer. The caller copies the
// layer in; Release unmounts it; Sweep removes what a killed daemon left.
type LayerTmpfs struct{ Dir string }

// NewLayerTmpfs mounts a tmpfs of size bytes at RunDir/<parent>/<name>.
func NewLayerTmpfs(parent, name string, size int64) (*LayerTmpfs, error) {
	if parent == "" {
		parent = DefaultCgroupParent
	}
	if !idRE.MatchString(name) {
		return nil, fmt.Errorf("scratch %q: bad name: %w", name, errdefs.ErrInvalid)
	}
	dir := filepath.Join(RunDir, parent, name)
	if err := mkRunParent(filepath.Dir(dir)); err != nil {
		return nil, err
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("scratch %s: %w", dir, err)
	}
	return &LayerTmpfs{Dir: dir}, nil
}

// Release unmounts the scratch tmpfs (lazily: envs built on it keep their
// copy) and removes its directory.
func (s *LayerTmpfs) Release() error {
	unmountOverlay(s.Dir)
	return os.Remove(s.Dir)
}
