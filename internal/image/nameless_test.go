package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// namelessVictim holds a sealed memfd (fd 3, with a second, read-only
// description at fd 4 and a duplicate of fd 3 at fd 5) and a deleted
// file with a hole, odd mode and old mtime (fd 6, and a second
// write-only O_APPEND description at 7), at offsets it reports; on 'p'
// it prints what it sees of them.
const namelessVictim = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
static int check(int fd, off_t off, const char *want) {
	char b[64] = {0}; int n = strlen(want);
	return pread(fd, b, n, off) == n && memcmp(b, want, n) == 0;
}
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	int m = memfd_create("cz-test", MFD_ALLOW_SEALING | MFD_CLOEXEC);
	if (m != 3 || write(m, "memfd data", 10) != 10) return 1;
	char p[64]; snprintf(p, sizeof p, "/proc/self/fd/%d", m);
	if (open(p, O_RDONLY) != 4 || dup(m) != 5) return 2;
	lseek(4, 2, SEEK_SET); lseek(3, 7, SEEK_SET);
	if (fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) return 3;
	int g = open(argv[1], O_RDWR | O_CREAT | O_EXCL, 0600);
	if (g != 6 || open(argv[1], O_WRONLY | O_APPEND) != 7 || unlink(argv[1]) != 0) return 4;
	if (pwrite(g, "head", 4, 0) != 4 || pwrite(g, "tail", 4, 1 << 20) != 4) return 5;
	fchmod(g, 0741);
	struct timespec ts[2] = {{1000, 5}, {2000, 7}};
	futimens(g, ts);
	lseek(g, 3, SEEK_SET);
	setvbuf(stdout, NULL, _IONBF, 0);
	char c;
	while (read(0, &c, 1) == 1) {
		/* In order, and reading the ghost through O_NOATIME copies: its
		 * atime and offset stay as they are. */
		struct stat st; fstat(g, &st);
		long pos6 = lseek(6, 0, SEEK_CUR), pos4 = lseek(4, 0, SEEK_CUR), pos3 = lseek(3, 0, SEEK_CUR);
		int shares = lseek(5, 0, SEEK_CUR) == pos3;
		snprintf(p, sizeof p, "/proc/self/fd/%d", 6);
		int gc = open(p, O_RDONLY | O_NOATIME);
		int head = check(gc, 0, "head"), tail = check(gc, 1 << 20, "tail");
		long data = lseek(gc, 4096, SEEK_DATA);
		close(gc);
		snprintf(p, sizeof p, "/proc/self/fd/%d", 3);
		int mc = open(p, O_RDONLY);
		long hole = lseek(mc, 4096, SEEK_DATA);
		int mdata = check(mc, 0, "memfd data");
		close(mc);
		int mf = fcntl(3, F_GETFL) & O_ACCMODE, rf = fcntl(4, F_GETFL) & O_ACCMODE, af = fcntl(7, F_GETFL);
		printf("memfd=%d,%d ro=%d,%ld pos=%ld,%ld seals=%d dupshares=%d ghost=%d,%d mode=%o nlink=%ld size=%ld mtime=%ld.%ld atime=%ld data=%ld wronly=%d append=%d pos6=%ld\n",
			mdata, mf == O_RDWR, rf, hole, pos4, pos3, fcntl(3, F_GET_SEALS), shares,
			head, tail, st.st_mode & 07777, (long)st.st_nlink, (long)st.st_size,
			(long)st.st_mtim.tv_sec, (long)st.st_mtim.tv_nsec, (long)st.st_atim.tv_sec,
			data, (af & O_ACCMODE) == O_WRONLY, (af & O_APPEND) != 0, pos6);
		if (c == 'q') return 0;
	}
	return 0;
}
`

// TestNamelessFiles checkpoints a process holding a memfd and a deleted
// file and checks that the restored one has both as they were: contents,
// holes, size, seals, mode, times, descriptions shared or not, access
// modes, offsets; and that the deleted file's name is free again after.
func TestNamelessFiles(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	ghost := filepath.Join(t.TempDir(), "ghost")
	v := startVictim(t, gccBuild(t, "nameless", namelessVictim), ghost)
	before := v.ask(t, 'p')
	for _, want := range []string{"memfd=1,1", "ro=0,", "pos=2,7", "seals=6", "dupshares=1", "ghost=1,1", "mode=741", "nlink=0", "size=1048580", "mtime=2000.7", "atime=1000", "data=1048576", "wronly=1", "append=1", "pos6=3"} {
		if !strings.Contains(before, want) {
			t.Fatalf("victim before: %q lacks %q", before, want)
		}
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	if s := img.Objects.Summary(); !strings.Contains(s, "2 file") {
		t.Errorf("objects: %s, want 2 files", s)
	}
	p, _ := restore(t, tr, img, false)
	if after := p.ask(t, 'p'); after != before {
		t.Errorf("restored:\n got %q\nwant %q", after, before)
	}
	if _, err := os.Lstat(ghost); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the ghost's name after restore: %v, want it unlinked", err)
	}
	// The name taken by another file: the image refuses at checkpoint.
	v2 := startVictim(t, gccBuild(t, "nameless", namelessVictim), ghost)
	v2.ask(t, 'p')
	if err := os.WriteFile(ghost, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Checkpoint(tr, v2.pid, filepath.Join(t.TempDir(), "img2"), Options{Reconnect: []int{0, 1}, Leave: LeaveRunning})
	if !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "name is taken") {
		t.Errorf("checkpoint with the ghost's name taken: %v, want a refusal", err)
	}
}
