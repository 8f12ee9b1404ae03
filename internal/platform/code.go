package platform

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Limits on a function's code, whichever way it arrives.
const (
	MaxCodeBytes = 256 << 20 // unpacked size of all files
	MaxCodeFiles = 10_000    // files, directories and links
	MaxCodePath  = 1024      // bytes of a member's relative path
	MaxCodeName  = 255       // bytes of one path component (NAME_MAX)
)

// codeEntry is one thing in a staged code tree, for the digest.
type codeEntry struct {
	path string // slash-separated, relative
	kind byte   // 'f' file, 'd' dir, 'l' symlink
	mode fs.FileMode
	sum  string // sha256 of contents (files) or the target (links)
}

// stager builds a code tree under dir, enforcing the limits, and records
// what it wrote for the digest.
type stager struct {
	dir     string
	entries []codeEntry
	bytes   int64
	// seen is what each path already is: 'f', 'd', 'l' for members, 'D'
	// for a directory made implicitly as some member's parent.
	seen map[string]byte
}

// count claims rel for a member of kind ('f', 'd', 'l'), enforcing the
// limits and a tree that makes sense: each path once, nothing under a
// file, and nothing under a staged link (a later member written through
// a link could land outside the root). Every refusal is ErrInvalid
// (or ErrTooLarge), never a file system error surfacing as a 500.
func (s *stager) count(rel string, kind byte) error {
	if len(rel) > MaxCodePath {
		return fmt.Errorf("code member %.64q...: a path of %d bytes exceeds the limit of %d: %w", rel, len(rel), MaxCodePath, errdefs.ErrInvalid)
	}
	for _, c := range strings.Split(rel, "/") {
		if len(c) > MaxCodeName {
			return fmt.Errorf("code member %.64q...: a name of %d bytes exceeds the limit of %d: %w", rel, len(c), MaxCodeName, errdefs.ErrInvalid)
		}
	}
	if s.seen == nil {
		s.seen = map[string]byte{}
	}
	var parents []string
	for p := path.Dir(rel); p != "." && p != "/"; p = path.Dir(p) {
		switch s.seen[p] {
		case 'l':
			return fmt.Errorf("code member %q lies under the link %q: %w", rel, p, errdefs.ErrInvalid)
		case 'f':
			return fmt.Errorf("code member %q lies under %q, which is a file: %w", rel, p, errdefs.ErrInvalid)
		}
		parents = append(parents, p)
	}
	switch k, ok := s.seen[rel]; {
	case ok && k == 'D' && kind == 'd':
		// A directory entry after its children: fine.
	case ok && k == 'D':
		return fmt.Errorf("code member %q is a directory (it has members) and a %s: %w", rel, kindName(kind), errdefs.ErrInvalid)
	case ok:
		return fmt.Errorf("code member %q appears twice (a %s, then a %s): %w", rel, kindName(k), kindName(kind), errdefs.ErrInvalid)
	}
	if len(s.entries) >= MaxCodeFiles {
		return fmt.Errorf("code has more than %d files: %w", MaxCodeFiles, errdefs.ErrTooLarge)
	}
	for _, p := range parents {
		if _, ok := s.seen[p]; !ok {
			s.seen[p] = 'D'
		}
	}
	s.seen[rel] = kind
	return nil
}

func kindName(k byte) string {
	switch k {
	case 'f':
		return "file"
	case 'l':
		return "link"
	}
	return "directory"
}

// fsError is a file system error while staging member rel: one the
// member's name or shape caused (it exists, a parent is not a
// directory, the name is too long) is the caller's, ErrInvalid.
func fsError(rel string, err error) error {
	if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, syscall.EISDIR) || errors.Is(err, syscall.ENAMETOOLONG) {
		return fmt.Errorf("code member %q: %v: %w", rel, err, errdefs.ErrInvalid)
	}
	return fmt.Errorf("code member %q: %w", rel, err)
}

// cleanRel validates an archive or tree member name: relative, no "..",
// and returns its clean slash form ("" for the root itself).
func cleanRel(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("code member %q: absolute paths are not allowed: %w", name, errdefs.ErrInvalid)
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("code member %q escapes the code root: %w", name, errdefs.ErrInvalid)
	}
	return c, nil
}

func (s *stager) mkdir(rel string, mode fs.FileMode) error {
	if err := s.count(rel, 'd'); err != nil {
		return err
	}
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(p, 0o755); err != nil {
		return fsError(rel, err)
	}
	s.entries = append(s.entries, codeEntry{path: rel, kind: 'd', mode: mode.Perm() | 0o555})
	return nil
}

