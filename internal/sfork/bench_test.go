package sfork

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// threadsC starts argv[1] threads that wait on a condition variable, then
// echoes stdin like the other victims.
const threadsC = `
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static void *wait_forever(void *arg) {
	pthread_mutex_lock(&mu);
	for (;;) pthread_cond_wait(&cv, &mu);
	return arg;
}
int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 0;
	for (int i = 0; i < n; i++) { pthread_t t; pthread_create(&t, NULL, wait_forever, NULL); }
	usleep(20000);
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ready\n");
	char c;
	while (read(0, &c, 1) == 1) printf("echo %c\n", c);
	return 0;
}
`

// BenchmarkForkThreads forks templates of 1 to 9 threads: the difference
// per added thread is what re-creating one costs a fork (clone3 in the
// child's batch, a batch of its own, its registers).
func BenchmarkForkThreads(b *testing.B) {
	testutil.RequiresRoot(b)
	if _, err := exec.LookPath("gcc"); err != nil {
		testutil.Missing(b, "gcc, to build the victim")
	}
	bin := filepath.Join(b.TempDir(), "threads")
	cc := exec.Command("gcc", "-O1", "-pthread", "-o", bin, "-x", "c", "-")
	cc.Stdin = strings.NewReader(threadsC)
	if out, err := cc.CombinedOutput(); err != nil {
		b.Fatalf("gcc: %v\n%s", err, out)
	}
	for _, extra := range []int{0, 2, 4, 8} {
		b.Run(fmt.Sprintf("threads=%d", extra+1), func(b *testing.B) {
			sh := filepath.Join(b.TempDir(), "run.sh")
			os.WriteFile(sh, []byte(fmt.Sprintf("#!/bin/sh\nexec %s %d\n", bin, extra)), 0o755)
			v := startVictim(b, sh)
			if line, _ := v.out.ReadString('\n'); line != "ready\n" {
				b.Fatalf("victim said %q", line)
			}
			tr := ptrace.NewTracer()
			defer tr.Close()
			tpl, err := FreezeWith(tr, v.cmd.Process.Pid, v.conn, 3, FreezeOptions{Threads: true})
			if err != nil {
				b.Fatal(err)
			}
			defer tpl.Close()
			b.ResetTimer()
			for range b.N {
				f, io := forkOne(b, tpl)
				b.StopTimer()
				io.in.Write([]byte{'x'})
				if got, _ := io.out.ReadString('\n'); got != "echo x\n" {
					b.Fatalf("fork said %q", got)
				}
				unix.Kill(f.Pid, unix.SIGKILL)
				io.in.Close()
				b.StartTimer()
			}
		})
	}
}
