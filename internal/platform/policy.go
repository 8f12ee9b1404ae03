package platform

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// The daemon's deploy policy: what a caller of the API may ask for that
// reaches beyond its own sandbox. Both are operator features, off by
// default (docs/SECURITY.md, "API edge").

// neverCode are host trees code_path may never name, lie under or
// contain, whatever the code roots say: the kernel's views (reading
// them is not reading code) and, added per daemon, its state dir (every
// tenant's code, images and secrets).
var neverCode = []string{"/proc", "/sys", "/dev"}

// checkPolicy refuses a deploy that asks for what this daemon does not
// allow, and replaces r.CodePath by its resolved form (the tree that was
// judged is the tree that is copied).
func (p *Platform) checkPolicy(r *DeployRequest) error {
	if r.Network == "host" && !p.cfg.AllowHostNet {
		return fmt.Errorf("network \"host\" gives the function the host's network namespace (every interface, and this API on loopback); this daemon refuses it: start serve with --allow-host-network to allow it: %w", errdefs.ErrForbidden)
	}
	if r.CodePath != "" {
		resolved, err := checkCodePath(r.CodePath, p.cfg.CodeRoots, p.store.dir)
		if err != nil {
			return err
		}
		r.CodePath = resolved
	}
	return nil
}

// allowed reports why a function already in the registry may not run
// under this daemon's policy (it was deployed under another one).
func (p *Platform) allowed(f Function) error {
	if f.Network == "host" && !p.cfg.AllowHostNet {
		return fmt.Errorf("function %s has network \"host\", which this daemon refuses (start serve with --allow-host-network, or redeploy it): %w", f.Name, errdefs.ErrForbidden)
	}
	return nil
}

// resolveCodeRoots resolves each --code-root (links followed) and refuses
// one that is, or lies under, a tree code may never come from.
func resolveCodeRoots(roots []string, stateDir string) ([]string, error) {
	never, err := neverDirs(stateDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, root := range roots {
		if !filepath.IsAbs(root) {
			return nil, fmt.Errorf("--code-root %q must be an absolute path", root)
		}
		r, err := filepath.EvalSymlinks(root)
		if err != nil {
			return nil, fmt.Errorf("--code-root %q: %w", root, err)
		}
		if st, err := os.Stat(r); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("--code-root %q is not a directory", root)
		}
		for _, n := range never {
			if within(r, n) {
				return nil, fmt.Errorf("--code-root %q (%s) lies in %s, which code may never come from", root, r, n)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// checkCodePath judges a deploy's code_path: absolute, an existing
// directory once every link is resolved, neither in nor above the state
// dir, /proc, /sys or /dev (ErrInvalid), and under one of roots
// (ErrForbidden; with no roots, code_path is refused outright). roots are
// already resolved (resolveCodeRoots). It returns the resolved path.
func checkCodePath(path string, roots []string, stateDir string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", fmt.Errorf("code_path %q must be absolute: %w", path, errdefs.ErrInvalid)
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("code_path %q: %v: %w", path, err, errdefs.ErrInvalid)
	}
	never, err := neverDirs(stateDir)
	if err != nil {
		return "", err
	}
	for _, n := range never {
		if within(resolved, n) || within(n, resolved) {
			return "", fmt.Errorf("code_path %q (%s) is, lies in or contains %s, which code may never come from: %w", path, resolved, n, errdefs.ErrInvalid)
		}
	}
	if len(roots) == 0 {
		return "", fmt.Errorf("code_path is an operator feature and this daemon has no --code-root: upload the code instead (code_tgz_b64; `catalyzer fn deploy` without --by-path), or start serve with --code-root DIR above %s: %w", path, errdefs.ErrForbidden)
	}
	for _, r := range roots {
		if within(resolved, r) {
			return resolved, nil
		}
	}
	return "", fmt.Errorf("code_path %q (%s) is not under any --code-root of this daemon (%s): upload the code instead, or start serve with --code-root DIR above it: %w", path, resolved, strings.Join(roots, ", "), errdefs.ErrForbidden)
}

// neverDirs is neverCode plus stateDir, each resolved.
func neverDirs(stateDir string) ([]string, error) {
	sd, err := filepath.EvalSymlinks(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	out := []string{sd}
	for _, n := range neverCode {
		if r, err := filepath.EvalSymlinks(n); err == nil {
			n = r
		}
		out = append(out, n)
	}
	return out, nil
}

// within reports whether path is dir or lies under it (both clean and
// absolute).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
