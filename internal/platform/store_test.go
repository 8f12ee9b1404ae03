package platform

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestStateDirPrivate: a state dir someone else could write into (or
// whose parent they could, or that they own) is refused: the daemon
// executes and restores what lies there. A private dir under a sticky
// /tmp is fine.
func TestStateDirPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Missing(t, "needs root (chown)")
	}
	base := t.TempDir()
	if _, err := openStore(filepath.Join(base, "ok")); err != nil {
		t.Fatalf("private state dir under %s: %v", base, err)
	}
	bad := map[string]func(string) error{
		"world-writable": func(d string) error { return os.Chmod(d, 0o777) },
		"group-writable": func(d string) error { return os.Chmod(d, 0o775) },
		"other owner":    func(d string) error { return os.Chown(d, 65534, 65534) },
		"writable parent": func(d string) error {
			return os.Chmod(filepath.Dir(d), 0o777)
		},
	}
	for name, spoil := range bad {
		t.Run(name, func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "p")
			d := filepath.Join(parent, "state")
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := spoil(d); err != nil {
				t.Fatal(err)
			}
			if _, err := openStore(d); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("openStore: %v, want ErrInvalid", err)
			}
			if _, err := os.Stat(filepath.Join(d, "functions")); err == nil {
				t.Errorf("refused, but wrote into it")
			}
			// Through a link it is the same dir.
			link := filepath.Join(t.TempDir(), "link")
			os.Symlink(d, link)
			if _, err := openStore(link); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("openStore via a link: %v, want ErrInvalid", err)
			}
		})
	}
}