func (s *stager) file(rel string, mode fs.FileMode, r io.Reader) error {
	if err := s.count(rel, 'f'); err != nil {
		return err
	}
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fsError(rel, err)
	}
	// Code is read-only inside the sandbox; keep exec bits, drop setuid
	// and friends, make it readable by any uid (user namespaces).
	perm := fs.FileMode(0o444)
	if mode&0o111 != 0 {
		perm = 0o555
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fsError(rel, err)
	}
	h := sha256.New()
	left := MaxCodeBytes - s.bytes
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, left+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("code member %q: %w", rel, err)
	}
	if n > left {
		return fmt.Errorf("code is larger than %d MiB: %w", MaxCodeBytes>>20, errdefs.ErrTooLarge)
	}
	s.bytes += n
	s.entries = append(s.entries, codeEntry{path: rel, kind: 'f', mode: perm, sum: hex.EncodeToString(h.Sum(nil))})
	return nil
}

// symlink accepts only links whose target stays inside the code root.
func (s *stager) symlink(rel, target string) error {
	if err := s.count(rel, 'l'); err != nil {
		return err
	}
	if filepath.IsAbs(target) {
		return fmt.Errorf("code link %q -> %q: absolute link targets are not allowed: %w", rel, target, errdefs.ErrInvalid)
	}
	resolved := path.Join(path.Dir(rel), target)
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("code link %q -> %q escapes the code root: %w", rel, target, errdefs.ErrInvalid)
	}
	p := filepath.Join(s.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fsError(rel, err)
	}
	if err := os.Symlink(target, p); err != nil {
		return fsError(rel, err)
	}
	s.entries = append(s.entries, codeEntry{path: rel, kind: 'l', sum: target})
	return nil
}

// digest is the content address of the staged tree: sha256 over a sorted
// listing of every entry's kind, mode, path and content hash.
func (s *stager) digest() string {
	sort.Slice(s.entries, func(i, j int) bool { return s.entries[i].path < s.entries[j].path })
	h := sha256.New()
	for _, e := range s.entries {
		fmt.Fprintf(h, "%c %o %q %s\n", e.kind, e.mode, e.path, e.sum)
	}
	return "sha256-" + hex.EncodeToString(h.Sum(nil))
}

// stageDir copies the tree at src into s. Links must stay inside src;
// devices, sockets and fifos are refused.
func (s *stager) stageDir(src string) error {
	if !filepath.IsAbs(src) {
		return fmt.Errorf("code_path %q must be absolute: %w", src, errdefs.ErrInvalid)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("code_path %q: %v: %w", src, errors.Unwrap(err), errdefs.ErrInvalid)
	}
	if !st.IsDir() {
		return fmt.Errorf("code_path %q is not a directory: %w", src, errdefs.ErrInvalid)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Unreadable code under code_path is the deployer's problem.
			return fmt.Errorf("read code: %v: %w", err, errdefs.ErrInvalid)
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return s.mkdir(rel, info.Mode())
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return s.symlink(rel, target)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return s.file(rel, info.Mode(), f)
		default:
			return fmt.Errorf("code member %q is a %v; only files, directories and links are allowed: %w", rel, d.Type(), errdefs.ErrInvalid)
		}
	})
}

// stageTgz unpacks a base64 gzip tarball into s, refusing absolute
// paths, "..", links that escape, hard links and special files.
func (s *stager) stageTgz(b64 string) error {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("code_tgz_b64 is not valid base64: %v: %w", err, errdefs.ErrInvalid)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("code_tgz_b64 is not a gzip stream: %v: %w", err, errdefs.ErrInvalid)
	}
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("code_tgz_b64 is not a valid tar: %v: %w", err, errdefs.ErrInvalid)
		}
		rel, err := cleanRel(hdr.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		mode := hdr.FileInfo().Mode()
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = s.mkdir(rel, mode)
		case tar.TypeReg:
			err = s.file(rel, mode, tr)
		case tar.TypeSymlink:
			err = s.symlink(rel, hdr.Linkname)
		default:
			err = fmt.Errorf("code member %q: tar entry type %q is not allowed (only files, directories and relative links): %w", hdr.Name, string(hdr.Typeflag), errdefs.ErrInvalid)
		}
		if err != nil {
			return err
		}
	}
}
