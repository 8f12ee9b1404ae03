package image

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// shmemVictim leads its own session and has three pages of shared
// anonymous memory: page 0 written by itself, page 1 only by a child
// that has exited (in the shmem object, not in the victim's page tables),
// page 2 never. 'p' prints the first byte of each page and whether it
// still leads its session; 'f' forks a child that writes page 0 through
// the mapping and waits for it: the write shows only if the mapping is
// still shared.
const shmemVictim = `
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(void) {
	close_range(3, ~0U, 0);
	setsid();
	char *m = mmap(0, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	m[0] = 'A';
	if (fork() == 0) { m[4096] = 'B'; _exit(0); }
	wait(0);
	madvise(m + 4096, 4096, MADV_DONTNEED); /* drop our own mapping of page 1 */
	char c;
	while (read(0, &c, 1) == 1) {
		if (c == 'f') { if (fork() == 0) { m[0] = 'C'; _exit(0); } wait(0); }
		printf("p0=%c p1=%c p2=%d leader=%d\n", m[0], m[4096], m[8192], getsid(0) == getpid());
		fflush(stdout);
	}
	return 0;
}
`

func TestSharedAnonymousMemory(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "shmem", shmemVictim))
	const want = "p0=A p1=B p2=0 leader=1"
	if l := v.ask(t, 'p'); l != want {
		t.Fatalf("victim: %q, want %q", l, want)
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}, Leave: LeaveKilled})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	img, err = Open(img.Dir)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := restore(t, tr, img, false)
	if l := r.ask(t, 'p'); l != want {
		t.Errorf("restored: %q, want %q", l, want)
	}
	if l := r.ask(t, 'f'); l != "p0=C p1=B p2=0 leader=1" {
		t.Errorf("restored, after a child wrote page 0: %q: the mapping is not shared", l)
	}
	maps, _ := layout(t, r.pid)
	if !slices.ContainsFunc(maps, func(m string) bool { return strings.Contains(m, "rw-s") && strings.Contains(m, "/dev/zero") }) {
		t.Errorf("no shared /dev/zero mapping after restore:\n%s", strings.Join(maps, "\n"))
	}
}

// treeVictim, by its argument: "child" has a live child; "zombie" an
// unreaped one; "session" leads a session whose other member is a
// grandchild (its child has exited); "shmem" has shared anonymous memory
// that a grandchild maps too. It answers "ok CHILD GRANDCHILD" (0 for
// none), so that the test can kill what it left behind.
const treeVictim = `
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	char *mode = argv[1];
	volatile int *m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (!strcmp(mode, "session")) setsid();
	pid_t c = fork();
	if (c == 0) {
		if (!strcmp(mode, "zombie")) _exit(0);
		if (!strcmp(mode, "child")) for (;;) pause();
		pid_t g = fork();
		if (g == 0) for (;;) pause();
		m[0] = g;
		_exit(0);
	}
	if (!strcmp(mode, "zombie")) { usleep(100000); c = 0; }
	else if (strcmp(mode, "child")) { waitpid(c, 0, 0); c = 0; }
	char ch;
	while (read(0, &ch, 1) == 1) { printf("ok %d %d\n", c, m[0]); fflush(stdout); }
	return 0;
}
`

func TestTreeRefusals(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	bin := gccBuild(t, "tree", treeVictim)
	for mode, want := range map[string]string{
		"child":   "child processes are not checkpointed",
		"zombie":  "child zombie ",
		"session": "it leads a process group with ",
		"shmem":   "shared anonymous memory that process ",
	} {
		t.Run(mode, func(t *testing.T) {
			v := startVictim(t, bin, mode)
			var left [2]int
			if _, err := fmt.Sscanf(v.ask(t, 'p'), "ok %d %d", &left[0], &left[1]); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				for _, pid := range left {
					if pid > 0 {
						unix.Kill(pid, unix.SIGKILL)
					}
				}
			})
			_, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want a refusal saying %q", err, want)
			}
			t.Log(err)
			if l := v.ask(t, 'p'); !strings.HasPrefix(l, "ok ") {
				t.Errorf("process after a refused checkpoint: %q", l)
			}
		})
	}
}
