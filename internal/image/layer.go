package image

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/filecopy"
)

// LayerDir is the directory of an image that holds the root filesystem
// changes the checkpointed process made (an overlayfs upper layer: files,
// whiteouts, opaque directories), mounted read-only under every restored
// instance's own upper layer.
const LayerDir = "rootfs"

// CaptureLayer copies the overlayfs upper directory upper into dir/rootfs,
// keeping what overlayfs needs to read it as a lower layer: whiteouts
// (0:0 character devices), trusted.overlay.* xattrs (opaque directories),
// modes, owners and symlinks. Anything else (other devices, sockets,
// fifos) is refused.
func CaptureLayer(upper, dir string) error {
	dst := filepath.Join(dir, LayerDir)
	if err := os.Mkdir(dst, 0o755); err != nil {
		return fmt.Errorf("capture layer: %w", err)
	}
	return filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("capture layer: %w", err)
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("capture layer %s: %w", rel, err)
		}
		mode := st.Mode & unix.S_IFMT
		switch {
		case rel == ".":
			// dst exists; copy its metadata below.
		case mode == unix.S_IFDIR:
			if err := os.Mkdir(out, 0o700); err != nil {
				return fmt.Errorf("capture layer %s: %w", rel, err)
			}
		case mode == unix.S_IFREG:
			if err := copyFile(p, out); err != nil {
				return fmt.Errorf("capture layer %s: %w", rel, err)
			}
		case mode == unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, out); err != nil {
				return fmt.Errorf("capture layer %s: %w", rel, err)
			}
		case mode == unix.S_IFCHR && st.Rdev == 0:
			// An overlayfs whiteout (the file was deleted): a 0:0 character
			// device, mode 0000.
			if err := unix.Mknod(out, unix.S_IFCHR, 0); err != nil {
				return fmt.Errorf("capture layer %s: whiteout: %w", rel, err)
			}
		default:
			return fmt.Errorf("capture layer: %s is a %s, which an image cannot hold: %w", rel, fs.FileMode(st.Mode).Type(), errdefs.ErrNotSupported)
		}
		if err := copyXattrs(p, out); err != nil {
			return fmt.Errorf("capture layer %s: %w", rel, err)
		}
		if err := unix.Lchown(out, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("capture layer %s: %w", rel, err)
		}
		if mode != unix.S_IFLNK {
			if err := unix.Chmod(out, st.Mode&0o7777); err != nil {
				return fmt.Errorf("capture layer %s: %w", rel, err)
			}
		}
		return nil
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return filecopy.ToNew(dst, in, 0o600)
}

// copyXattrs copies the trusted.overlay.* and user.* attributes of src.
func copyXattrs(src, dst string) error {
	sz, err := unix.Llistxattr(src, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(src, buf)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(string(buf[:sz]), "\x00") {
		if !strings.HasPrefix(name, "trusted.overlay.") && !strings.HasPrefix(name, "user.") {
			continue
		}
		n, err := unix.Lgetxattr(src, name, nil)
		if err != nil {
			return err
		}
		v := make([]byte, n)
		if n, err = unix.Lgetxattr(src, name, v); err != nil {
			return err
		}
		if err := unix.Lsetxattr(dst, name, v[:n], 0); err != nil {
			return fmt.Errorf("xattr %s: %w", name, err)
		}
	}
	return nil
}

// layerSlack is what LayerBytes adds to a layer's contents: room for
// tmpfs's own accounting (xattrs, rounding) so that the copy fits.
const layerSlack = 256 << 10

// LayerBytes is the size of a tmpfs that holds a copy of the layer at
// dir (an image's rootfs, or an overlay upper): each regular file and
// long symlink rounded up to pages, one page per directory, and a little
// slack. A layer larger than max is refused (errdefs.ErrTooLarge): it
// was taken from an upper layer no larger than the instance's tmpfs, so
// a bigger one is not what this daemon wrote. A missing dir needs only
// the slack.
func LayerBytes(dir string, max int64) (int64, error) {
	n := int64(layerSlack)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			n += (st.Size + pageSize - 1) &^ (pageSize - 1)
		case unix.S_IFDIR:
			n += pageSize
		case unix.S_IFLNK:
			if st.Size >= 128 { // shorter targets live in the inode
				n += pageSize
			}
		}
		if n > max {
			return fmt.Errorf("image layer %s holds more than %d bytes: %w", dir, max, errdefs.ErrTooLarge)
		}
		return nil
	})
	return n, err
}
