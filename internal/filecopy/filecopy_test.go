package filecopy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestToNew(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "f")
	if err := ToNew(dst, strings.NewReader("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(dst)
	st, serr := os.Stat(dst)
	if err != nil || serr != nil || string(b) != "data" || st.Mode().Perm() != 0o640&^umask(t) {
		t.Fatalf("copy: %q %v, mode %v %v", b, err, st.Mode(), serr)
	}
	if err := ToNew(dst, strings.NewReader("other"), 0o640); !errors.Is(err, fs.ErrExist) {
		t.Errorf("copy onto an existing file: %v, want ErrExist", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "data" {
		t.Errorf("existing file overwritten: %q", b)
	}
}

// umask is the process's umask, which OpenFile's perm goes through.
func umask(t *testing.T) os.FileMode {
	p := filepath.Join(t.TempDir(), "probe")
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ st.Mode().Perm()
}
