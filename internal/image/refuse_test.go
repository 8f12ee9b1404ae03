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

const socketVictim = `
#include <sys/socket.h>
#include <unistd.h>
#define _GNU_SOURCE
int main(void) { close_range(3, ~0U, 0); int s = socket(AF_INET, SOCK_STREAM, 0); char c; while (read(0, &c, 1) == 1) write(1, "ok\n", 3); return s; }
`

// threadVictim has a thread under an allow-all seccomp filter that its
// main thread does not have. The main thread answers only once that
// filter is installed (before, its first answer could come first, and
// the checkpoint then found no filtered thread).
const threadVictim = `
#define _GNU_SOURCE
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>
static int filtered_now;
static void *filtered(void *a) {
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {1, &allow};
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
	__atomic_store_n(&filtered_now, 1, __ATOMIC_RELEASE);
	for (;;) pause();
}
int main(void) {
	close_range(3, ~0U, 0);
	pthread_t t; pthread_create(&t, 0, filtered, 0);
	while (!__atomic_load_n(&filtered_now, __ATOMIC_ACQUIRE)) sched_yield();
	char c; while (read(0, &c, 1) == 1) write(1, "ok\n", 3);
	return 0;
}
`

func TestRefusals(t *testing.T) {
	testutil.RequiresRoot(t)
	tr := ptrace.NewTracer()
	defer tr.Close()
	t.Run("socket", func(t *testing.T) {
		v := startVictim(t, gccBuild(t, "sock", socketVictim))
		v.ask(t, 'p')
		_, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
		var ue *UnsupportedError
		if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "fd 3 (socket:") {
			t.Fatalf("got %v, want a refusal naming fd 3 (socket)", err)
		}
		t.Log(err)
		if l := v.ask(t, 'p'); l != "ok" {
			t.Errorf("process after a refused checkpoint: %q", l)
		}
	})
	t.Run("undeclared pipe", func(t *testing.T) {
		v := startVictim(t, gccBuild(t, "victim", victimC), filepath.Join(t.TempDir(), "data"))
		v.ask(t, 'p')
		_, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{})
		if !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "fd 0 (pipe:") {
			t.Fatalf("got %v, want a refusal naming fd 0 (pipe)", err)
		}
	})
	t.Run("thread seccomp", func(t *testing.T) {
		v := startVictim(t, gccBuild(t, "thr", threadVictim))
		if l := v.ask(t, 'p'); l != "ok" { // answered after the thread's filter is installed
			t.Fatalf("victim said %q", l)
		}
		_, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
		var se *ptrace.SeccompError
		if !errors.As(err, &se) || !errors.Is(err, errdefs.ErrNotSupported) || se.TID == v.pid {
			t.Fatalf("got %v, want a SeccompError naming the filtered thread", err)
		}
		t.Log(err)
		if l := v.ask(t, 'p'); l != "ok" {
			t.Errorf("process after a refused checkpoint: %q", l)
		}
	})
}
