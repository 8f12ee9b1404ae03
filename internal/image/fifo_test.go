package image

import (
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// fifoVictim holds a FIFO under argv[1] three times: read-write (fd 3)
// and its dup (fd 5), one description, and read-only non-blocking (fd
// 4), with "hello" queued. 'p' prints each fd's access mode and
// O_NONBLOCK, the bytes queued and whether fds 3 and 5 share their
// description (O_NONBLOCK set through 5 shows on 3); 'r' reads the
// queue through fd 4.
const fifoVictim = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	char p[4096]; snprintf(p, sizeof p, "%s/fifo", argv[1]);
	if (mkfifo(p, 0600)) return 1;
	int a = open(p, O_RDWR), b = open(p, O_RDONLY | O_NONBLOCK), c = dup(a);
	if (a != 3 || b != 4 || c != 5 || write(a, "hello", 5) != 5) return 2;
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch;
	while (read(0, &ch, 1) == 1) {
		if (ch == 'p') {
			int q; ioctl(a, FIONREAD, &q);
			int fa = fcntl(a, F_GETFL), fb = fcntl(b, F_GETFL);
			fcntl(c, F_SETFL, O_NONBLOCK); int shared = fcntl(a, F_GETFL) & O_NONBLOCK; fcntl(c, F_SETFL, 0);
			printf("a %d/%d b %d/%d queued %d shared %d\n", fa & O_ACCMODE, !!(fa & O_NONBLOCK), fb & O_ACCMODE, !!(fb & O_NONBLOCK), q, !!shared);
		} else {
			char buf[16] = {0}; int n = read(b, buf, sizeof buf - 1);
			printf("read %d %s\n", n, buf);
		}
	}
	return 0;
}
`

// TestFIFO checkpoints a process holding a FIFO through two descriptions
// (one on two fds) with bytes queued, and checks the restored one has
// the same descriptions, flags and bytes.
func TestFIFO(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "fifo", fifoVictim), t.TempDir())
	const want = "a 2/0 b 0/1 queued 5 shared 1"
	if got := v.ask(t, 'p'); got != want {
		t.Fatalf("victim: %q, want %q", got, want)
	}
	p, img := roundTrip(t, tr, v)
	if got := p.ask(t, 'p'); got != want {
		maps, fds := layout(t, p.pid)
		_ = maps
		t.Errorf("restored: %q, want %q (fds %q, image %s)", got, want, fds, img.Objects.Summary())
	}
	if got := p.ask(t, 'r'); got != "read 5 hello" {
		t.Errorf("restored read: %q", got)
	}
}
