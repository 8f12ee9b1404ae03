package image

import (
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// locksVictim takes a flock, an OFD lock, two POSIX locks (one through
// a read-only fd, which cannot take the write one again) and a read
// lease on files under argv[1]; on 'p' it prints the lock lines of its
// fdinfo, and whether a second description can take each lock ("free"
// means it was lost).
const locksVictim = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>
static void lines(int fd) {
	char p[64], l[256]; snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
	FILE *f = fopen(p, "r");
	while (fgets(l, sizeof l, f)) if (!strncmp(l, "lock:", 5)) { l[strcspn(l, "\n")] = 0; printf("%d %s | ", fd, l); }
	fclose(f);
}
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	char p[4096];
	snprintf(p, sizeof p, "%s/flock", argv[1]); int a = open(p, O_RDWR | O_CREAT, 0644);
	snprintf(p, sizeof p, "%s/ofd", argv[1]); int b = open(p, O_RDWR | O_CREAT, 0644);
	snprintf(p, sizeof p, "%s/posix", argv[1]); int c = open(p, O_RDONLY | O_CREAT, 0644); int d = open(p, O_RDWR);
	snprintf(p, sizeof p, "%s/lease", argv[1]); int e = open(p, O_RDONLY | O_CREAT, 0644);
	if (flock(a, LOCK_EX)) return 1;
	struct flock ofd = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 5};
	if (fcntl(b, F_OFD_SETLK, &ofd)) return 2;
	struct flock rd = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 100};
	struct flock wr = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 200, .l_len = 0};
	if (fcntl(c, F_SETLK, &rd) || fcntl(d, F_SETLK, &wr)) return 3;
	if (fcntl(e, F_SETLEASE, F_RDLCK)) return 4;
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch;
	while (read(0, &ch, 1) == 1) {
		for (int fd = 3; fd <= 7; fd++) lines(fd);
		snprintf(p, sizeof p, "%s/flock", argv[1]); int x = open(p, O_RDWR);
		printf("flock %s ", flock(x, LOCK_SH | LOCK_NB) ? "held" : "free"); close(x);
		snprintf(p, sizeof p, "%s/ofd", argv[1]); x = open(p, O_RDWR);
		struct flock t = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 12, .l_len = 1};
		printf("ofd %s lease %d\n", fcntl(x, F_OFD_SETLK, &t) ? "held" : "free", fcntl(e, F_GETLEASE)); close(x);
	}
	return 0;
}
`

// TestLocks checkpoints a process holding locks of every kind it keeps
// and checks the restored one holds each (its fdinfo lines, but for the
// owner pid, and a second description of the file cannot take them).
func TestLocks(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	dir := t.TempDir()
	v := startVictim(t, gccBuild(t, "locks", locksVictim), dir)
	pids := regexp.MustCompile(`(POSIX|FLOCK|OFDLCK|LEASE)(\s+\S+\s+\S+)\s+-?\d+`)
	norm := func(s string) string { return pids.ReplaceAllString(s, "$1$2 PID") }
	got := norm(v.ask(t, 'p'))
	for _, want := range []string{"FLOCK  ADVISORY  WRITE", "OFDLCK ADVISORY  WRITE", "POSIX  ADVISORY  READ", "POSIX  ADVISORY  WRITE", "LEASE  ACTIVE    READ", "flock held ofd held lease 0"} {
		if !strings.Contains(got, want) {
			t.Fatalf("victim before: %q lacks %q", got, want)
		}
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	p, _ := restore(t, tr, img, false)
	if a := norm(p.ask(t, 'p')); a != got {
		t.Errorf("restored:\n%s\nwant\n%s", a, got)
	}

	// A lock of a description two fds share is refused by name.
	v2 := startVictim(t, gccBuild(t, "sharedlock", `
#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>
int main(int argc, char **argv) { close_range(3, ~0U, 0); int a = open(argv[1], O_RDWR | O_CREAT, 0644); dup(a); flock(a, LOCK_EX);
	char c; while (read(0, &c, 1) == 1) write(1, "ok\n", 3); return 0; }`), filepath.Join(dir, "shared"))
	v2.ask(t, 'p')
	_, err = Checkpoint(tr, v2.pid, filepath.Join(t.TempDir(), "img2"), Options{Reconnect: []int{0, 1}, Leave: LeaveRunning})
	if !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "shares") {
		t.Errorf("flock on a shared description: %v, want a refusal", err)
	}
}
