package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestRestorerNotPlanted: the restorer binary is never taken from a file
// someone else could have put there. Where it used to be written and
// reused if its bytes matched ($TMPDIR/catalyzer-restorer-<sum>), a file
// with exactly those bytes, owned by another uid and writable by anyone,
// is planted; the restorer started is the daemon's sealed memfd, not it.
func TestRestorerNotPlanted(t *testing.T) {
	testutil.RequiresRoot(t)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	bin := RestorerBinary()
	sum := sha256.Sum256(bin)
	planted := filepath.Join(tmp, "catalyzer-restorer-"+hex.EncodeToString(sum[:6]))
	if err := os.WriteFile(planted, bin, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(planted, 0o777); err != nil {
		t.Fatal(err)
	}
	var plantedSt unix.Stat_t
	if err := unix.Stat(planted, &plantedSt); err != nil {
		t.Fatal(err)
	}

	tr := ptrace.NewTracer()
	defer tr.Close()
	cmd, _, err := StartRestorer(tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	exe := fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid) // stat through the link, not readlink
	var st unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		t.Fatal(err)
	}
	link, _ := os.Readlink(exe)
	if st.Dev == plantedSt.Dev && st.Ino == plantedSt.Ino {
		t.Fatalf("the restorer runs the planted %s (uid %d, mode %o)", planted, plantedSt.Uid, plantedSt.Mode&0o7777)
	}
	if !strings.HasPrefix(link, "/memfd:catalyzer-restorer") {
		t.Errorf("restorer runs %q, want the sealed memfd", link)
	}
	// Nothing can change the memfd's bytes: write access is sealed.
	_, fd, err := restorerPath()
	if err != nil {
		t.Fatal(err)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if seals&want != want {
		t.Errorf("memfd seals %#x, want at least %#x", seals, want)
	}
	if f, err := os.OpenFile(exe, os.O_WRONLY, 0); err == nil {
		_, werr := f.WriteAt([]byte{0}, 0)
		f.Close()
		if werr == nil {
			t.Errorf("the restorer's binary is writable through %s", exe)
		}
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 1 {
		t.Errorf("the restorer wrote into $TMPDIR: %v", ents)
	}
}
