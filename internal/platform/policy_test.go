package platform

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// TestCodePathPolicy is the attack "code_path names another tenant's code
// or memory" (STATE/code, STATE/images) and the host's kernel views,
// directly, through a link, and by lexical tricks: every one is refused,
// and only paths under a configured code root pass.
func TestCodePathPolicy(t *testing.T) {
	base := t.TempDir()
	state := filepath.Join(base, "state")
	root := filepath.Join(base, "root")
	rootx := filepath.Join(base, "rootx") // a sibling whose name starts like root
	for _, d := range []string{filepath.Join(state, "code", "sha256-x"), filepath.Join(root, "fn"), rootx} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Links a tenant-facing code root might hold.
	os.Symlink(filepath.Join(state, "code"), filepath.Join(root, "to-state"))
	os.Symlink("/proc/self", filepath.Join(root, "to-proc"))
	os.Symlink(rootx, filepath.Join(root, "to-rootx"))
	os.Symlink(filepath.Join(root, "fn"), filepath.Join(base, "link-to-fn"))
	// A root reached through a link is judged by what it resolves to.
	os.Symlink(root, filepath.Join(base, "root-link"))

	roots, err := resolveCodeRoots([]string{filepath.Join(base, "root-link"), base}, state)
	if err != nil {
		t.Fatal(err)
	}
	only, err := resolveCodeRoots([]string{filepath.Join(base, "root-link")}, state)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path string
		roots      []string
		want       error // nil: allowed
	}{
		{"under root", filepath.Join(root, "fn"), only, nil},
		{"link to a dir under root", filepath.Join(base, "link-to-fn"), only, nil},
		{"no roots", filepath.Join(root, "fn"), nil, errdefs.ErrForbidden},
		{"outside every root", rootx, only, errdefs.ErrForbidden},
		{"prefix sibling via link", filepath.Join(root, "to-rootx"), only, errdefs.ErrForbidden},
		{"dotdot out of root", filepath.Join(root, "fn", "..", "..", "rootx"), only, errdefs.ErrForbidden},
		{"state code, root above state", filepath.Join(state, "code"), roots, errdefs.ErrInvalid},
		{"state code via link", filepath.Join(root, "to-state"), roots, errdefs.ErrInvalid},
		{"state code via link, no roots", filepath.Join(root, "to-state"), nil, errdefs.ErrInvalid},
		{"dir containing the state dir", base, roots, errdefs.ErrInvalid},
		{"/proc", "/proc", roots, errdefs.ErrInvalid},
		{"/proc via link", filepath.Join(root, "to-proc"), roots, errdefs.ErrInvalid},
		{"/sys", "/sys/kernel", roots, errdefs.ErrInvalid},
		{"/dev", "/dev", roots, errdefs.ErrInvalid},
		{"/", "/", roots, errdefs.ErrInvalid},
		{"relative", "root/fn", roots, errdefs.ErrInvalid},
		{"missing", filepath.Join(root, "nope"), roots, errdefs.ErrInvalid},
	} {
		got, err := checkCodePath(c.path, c.roots, state)
		switch {
		case c.want == nil && err != nil:
			t.Errorf("%s: %s refused: %v", c.name, c.path, err)
		case c.want == nil && got != filepath.Join(root, "fn"):
			t.Errorf("%s: resolved to %s, want %s", c.name, got, filepath.Join(root, "fn"))
		case c.want != nil && !errors.Is(err, c.want):
			t.Errorf("%s: %s: got %v (%q), want %v", c.name, c.path, err, got, c.want)
		}
	}
	// Roots in the never-list are refused at start.
	for _, bad := range []string{filepath.Join(state, "code"), "/proc", "/sys/fs", "relative"} {
		if _, err := resolveCodeRoots([]string{bad}, state); err == nil {
			t.Errorf("--code-root %s accepted", bad)
		}
	}
}
