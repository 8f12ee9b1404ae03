package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/catalyzer/catalyzer/internal/filecopy"
)

// The embedded default root: what a sandbox sees as "/" when its config
// names no Rootfs. It is a minimal read-only root that gives runtimes what
// they need and shows no host secrets:
//
//   - the system directories (systemDirs) bound read-only from the host,
//     or the same symlinks where the host has them (merged /usr);
//   - an /etc copied from the host's, keeping only world-readable files,
//     directories and symlinks, never shadow, gshadow, sudoers, ssh, ssl
//     private keys, subuid/subgid, machine-id, or backups (name-), with a
//     generated passwd, group, hosts and hostname;
//   - empty mount points (/proc, /dev, /sys, /tmp, /run, /opt, /var/tmp,
//     /root, ...).
//
// Never /root, /home, /run, /var/lib, /tmp of the host, nor the daemon's
// state dir. The tree is built once per daemon under RunDir/../root/<hash
// of its content> (a tmpfs on most hosts: /run), shared by every sandbox
// as its bottom overlay layer.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// etcSkip are /etc entries never copied, whatever their mode.
var etcSkip = map[string]bool{
	"shadow": true, "gshadow": true, "sudoers": true, "sudoers.d": true, "ssh": true,
	"subuid": true, "subgid": true, "machine-id": true, "passwd": true, "group": true,
	"hosts": true, "hostname": true, "security": true, "polkit-1": true, "catalyzer": true,
}

// etcGenerated replace the host's files of these names.
var etcGenerated = map[string]string{
	"passwd":   "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
	"group":    "root:x:0:\nnogroup:x:65534:\n",
	"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
	"hostname": "sandbox\n",
}

// defaultRootfs is the default root's directory and the read-only binds
// that complete it, built once per process.
var defaultRootfs = sync.OnceValues(func() (defaultRoot, error) { return buildDefaultRoot("/") })

type defaultRoot struct {
	dir   string
	binds []Bind
}

// buildDefaultRoot builds the default root from host (the host's "/"; a
// test may pass another tree).
func buildDefaultRoot(host string) (defaultRoot, error) {
	base := filepath.Join(filepath.Dir(RunDir), "root")
	if err := mkRunParent(base); err != nil {
		return defaultRoot{}, fmt.Errorf("default root: %w", err)
	}
	tmp, err := os.MkdirTemp(base, ".build-")
	if err != nil {
		return defaultRoot{}, fmt.Errorf("default root: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return defaultRoot{}, fmt.Errorf("default root: %w", err)
	}
	var binds []Bind
	for _, d := range systemDirs {
		src := filepath.Join(host, d)
		st, err := os.Lstat(src)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return defaultRoot{}, fmt.Errorf("default root: %w", err)
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return defaultRoot{}, fmt.Errorf("default root: %w", err)
			}
			if err := os.Symlink(target, filepath.Join(tmp, d)); err != nil {
				return defaultRoot{}, fmt.Errorf("default root: %w", err)
			}
		case st.IsDir():
			if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
				return defaultRoot{}, fmt.Errorf("default root: %w", err)
			}
			binds = append(binds, Bind{Source: src, Target: d})
		}
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp", "run", "opt", "var", "var/tmp", "root", "mnt", "srv"} {
		mode := fs.FileMode(0o755)
		switch d {
		case "tmp", "var/tmp":
			mode = 0o1777
		}
		p := filepath.Join(tmp, d)
		if err := os.Mkdir(p, mode); err != nil {
			return defaultRoot{}, fmt.Errorf("default root: %w", err)
		}
		if err := os.Chmod(p, mode); err != nil { // umask
			return defaultRoot{}, fmt.Errorf("default root: %w", err)
		}
	}
	etc := filepath.Join(tmp, "etc")
	if err := copyEtc(filepath.Join(host, "etc"), etc); err != nil {
		return defaultRoot{}, fmt.Errorf("default root: /etc: %w", err)
	}
	for name, content := range etcGenerated {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return defaultRoot{}, fmt.Errorf("default root: %w", err)
		}
	}
	sum, err := treeHash(tmp)
	if err != nil {
		return defaultRoot{}, fmt.Errorf("default root: %w", err)
	}
	dir := filepath.Join(base, sum)
	if err := os.Rename(tmp, dir); err != nil {
		// Another daemon (or test binary) built the same tree first.
		if _, serr := os.Stat(filepath.Join(dir, "etc")); serr != nil {
			return defaultRoot{}, fmt.Errorf("default root: %w", err)
		}
	}
	return defaultRoot{dir: dir, binds: binds}, nil
}

// copyEtc copies what may be shown of the host's /etc from src to dst.
func copyEtc(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == src {
				return err
			}
			return nil // unreadable: not shown
		}
		rel, _ := filepath.Rel(src, p)
		name := d.Name()
		if p != src && (etcSkip[name] && filepath.Dir(rel) == "." || strings.HasSuffix(name, "-") ||
			strings.Contains(rel, "private")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		out := filepath.Join(dst, rel)
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil
			}
			return os.Symlink(target, out)
		case info.IsDir():
			if p != src && info.Mode().Perm()&0o005 != 0o005 {
				return filepath.SkipDir // not world-searchable: not shown
			}
			if err := os.Mkdir(out, 0o755); err != nil {
				return err
			}
			return nil
		case info.Mode().IsRegular():
			if info.Mode().Perm()&0o004 == 0 || info.Size() > 4<<20 {
				return nil
			}
			return copyRegular(p, out, info.Mode().Perm())
		}
		return nil // devices, sockets, fifos: not shown
	})
}

func copyRegular(src, dst string, mode fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return nil // vanished or unreadable: not shown
	}
	defer in.Close()
	return filecopy.ToNew(dst, in, mode&^0o7022|0o444)
}

// treeHash names a tree by its content: paths, kinds, modes, link targets
// and file bytes.
func treeHash(root string) (string, error) {
	h := sha256.New()
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	for _, p := range paths {
		st, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s\x00%o\x00", rel, st.Mode())
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			t, _ := os.Readlink(p)
			fmt.Fprintf(h, "%s\x00", t)
		case st.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return "", err
			}
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
