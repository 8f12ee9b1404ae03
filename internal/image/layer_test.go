package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// TestCaptureLayer: an overlay upper (a new file, a whiteout, an opaque
// directory) captured into an image reads back, as a lower layer, as the
// same view.
func TestCaptureLayer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts)")
	}
	base := t.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(base, unix.MNT_DETACH)
	dir := func(p ...string) string {
		d := filepath.Join(append([]string{base}, p...)...)
		os.MkdirAll(d, 0o755)
		return d
	}
	lower, upper, work, merged := dir("lower"), dir("upper"), dir("work"), dir("merged")
	os.WriteFile(filepath.Join(lower, "gone"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(lower, "d"), 0o755)
	os.WriteFile(filepath.Join(lower, "d", "old"), []byte("x"), 0o644)
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(merged, "new"), []byte("hello"), 0o640)
	os.Remove(filepath.Join(merged, "gone"))
	os.RemoveAll(filepath.Join(merged, "d"))
	os.MkdirAll(filepath.Join(merged, "d"), 0o755) // opaque now
	os.WriteFile(filepath.Join(merged, "d", "fresh"), []byte("y"), 0o644)
	os.Symlink("new", filepath.Join(merged, "link"))
	unix.Unmount(merged, 0)

	img := dir("img")
	if err := CaptureLayer(upper, img); err != nil {
		t.Fatal(err)
	}
	// Read it back as the top lower layer of a fresh overlay.
	up2, work2, view := dir("up2"), dir("work2"), dir("view")
	opts = "lowerdir=" + filepath.Join(img, LayerDir) + ":" + lower + ",upperdir=" + up2 + ",workdir=" + work2
	if err := unix.Mount("overlay", view, "overlay", 0, opts); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(view, 0)
	if b, err := os.ReadFile(filepath.Join(view, "new")); err != nil || string(b) != "hello" {
		t.Errorf("new: %q %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(view, "new")); err != nil || st.Mode().Perm() != 0o640 {
		t.Errorf("new mode: %v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(view, "gone")); !os.IsNotExist(err) {
		t.Errorf("whiteout lost: gone is visible (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(view, "d", "old")); !os.IsNotExist(err) {
		t.Errorf("opaque directory lost: d/old is visible (%v)", err)
	}
	if b, _ := os.ReadFile(filepath.Join(view, "d", "fresh")); string(b) != "y" {
		t.Errorf("d/fresh: %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(view, "link")); l != "new" {
		t.Errorf("link: %q", l)
	}
}

// TestLayerBytes: a tmpfs of LayerBytes holds the layer's copy (many
// small files, a big one, directories, symlinks), and a layer larger than
// the cap is refused. A layer's tmpfs used to be a fixed 64 MiB whatever
// it held.
func TestLayerBytes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (tmpfs mounts)")
	}
	src := filepath.Join(t.TempDir(), LayerDir)
	for i := 0; i < 40; i++ {
		d := filepath.Join(src, "d", string(rune('a'+i%20)))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, string(rune('a'+i))), []byte("x"), 0o644)
	}
	big := make([]byte, 3<<20+123)
	for i := range big {
		big[i] = byte(i)
	}
	os.WriteFile(filepath.Join(src, "big"), big, 0o600)
	os.Symlink(filepath.Join("/", strings.Repeat("long/", 40)), filepath.Join(src, "longlink"))
	os.Symlink("big", filepath.Join(src, "short"))

	n, err := LayerBytes(src, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if n < int64(len(big)) || n > int64(len(big))+1<<20 {
		t.Errorf("LayerBytes = %d for %d bytes of file data", n, len(big)+40)
	}
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, fmt.Sprintf("size=%d", n)); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	if err := CaptureLayer(src, mnt); err != nil {
		t.Fatalf("capture into a tmpfs of LayerBytes = %d: %v", n, err)
	}
	var sfs unix.Statfs_t
	unix.Statfs(mnt, &sfs)
	t.Logf("LayerBytes %d; tmpfs used %d", n, int64(sfs.Blocks-sfs.Bfree)*sfs.Bsize)

	if _, err := LayerBytes(src, 1<<20); !errors.Is(err, errdefs.ErrTooLarge) {
		t.Errorf("LayerBytes over the cap: %v, want ErrTooLarge", err)
	}
	if n, err := LayerBytes(filepath.Join(t.TempDir(), "none"), 1<<20); err != nil || n != layerSlack {
		t.Errorf("LayerBytes of a missing dir = %d, %v", n, err)
	}
}
