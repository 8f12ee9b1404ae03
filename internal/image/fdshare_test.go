package image

import (
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// fdShareVictim opens a file under argv[1] as fd 3, dups it to fd 5, and
// opens it again as fd 4 (a description of its own); fd 3 is at offset 3
// and O_APPEND. 'p' moves fd 3 to offset 7 and prints each fd's offset and
// O_APPEND: fds 3 and 5 move together, fd 4 does not.
const fdShareVictim = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	char p[4096]; snprintf(p, sizeof p, "%s/file", argv[1]);
	int a = open(p, O_RDWR | O_CREAT, 0644), c = open(p, O_RDONLY), b = dup(a);
	if (a != 3 || c != 4 || b != 5 || write(a, "0123456789", 10) != 10) return 1;
	lseek(a, 3, SEEK_SET); fcntl(b, F_SETFL, O_APPEND);
	setvbuf(stdout, NULL, _IONBF, 0);
	char ch;
	while (read(0, &ch, 1) == 1) {
		long before = lseek(b, 0, SEEK_CUR);
		lseek(a, 7, SEEK_SET);
		printf("before %ld after %ld %ld %ld append %d %d %d\n", before, lseek(3, 0, SEEK_CUR), lseek(4, 0, SEEK_CUR), lseek(5, 0, SEEK_CUR),
			!!(fcntl(3, F_GETFL) & O_APPEND), !!(fcntl(4, F_GETFL) & O_APPEND), !!(fcntl(5, F_GETFL) & O_APPEND));
		lseek(a, 3, SEEK_SET);
	}
	return 0;
}
`

// TestSharedFileDescription: fds that shared an open file description
// (dup) share one after restore (offset and status flags), and one opened
// on its own stays on its own.
func TestSharedFileDescription(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "fdshare", fdShareVictim), t.TempDir())
	const want = "before 3 after 7 0 7 append 1 0 1"
	if got := v.ask(t, 'p'); got != want {
		t.Fatalf("victim: %q, want %q", got, want)
	}
	p, _ := roundTrip(t, tr, v)
	if got := p.ask(t, 'p'); got != want {
		t.Errorf("restored: %q, want %q", got, want)
	}
}
