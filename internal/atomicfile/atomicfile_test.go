package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "secret")
	if err := WriteFile(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader of the old file keeps it whole across a replacement.
	old, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := WriteFile(p, []byte("two, longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 16)
	n, _ := old.Read(b)
	if string(b[:n]) != "one" {
		t.Errorf("old reader sees %q", b[:n])
	}
	got, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	if string(got) != "two, longer" || st.Mode().Perm() != 0o644 {
		t.Errorf("file %q mode %v", got, st.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	if err := WriteFile(filepath.Join(dir, "no", "such"), nil, 0o644); err == nil {
		t.Error("write into a missing directory succeeded")
	}
}
