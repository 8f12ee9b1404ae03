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

// socketVictim holds a TCP listener (fd 3, carried over) and both ends
// of a connection to it (fds 4 and 5: refused, they need TCP_REPAIR).
const socketVictim = `
#define _GNU_SOURCE
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
int main(void) {
	close_range(3, ~0U, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int s = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0);
	if (bind(s, (struct sockaddr *)&a, l) || listen(s, 1) || getsockname(s, (struct sockaddr *)&a, &l) ||
	    connect(c, (struct sockaddr *)&a, l) || accept(s, 0, 0) != 5) return 1;
	char ch; while (read(0, &ch, 1) == 1) write(1, "ok\n", 3);
	return 0;
}
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
		if !errors.As(err, &ue) || !errors.Is(err, errdefs.ErrNotSupported) || !strings.Contains(err.Error(), "fd 4 (socket:") ||
			!strings.Contains(err.Error(), "TCP_REPAIR") {
			t.Fatalf("got %v, want a refusal naming fd 4 (socket) and TCP connections", err)
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
