package sandboxinit

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
)

// devNodes are the host devices bound into every sandbox's /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// devLinks are /dev's symlinks.
var devLinks = map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd",
	"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}

// rootfsErr is a failed step of buildRootfs.
func rootfsErr(err error, f string, a ...any) error { return stepErr("rootfs", err, f, a...) }

// buildRootfs runs in the helper's own mount namespace: it builds the
// sandbox's root under cfg.Dir/merged and pivots into it, in the order of
// the package doc.
func buildRootfs(cfg *initwire.Config) error {
	root := filepath.Join(cfg.Dir, "merged")
	for _, step := range []func(*initwire.Config, string) error{
		mountRoot, mountSpecial, mountDev, mountSys, pivot, maskAll,
	} {
		if err := step(cfg, root); err != nil {
			return err
		}
	}
	return nil
}

// mountRoot makes / rprivate and mounts the overlay and the binds on root
// (or, for a root the daemon prepared, binds its copy onto itself).
func mountRoot(cfg *initwire.Config, root string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return rootfsErr(err, "make / rprivate")
	}
	if cfg.Prepared {
		// Our copy of the daemon's overlay is locked (it came from a more
		// privileged mount namespace) and cannot be pivoted into: bind it.
		if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return rootfsErr(err, "bind %s", root)
		}
		return nil
	}
	if err := MountOverlay(cfg.Dir, cfg.Lower, cfg.UpperBytes, 0); err != nil {
		return rootfsErr(err, "overlay")
	}
	if err := BindAll(root, cfg.Binds); err != nil {
		return rootfsErr(err, "binds")
	}
	return nil
}

// mountSpecial mounts /proc (not for an env's holder: its /proc stays an
// empty directory, the joining process mounts proc for its own PID
// namespace there), the /dev tmpfs, devpts, /dev/shm and /tmp.
func mountSpecial(cfg *initwire.Config, root string) error {
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
		{"shm", "/dev/shm", "tmpfs", nsd, fmt.Sprintf("mode=1777,size=%d", cfg.ShmBytes)},
		{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, fmt.Sprintf("mode=1777,size=%d", cfg.TmpBytes)},
	}
	if cfg.Hold {
		if err := os.MkdirAll(filepath.Join(root, "proc"), 0o555); err != nil {
			return rootfsErr(err, "mkdir /proc")
		}
		mounts = mounts[1:]
	}
	for _, m := range mounts {
		dst := filepath.Join(root, m.dst)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return rootfsErr(err, "mkdir %s", m.dst)
		}
		if err := unix.Mount(m.src, dst, m.fstype, m.flags, m.data); err != nil {
			return rootfsErr(err, "mount %s on %s", m.fstype, m.dst)
		}
	}
	return nil
}

// mountDev binds the device nodes into /dev and makes its symlinks.
func mountDev(_ *initwire.Config, root string) error {
	for _, n := range devNodes {
		dst := filepath.Join(root, "dev", n)
		if err := os.WriteFile(dst, nil, 0o666); err != nil {
			return rootfsErr(err, "create /dev/%s", n)
		}
		if err := unix.Mount("/dev/"+n, dst, "", unix.MS_BIND, ""); err != nil {
			return rootfsErr(err, "bind /dev/%s", n)
		}
	}
	for name, target := range devLinks {
		if err := os.Symlink(target, filepath.Join(root, "dev", name)); err != nil {
			return rootfsErr(err, "symlink /dev/%s", name)
		}
	}
	return nil
}

// mountSys mounts /sys read-only: a fresh sysfs in a network namespace of
// the sandbox's own, else the host's, every mount of it read-only.
func mountSys(cfg *initwire.Config, root string) error {
	sys := filepath.Join(root, "sys")
	if err := os.MkdirAll(sys, 0o755); err != nil {
		return rootfsErr(err, "mkdir /sys")
	}
	if cfg.NewNet {
		if err := unix.Mount("sysfs", sys, "sysfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC|unix.MS_RDONLY, ""); err != nil {
			return rootfsErr(err, "mount sysfs")
		}
		return nil
	}
	if err := unix.Mount("/sys", sys, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return rootfsErr(err, "bind /sys")
	}
	subs, err := MountsUnder(sys)
	if err != nil {
		return rootfsErr(err, "list /sys mounts")
	}
	for _, p := range subs {
		if err := RemountReadonly(p); err != nil {
			return rootfsErr(err, "remount %s read-only", p)
		}
	}
	return nil
}

// pivot makes root the root: pivot_root(".", ".") stacks the old root on
// the new one; detaching it leaves only the new root (runc's way, no
// put_old directory needed).
func pivot(_ *initwire.Config, root string) error {
	if err := unix.Chdir(root); err != nil {
		return rootfsErr(err, "chdir %s", root)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return rootfsErr(err, "pivot_root")
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return rootfsErr(err, "detach old root")
	}
	if err := unix.Chdir("/"); err != nil {
		return rootfsErr(err, "chdir /")
	}
	return nil
}

// maskAll applies the masked and read-only paths inside the new root.
func maskAll(cfg *initwire.Config, _ string) error {
	for _, p := range cfg.Masked {
		if err := MaskPath(p); err != nil {
			return rootfsErr(err, "mask %s", p)
		}
	}
	for _, p := range cfg.Readonly {
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return rootfsErr(err, "bind %s", p)
		}
		if err := RemountReadonly(p); err != nil {
			return rootfsErr(err, "remount %s read-only", p)
		}
	}
	return nil
}
