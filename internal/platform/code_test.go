package platform

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

func tgzOf(t testing.TB, hdrs []tar.Header, body string) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range hdrs {
		h := h
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		h.Mode = 0o644
		tw.WriteHeader(&h)
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	zw.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// checkStaged is the invariant every staging must keep, whatever the
// input: nothing lands outside dir, and a refusal is an input error.
func checkStaged(t testing.TB, dir string, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, errdefs.ErrInvalid) && !errors.Is(err, errdefs.ErrTooLarge) {
		t.Fatalf("staging failed with a non-input error: %v", err)
	}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			if filepath.IsAbs(target) {
				t.Fatalf("absolute link staged: %s -> %s", p, target)
			}
			rel, _ := filepath.Rel(dir, filepath.Join(filepath.Dir(p), target))
			if rel == ".." || strings.HasPrefix(rel, "../") {
				t.Fatalf("escaping link staged: %s -> %s", p, target)
			}
		}
		return nil
	})
}

func stageB64(t testing.TB, b64 string) (string, error) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "code")
	os.Mkdir(dir, 0o755)
	s := &stager{dir: dir}
	err := s.stageTgz(b64)
	// Nothing may appear beside the staging dir.
	if ents, _ := os.ReadDir(parent); len(ents) != 1 {
		t.Fatalf("staging wrote outside its dir: %d entries in parent", len(ents))
	}
	return dir, err
}

func TestStageTgz(t *testing.T) {
	ok := tgzOf(t, []tar.Header{{Name: "main.py", Typeflag: tar.TypeReg}, {Name: "lib/", Typeflag: tar.TypeDir}, {Name: "lib/x.py", Typeflag: tar.TypeReg}, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "lib/x.py"}}, "pass\n")
	dir, err := stageB64(t, ok)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "l")); err != nil || string(b) != "pass\n" {
		t.Fatalf("staged link: %q %v", b, err)
	}
	// The digest depends on content only, not on the way code arrived.
	s1 := &stager{dir: filepath.Join(t.TempDir(), "a")}
	os.Mkdir(s1.dir, 0o755)
	s1.stageTgz(ok)
	s2 := &stager{dir: filepath.Join(t.TempDir(), "b")}
	os.Mkdir(s2.dir, 0o755)
	if err := s2.stageDir(s1.dir); err != nil {
		t.Fatal(err)
	}
	if s1.digest() != s2.digest() {
		t.Fatalf("digest differs between tarball and directory of the same code")
	}
	for name, hdrs := range map[string][]tar.Header{
		"dotdot":        {{Name: "../x", Typeflag: tar.TypeReg}},
		"absolute":      {{Name: "/x", Typeflag: tar.TypeReg}},
		"escaping link": {{Name: "a/l", Typeflag: tar.TypeSymlink, Linkname: "../../x"}},
		"through link":  {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "."}, {Name: "l/x", Typeflag: tar.TypeReg}},
		"hard link":     {{Name: "main.py", Typeflag: tar.TypeReg}, {Name: "h", Typeflag: tar.TypeLink, Linkname: "main.py"}},
		"device":        {{Name: "d", Typeflag: tar.TypeChar}},
		// Bad shapes a file system refuses with EEXIST, ENOTDIR or
		// ENAMETOOLONG: the deployer's mistake (400), not the daemon's.
		"duplicate file":   {{Name: "main.py", Typeflag: tar.TypeReg}, {Name: "main.py", Typeflag: tar.TypeReg}},
		"duplicate link":   {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "x"}, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "y"}},
		"file then dir":    {{Name: "a", Typeflag: tar.TypeReg}, {Name: "a/", Typeflag: tar.TypeDir}},
		"file then member": {{Name: "a", Typeflag: tar.TypeReg}, {Name: "a/b", Typeflag: tar.TypeReg}},
		"dir then file":    {{Name: "a/b", Typeflag: tar.TypeReg}, {Name: "a", Typeflag: tar.TypeReg}},
		"long path":        {{Name: strings.Repeat("d/", MaxCodePath/2) + "x", Typeflag: tar.TypeReg}},
		"long name":        {{Name: strings.Repeat("n", 300), Typeflag: tar.TypeReg}},
		"long link target": {{Name: "l", Typeflag: tar.TypeSymlink, Linkname: strings.Repeat("t/", 3000)}},
	} {
		dir, err := stageB64(t, tgzOf(t, hdrs, "x"))
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
		checkStaged(t, dir, err)
	}
}

// TestStageTgzDirAfterChildren: a directory entry after its members is
// an ordinary tar, not a duplicate.
func TestStageTgzDirAfterChildren(t *testing.T) {
	if _, err := stageB64(t, tgzOf(t, []tar.Header{{Name: "a/b.py", Typeflag: tar.TypeReg}, {Name: "a/", Typeflag: tar.TypeDir}}, "x")); err != nil {
		t.Fatal(err)
	}
}

// FuzzStageTgz feeds arbitrary archives to the stager: it must never
// panic, never write outside its directory and never stage an escaping
// link.
// FuzzStageTgz fuzzes the tar stream, gzipped inside the target, so that
// mutations reach the tar and staging logic rather than dying in gzip's
// checksum.
func FuzzStageTgz(f *testing.F) {
	untar := func(b64 string) []byte {
		b, _ := base64.StdEncoding.DecodeString(b64)
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			f.Fatal(err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			f.Fatal(err)
		}
		return raw
	}
	f.Add(untar(tgzOf(f, []tar.Header{{Name: "main.py", Typeflag: tar.TypeReg}}, "pass")))
	f.Add(untar(tgzOf(f, []tar.Header{{Name: "a/", Typeflag: tar.TypeDir}, {Name: "a/l", Typeflag: tar.TypeSymlink, Linkname: ".."}, {Name: "a/l/x", Typeflag: tar.TypeReg}}, "x")))
	f.Add(untar(tgzOf(f, []tar.Header{{Name: "x", Typeflag: tar.TypeReg}, {Name: "x/", Typeflag: tar.TypeDir}}, "y")))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, tarball []byte) {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(tarball)
		zw.Close()
		dir, err := stageB64(t, base64.StdEncoding.EncodeToString(buf.Bytes()))
		checkStaged(t, dir, err)
	})
}
