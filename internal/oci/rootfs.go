package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// defaultDevices are the nodes every container's /dev gets, as runc
// gives them (the spec's linux.devices come on top).
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

// secureJoin resolves path inside root: symlinks are followed as if root
// were "/", so no component can lead outside it. Missing components are
// kept as they are.
func secureJoin(root, path string) (string, error) {
	parts := strings.Split(filepath.Clean("/"+path), "/")
	cur := "/"
	for links := 0; len(parts) > 0; {
		p := parts[0]
		parts = parts[1:]
		if p == "" || p == "." {
			continue
		}
		if p == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		next := filepath.Join(cur, p)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > 255 {
			return "", fmt.Errorf("resolve %s in %s: %w", path, root, unix.ELOOP)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		parts = append(strings.Split(target, "/"), parts...)
	}
	return filepath.Join(root, cur), nil
}

// prepareRootfs builds the container's mounts under its root, in the
// init's mount namespace, before pivot_root.
func prepareRootfs(cfg *initConfig) error {
	s := cfg.Spec
	fail := func(err error, f string, a ...any) error { return initErr("rootfs", err, f, a...) }
	prop, shared, _ := propagationFlag(s.Linux.RootfsPropagation)
	// Nothing mounted here may reach the host: slave (for a shared root
	// propagation, set on the new root below) or private.
	first := prop
	if shared {
		first = unix.MS_SLAVE | unix.MS_REC
	}
	if err := unix.Mount("", "/", "", first, ""); err != nil {
		return fail(err, "set / propagation")
	}
	root := cfg.Rootfs
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fail(err, "bind root %s", root)
	}
	for _, m := range s.Mounts {
		if err := mountOne(cfg, m); err != nil {
			return fail(err, "mount %s (%s)", m.Destination, m.Type)
		}
	}
	if err := makeDevices(cfg); err != nil {
		return fail(err, "devices")
	}
	if cfg.RestoreImage != "" {
		if err := bindRestoreImage(cfg); err != nil {
			return fail(err, "restore image")
		}
	}
	if shared {
		if err := unix.Mount("", root, "", prop, ""); err != nil {
			return fail(err, "root propagation")
		}
	}
	return nil
}

func mountOne(cfg *initConfig, m specs.Mount) error {
	flags, props, data, err := parseMountOptions(m.Options)
	if err != nil {
		return err
	}
	dst, err := secureJoin(cfg.Rootfs, m.Destination)
	if err != nil {
		return err
	}
	bind := flags&unix.MS_BIND != 0 || m.Type == "bind"
	switch {
	case m.Type == "cgroup" || m.Type == "cgroup2":
		return mountCgroup(cfg, dst, flags)
	case bind:
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(cfg.Bundle, src)
		}
		if err := sandbox.MkMountpoint(src, dst); err != nil {
			return err
		}
		bflags := unix.MS_BIND | (flags & unix.MS_REC)
		if err := unix.Mount(src, dst, "", uintptr(bflags), ""); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
		// Other flags take a remount of the bind.
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			if err := unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|rest, ""); err != nil {
				return fmt.Errorf("remount bind %s: %w", dst, err)
			}
		}
	default:
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		err := unix.Mount(m.Source, dst, m.Type, flags, data)
		if errors.Is(err, unix.EINVAL) && m.Type == "mqueue" {
			err = nil
		}
		if errors.Is(err, unix.EPERM) && m.Type == "sysfs" {
			// No network namespace of our own: sysfs is refused; bind
			// the host's, read-only (runc does the same in a user
			// namespace).
			if err = unix.Mount("/sys", dst, "", unix.MS_BIND|unix.MS_REC, ""); err == nil {
				err = unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
			}
		}
		if err != nil {
			return err
		}
	}
	for _, p := range props {
		if err := unix.Mount("", dst, "", p, ""); err != nil {
			return fmt.Errorf("propagation of %s: %w", dst, err)
		}
	}
	return nil
}

