package image

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// attrsVictim, by its argument, holds what checkpoint refuses ("flock
// FILE": a flock on a description two fds share, "mlock", "oom", "procfd", "sigtrap": a blocked SIGTRAP pending) or, with "attrs", what the plan gives
// back: child subreaper, THP disabled, a MADV_DONTFORK mapping, a
// membarrier registration. 'p' prints them.
const attrsVictim = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
static char *m;
static int dontfork(void) {
	char line[512], want[64]; int in = 0, dc = 0;
	snprintf(want, sizeof want, "%lx-", (unsigned long)m);
	FILE *f = fopen("/proc/self/smaps", "r");
	while (fgets(line, sizeof line, f)) {
		if (strchr(line, '-') && strchr(line, ' ') && strchr(line, '-') < strchr(line, ' ')) in = !strncmp(line, want, strlen(want));
		if (in && !strncmp(line, "VmFlags:", 8)) dc = strstr(line, " dc") != 0;
	}
	fclose(f);
	return dc;
}
int main(int argc, char **argv) {
	close_range(3, ~0U, 0);
	char *mode = argv[1];
	m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	m[0] = 1;
	if (!strcmp(mode, "flock")) { int f = open(argv[2], O_RDWR | O_CREAT, 0600); dup(f); flock(f, LOCK_EX); }
	if (!strcmp(mode, "mlock")) mlock(m, 4096);
	if (!strcmp(mode, "oom")) { int f = open("/proc/self/oom_score_adj", O_WRONLY); write(f, "500", 3); close(f); }
	if (!strcmp(mode, "procfd")) open("/proc/self/status", O_RDONLY);
	if (!strcmp(mode, "sigtrap")) {
		sigset_t s; sigemptyset(&s); sigaddset(&s, SIGTRAP);
		sigprocmask(SIG_BLOCK, &s, 0);
		kill(getpid(), SIGTRAP);
	}
	if (!strcmp(mode, "attrs")) {
		prctl(PR_SET_CHILD_SUBREAPER, 1);
		prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
		madvise(m, 4096, MADV_DONTFORK);
		syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0);
	}
	char c;
	while (read(0, &c, 1) == 1) {
		int sub = 0; prctl(PR_GET_CHILD_SUBREAPER, &sub);
		printf("sub=%d thp=%d dontfork=%d mb=%ld dumpable=%d\n", sub, prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0), dontfork(),
			syscall(SYS_membarrier, 1 << 9 /* MEMBARRIER_CMD_GET_REGISTRATIONS */, 0, 0), prctl(PR_GET_DUMPABLE));
		fflush(stdout);
	}
	return 0;
}
`

func TestAttrsRestored(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, gccBuild(t, "attrs", attrsVictim), "attrs")
	before := v.ask(t, 'p')
	if !strings.HasPrefix(before, "sub=1 thp=1 dontfork=1 ") {
		t.Fatalf("victim: %q", before)
	}
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}, Leave: LeaveKilled})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	r, _ := restore(t, tr, img, false)
	if after := r.ask(t, 'p'); after != before {
		t.Errorf("restored: %q, want %q", after, before)
	}
}

func TestAttrsRefused(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	bin := gccBuild(t, "attrs", attrsVictim)
	for mode, want := range map[string]string{
		"flock":  "lock on a description fd",
		"mlock":  "locked memory (mlock, MAP_LOCKED) is not restored",
		"oom":    "oom_score_adj 500 is not restored",
		"procfd": "files under /proc are not checkpointed",
		// Refused before the executor runs, which would take the
		// pending SIGTRAP for its own.
		"sigtrap": "a pending SIGTRAP is not checkpointed",
	} {
		t.Run(mode, func(t *testing.T) {
			v := startVictim(t, bin, mode, filepath.Join(t.TempDir(), "locked"))
			v.ask(t, 'p')
			_, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want a refusal saying %q", err, want)
			}
			t.Log(err)
		})
	}
}

// dontneedVictim writes a page of anonymous memory; 'z' drops it with
// MADV_DONTNEED and prints its first byte, which anonymous memory reads
// back as 0.
const dontneedVictim = `
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
	close_range(3, ~0U, 0);
	char *m = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	m[0] = 7;
	char c;
	while (read(0, &c, 1) == 1) {
		if (c == 'z') madvise(m, 4096, MADV_DONTNEED);
		printf("byte=%d\n", m[0]);
		fflush(stdout);
	}
	return 0;
}
`

func TestCopyAnonDontneed(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	bin := gccBuild(t, "dontneed", dontneedVictim)
	for _, copyAnon := range []bool{true, false} {
		v := startVictim(t, bin)
		if l := v.ask(t, 'p'); l != "byte=7" {
			t.Fatalf("victim: %q", l)
		}
		img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}, Leave: LeaveKilled, CopyAnon: copyAnon})
		if err != nil {
			t.Fatal(err)
		}
		v.cmd.Wait()
		r, _ := restore(t, tr, img, false)
		want := "byte=0"
		if !copyAnon {
			want = "byte=7" // pages.img's bytes come back: the documented cost of mapping it
		}
		if l := r.ask(t, 'z'); l != want {
			t.Errorf("CopyAnon %v: after MADV_DONTNEED: %q, want %q", copyAnon, l, want)
		}
	}
}
