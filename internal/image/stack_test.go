package image

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// victimDeep answers 'p' with "ready" (nothing deep yet), 'd' by
// recursing through about 4 MiB of stack (a 4 KiB frame 1000 deep), which
// the checkpointed stack (~132 KiB) did not have mapped, and 'D' by
// recursing 400 MiB deep, beyond the 64 MiB RLIMIT_STACK it sets itself.
const victimDeep = `
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static int deep(int n) {
	volatile char frame[4096];
	memset((char *)frame, n, sizeof frame);
	if (n == 0) return frame[17];
	return deep(n - 1) + frame[n % 4096];
}

int main(void) {
	close_range(3, ~0U, 0);
	struct rlimit rl;
	getrlimit(RLIMIT_STACK, &rl);
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (64 << 20)) return 4;
	rl.rlim_cur = 64 << 20;
	if (setrlimit(RLIMIT_STACK, &rl) != 0) return 5;
	char c;
	for (;;) {
		if (read(0, &c, 1) != 1) return 3;
		if (c == 'q') return 0;
		if (c == 'd') { printf("deep %d\n", deep(1000)); fflush(stdout); continue; }
		if (c == 'D') { printf("deep %d\n", deep(100000)); fflush(stdout); continue; } /* 400 MiB */
		printf("ready\n"); fflush(stdout);
	}
}
`

// TestRestoredStackGrows: a process checkpointed with a small stack, once
// restored, can use far more stack than was mapped at checkpoint (up to
// its RLIMIT_STACK), as the original could. The stack was restored as a
// fixed mapping of pages.img: the first touch below it was a SIGSEGV.
func TestRestoredStackGrows(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	bin := gccBuild(t, "deep", victimDeep)
	v := startVictim(t, bin)
	if l := v.ask(t, 'p'); l != "ready" {
		t.Fatalf("victim: %q", l)
	}
	before := stackSize(t, v.pid)
	if before >= 2<<20 {
		t.Fatalf("victim's stack is already %d bytes before checkpoint", before)
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}, Leave: LeaveKilled})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	for i := 0; i < 2; i++ {
		r, _ := restore(t, tr, img, i == 1)
		if l := r.ask(t, 'p'); l != "ready" {
			t.Fatalf("restored: %q", l)
		}
		if gd, err := growsDown(r.pid); err != nil || !gd[stackStart(t, r.pid)] {
			t.Errorf("restored [stack] is not VM_GROWSDOWN (smaps: %v %v)", gd, err)
		}
		if got := r.askOrDie(t, 'd'); !strings.HasPrefix(got, "deep ") {
			t.Fatalf("restored process after deep recursion: %q (stack was %d bytes at checkpoint)", got, before)
		}
		after := stackSize(t, r.pid)
		t.Logf("restore %d (prefetch %v): stack %d KiB at checkpoint, %d KiB after recursing", i, i == 1, before>>10, after>>10)
		if after < 3<<20 {
			t.Errorf("stack is %d bytes after recursing ~4 MiB deep", after)
		}
		if i == 0 {
			r.in.Write([]byte{'q'})
			if err := r.cmd.Wait(); err != nil {
				t.Errorf("restored process exit: %v", err)
			}
			continue
		}
		// It grows no further than its RLIMIT_STACK (64 MiB, restored by
		// the plan): 400 MiB deep is a SIGSEGV, as in the original.
		if got := r.askOrDie(t, 'D'); !strings.HasPrefix(got, "died") {
			t.Errorf("400 MiB of stack under a 64 MiB RLIMIT_STACK: %q", got)
		}
		r.cmd.Wait()
	}
}

// askOrDie is ask for a question the process may die of: its exit status
// is the answer then.
func (p *proc) askOrDie(t testing.TB, c byte) string {
	t.Helper()
	if _, err := p.in.Write([]byte{c}); err != nil {
		t.Fatal(err)
	}
	s, err := p.out.ReadString('\n')
	if err != nil {
		var ws string
		if st, err := procfs.Stat(p.pid); err == nil {
			ws = st.String()
		}
		return "died (" + err.Error() + ") " + ws
	}
	return strings.TrimSpace(s)
}

// stackSize is the size of pid's [stack] mapping.
func stackSize(t testing.TB, pid int) uint64 {
	v := stackVMA(t, pid)
	return v.End - v.Start
}

func stackStart(t testing.TB, pid int) uint64 { return stackVMA(t, pid).Start }

func stackVMA(t testing.TB, pid int) procfs.Mapping {
	t.Helper()
	vs, err := procfs.Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		if v.Path == "[stack]" {
			return v
		}
	}
	t.Fatalf("no [stack] in the maps of %d", pid)
	return procfs.Mapping{}
}
