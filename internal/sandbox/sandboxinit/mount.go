package sandboxinit

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
)

// The mount building blocks below are the helper's; the host applies the
// same ones where it builds a root for a helper in a user namespace
// (package sandbox, prepareRoot), and the OCI runtime where it applies a
// bundle's config, so that all isolate alike.

// MountOverlay mounts, in the caller's mount namespace, a size-limited
// tmpfs on dir holding the overlay's upper and work dirs, and the overlay
// (lower, that upper) on dir/merged. rootUID owns the upper's root.
func MountOverlay(dir, lower string, size int64, rootUID int) error {
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV,
		fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	for _, d := range []string{"upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			return err
		}
	}
	if rootUID != 0 {
		// Root inside a user namespace must own "/" to write there, and
		// must be able to reach the merged dir through dir.
		err := os.Chown(filepath.Join(dir, "upper"), rootUID, rootUID)
		if err == nil {
			err = os.Chmod(dir, 0o711)
		}
		if err != nil {
			_ = unix.Unmount(dir, unix.MNT_DETACH)
			return fmt.Errorf("give the upper layer to uid %d: %w", rootUID, err)
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, dir, dir)
	if err := unix.Mount("overlay", filepath.Join(dir, "merged"), "overlay", 0, opts); err != nil {
		_ = unix.Unmount(dir, unix.MNT_DETACH)
		return fmt.Errorf("mount overlay (%s): %w", opts, err)
	}
	return nil
}

// UnmountOverlay lazily unmounts what MountOverlay mounted, if mounted.
func UnmountOverlay(dir string) {
	_ = unix.Unmount(filepath.Join(dir, "merged"), unix.MNT_DETACH)
	_ = unix.Unmount(dir, unix.MNT_DETACH)
}

// BindAll bind-mounts each of binds under root (read-only unless
// Writable).
func BindAll(root string, binds []initwire.Bind) error {
	for _, b := range binds {
		dst := filepath.Join(root, b.Target)
		if err := MkMountpoint(b.Source, dst); err != nil {
			return fmt.Errorf("bind target %s: %w", b.Target, err)
		}
		if err := unix.Mount(b.Source, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s -> %s: %w", b.Source, b.Target, err)
		}
		if !b.Writable {
			if err := RemountReadonly(dst); err != nil {
				return fmt.Errorf("remount %s read-only: %w", b.Target, err)
			}
		}
	}
	return nil
}

// MkMountpoint creates dst as a directory or an empty file, like src, for
// a bind mount of src onto it.
func MkMountpoint(src, dst string) error {
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

// RemountReadonly makes the mount at p read-only, keeping its nosuid,
// nodev, noexec and atime flags (a user namespace may not clear those of
// a locked mount).
func RemountReadonly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC |
		unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	return unix.Mount("", p, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|keep, "")
}

// MaskPath hides p: /dev/null bound over a file, an empty read-only tmpfs
// over a directory. A missing path is skipped.
func MaskPath(p string) error {
	st, err := os.Lstat(p)
	if err != nil {
		return nil
	}
	if st.IsDir() {
		return unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
	}
	return unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
}

// MountsUnder lists the mount points at or below dir in the caller's
// mount namespace, parents first, a point stacked k times k times.
func MountsUnder(dir string) ([]string, error) {
	return procfs.MountPointsUnder(procfs.Self, dir)
}