// mountCgroup gives the container its own cgroup directories: on v2 a
// cgroup2 mount (rooted at its cgroup namespace), on v1 a tmpfs holding
// a bind of the container's directory of each hierarchy.
func mountCgroup(cfg *initConfig, dst string, flags uintptr) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	ro := flags & unix.MS_RDONLY
	common := (flags & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC))
	if d, ok := cfg.CgroupDirs["unified"]; ok {
		if hasNewNS(cfg.Spec, specs.CgroupNamespace) {
			return unix.Mount("cgroup2", dst, "cgroup2", flags, "")
		}
		if err := unix.Mount(d, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		return unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_BIND|ro|common, "")
	}
	if err := unix.Mount("tmpfs", dst, "tmpfs", common, "mode=755"); err != nil {
		return err
	}
	names := make([]string, 0, len(cfg.CgroupDirs))
	for n := range cfg.CgroupDirs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sub := filepath.Join(dst, n)
		if err := os.Mkdir(sub, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(cfg.CgroupDirs[n], sub, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := unix.Mount("", sub, "", unix.MS_REMOUNT|unix.MS_BIND|ro|common, ""); err != nil {
			return err
		}
	}
	if ro != 0 {
		return unix.Mount("", dst, "", unix.MS_REMOUNT|unix.MS_RDONLY|common, "mode=755")
	}
	return nil
}

// makeDevices creates the default and the spec's device nodes under the
// root's /dev (bound from the host in a user namespace, where mknod is
// refused), and runc's /dev symlinks.
func makeDevices(cfg *initConfig) error {
	s := cfg.Spec
	userns := hasNS(s, specs.UserNamespace)
	devs := append(append([]specs.LinuxDevice{}, defaultDevices...), s.Linux.Devices...)
	for _, d := range devs {
		dst, err := secureJoin(cfg.Rootfs, d.Path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if userns {
			if err := sandbox.MkMountpoint("/dev/null", dst); err != nil {
				return err
			}
			if err := unix.Mount(d.Path, dst, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind %s: %w", d.Path, err)
			}
			continue
		}
		mode := uint32(0o666)
		if d.FileMode != nil {
			mode = uint32(*d.FileMode & 0o7777)
		}
		switch d.Type {
		case "c", "u":
			mode |= unix.S_IFCHR
		case "b":
			mode |= unix.S_IFBLK
		case "p":
			mode |= unix.S_IFIFO
		default:
			return invalid("device %s: type %q", d.Path, d.Type)
		}
		_ = os.Remove(dst)
		if err := unix.Mknod(dst, mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
			return fmt.Errorf("mknod %s: %w", d.Path, err)
		}
		if err := unix.Chmod(dst, mode&0o7777); err != nil {
			return err
		}
		uid, gid := 0, 0
		if d.UID != nil {
			uid = int(*d.UID)
		}
		if d.GID != nil {
			gid = int(*d.GID)
		}
		if err := unix.Chown(dst, uid, gid); err != nil {
			return err
		}
	}
	dev := filepath.Join(cfg.Rootfs, "dev")
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	if _, err := os.Stat(filepath.Join(dev, "pts", "ptmx")); err == nil {
		links = append(links, [2]string{"pts/ptmx", "ptmx"})
	}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	for _, l := range links {
		p := filepath.Join(dev, l[1])
		if _, err := os.Lstat(p); err == nil {
			if l[1] != "ptmx" {
				continue
			}
			_ = os.Remove(p)
		}
		if err := os.Symlink(l[0], p); err != nil {
			return err
		}
	}
	return nil
}

// enterRootfs makes the prepared root the process's "/": pivot_root, or
// with --no-pivot a move over "/" and chroot (for roots on ramfs).
func enterRootfs(cfg *initConfig) error {
	fail := func(err error, f string, a ...any) error { return initErr("rootfs", err, f, a...) }
	if err := unix.Chdir(cfg.Rootfs); err != nil {
		return fail(err, "chdir %s", cfg.Rootfs)
	}
	if cfg.NoPivot {
		if err := unix.Mount(cfg.Rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
			return fail(err, "move root")
		}
		if err := unix.Chroot("."); err != nil {
			return fail(err, "chroot")
		}
	} else {
		// pivot_root(".", ".") stacks the old root on the new one;
		// detaching it leaves only the new one (runc's way).
		if err := unix.PivotRoot(".", "."); err != nil {
			return fail(err, "pivot_root")
		}
		// The old root must not propagate the detach to the host.
		if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			return fail(err, "old root propagation")
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fail(err, "detach old root")
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return fail(err, "chdir /")
	}
	return nil
}
