package image

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

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

const threadVictim = `
#include <pthread.h>
#include <unistd.h>
static void *idle(void *a) { for (;;) pause(); }
int main(void) { pthread_t t; pthread_create(&t, 0, idle, 0); char c; while (read(0, &c, 1) == 1) write(1, "ok\n", 3); return 0; }
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
	t.Run("threads", func(t *testing.T) {
		v := startVictim(t, gccBuild(t, "thr", threadVictim))
		v.ask(t, 'p')
		_, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
		if !errors.Is(err, ptrace.ErrMultiThreaded) {
			t.Fatalf("got %v, want ErrMultiThreaded", err)
		}
		unix.Kill(v.pid, 0)
	})
}
