package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
)

// store is the daemon's persistent state under one directory:
//
//	functions/<name>.json   the registry, one record per function
//	code/<digest>/          code trees, content-addressed, read-only
//	agents/                 the in-sandbox agents, rewritten at start
//	tmp/                    staging; emptied at start
//
// Every record is written atomically (temp file, fsync, rename, fsync of
// the directory), so a daemon killed at any point leaves either the old
// or the new record, never a torn one.
type store struct {
	dir string
}

func openStore(dir string) (*store, error) {
	if dir == "" {
		return nil, fmt.Errorf("state dir is required: %w", errdefs.ErrInvalid)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", abs, err)
	}
	if err := privateDir(abs); err != nil {
		return nil, err
	}
	s := &store{dir: abs}
	for _, d := range []string{"functions", "code", "agents", "images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("state dir %s: %w", abs, err)
		}
	}
	return s, nil
}

// cleanStaging removes the staging a killed daemon left (garbage). What
// it cannot remove is returned, and keeps nothing from working: staging
// dirs get fresh names.
func (s *store) cleanStaging() error {
	ents, err := os.ReadDir(s.path("tmp"))
	if err != nil {
		return fmt.Errorf("clean staging: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if err := removeTree(filepath.Join(s.path("tmp"), e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("clean staging: %w", err))
		}
	}
	return errors.Join(errs...)
}

// privateDir checks that nobody but root (or this process's user) can
// change what lies in dir: the state dir holds the agents and code that
// instances execute, the images they are restored from and the
// functions' secrets. dir and each directory above it must be owned by
// root or us, and not writable by group or others; an ancestor that is
// sticky (like /tmp) is allowed, since others cannot rename or remove
// what is ours in it. Links are resolved first.
func privateDir(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("state dir %s: %w", dir, err)
	}
	euid := uint32(os.Geteuid())
	for d := real; ; d = filepath.Dir(d) {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return fmt.Errorf("state dir %s: %w", dir, err)
		}
		switch {
		case st.Uid != 0 && st.Uid != euid:
			return fmt.Errorf("state dir %s: %s is owned by uid %d, who could replace what the daemon executes and restores: %w", dir, d, st.Uid, errdefs.ErrInvalid)
		case st.Mode&0o022 != 0 && (d == real || st.Mode&unix.S_ISVTX == 0):
			return fmt.Errorf("state dir %s: %s is writable by others (mode %o): %w", dir, d, st.Mode&0o7777, errdefs.ErrInvalid)
		}
		if d == "/" {
			return nil
		}
	}
}

func (s *store) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *store) codeDir(digest string) string { return s.path("code", digest) }

// load reads every function record. A record that cannot be read is
// reported, not silently dropped.
func (s *store) load() ([]Function, error) {
	ents, err := os.ReadDir(s.path("functions"))
	if err != nil {
		return nil, err
	}
	var fns []Function
	var errs []error
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			// A temp file from an interrupted write.
			os.Remove(s.path("functions", e.Name()))
			continue
		}
		b, err := os.ReadFile(s.path("functions", e.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var f Function
		if err := json.Unmarshal(b, &f); err != nil || f.Name != name {
			errs = append(errs, fmt.Errorf("function record %s is corrupt: %v", e.Name(), err))
			continue
		}
		if _, err := os.Stat(s.codeDir(f.CodeDigest)); err != nil {
			errs = append(errs, fmt.Errorf("function %s: code %s is missing: %v", f.Name, f.CodeDigest, err))
			continue
		}
		fns = append(fns, f)
	}
	return fns, errors.Join(errs...)
}

func (s *store) put(f Function) error {
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path("functions", f.Name+".json"), append(b, '\n'), 0o644)
}

func (s *store) remove(name string) error {
	if err := os.Remove(s.path("functions", name+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(s.path("functions"))
}

// stage builds a code tree from r in a fresh staging dir and returns its
// digest; the caller commits it with commitCode or removes it.
func (s *store) stage(r *DeployRequest) (dir, digest string, err error) {
	dir, err = os.MkdirTemp(s.path("tmp"), "code-")
	if err != nil {
		return "", "", err
	}
	// Readable by any uid, like everything in it (user namespaces).
	if err := os.Chmod(dir, 0o755); err != nil {
		removeTree(dir)
		return "", "", err
	}
	st := &stager{dir: dir}
	if r.CodePath != "" {
		err = st.stageDir(r.CodePath)
	} else {
		err = st.stageTgz(r.CodeTgzB64)
	}
	if err != nil {
		removeTree(dir)
		return "", "", err
	}
	return dir, st.digest(), nil
}

// commitCode moves a staged tree to its content address (or drops it when
// that content is already stored).
func (s *store) commitCode(staged, digest string) error {
	dst := s.codeDir(digest)
	if _, err := os.Stat(dst); err == nil {
		return removeTree(staged)
	}
	if err := syncTree(staged); err != nil {
		return err
	}
	if err := os.Rename(staged, dst); err != nil {
		return fmt.Errorf("store code %s: %w", digest, err)
	}
	return syncDir(s.path("code"))
}

// gcCode removes every code tree not in keep.
func (s *store) gcCode(keep map[string]bool) error {
	ents, err := os.ReadDir(s.path("code"))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range ents {
		if !keep[e.Name()] {
			errs = append(errs, removeTree(s.codeDir(e.Name())))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a tree even where its directories were made
// read-only.
func removeTree(dir string) error {
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// syncTree fsyncs every file and directory under dir.
func syncTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Type()&os.ModeSymlink != 0 {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}
