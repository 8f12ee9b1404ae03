package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// fdsVictim opens argv[1] files named argv[2].0, .1, ... at offset i and
// answers each byte on stdin.
const fdsVictim = `
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int n = atoi(argv[1]); char p[4096], c;
	for (int fd = 3; fd < 1024; fd++) close(fd); /* whatever the test runner leaked */
	for (int i = 0; i < n; i++) {
		snprintf(p, sizeof p, "%s.%d", argv[2], i);
		int fd = open(p, O_RDWR);
		if (fd < 0 || lseek(fd, i, SEEK_SET) != i) return 1;
	}
	setvbuf(stdout, NULL, _IONBF, 0);
	while (read(0, &c, 1) == 1) printf("ok\n");
	return 0;
}
`

// BenchmarkRestoreFDs measures what restoring open files eagerly in the
// plan costs per descriptor: restore time with 0 and with 64 regular
// files open (each one openat + lseek + dup in the one batch). Lazy
// reconnection would instead cost a trap (a ptrace round trip, ~30 µs on
// a paravirtualized VM) on each descriptor's first use.
func BenchmarkRestoreFDs(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	bin := gccBuild(b, "fds", fdsVictim)
	base := filepath.Join(b.TempDir(), "f")
	for i := 0; i < 64; i++ {
		os.WriteFile(fmt.Sprintf("%s.%d", base, i), make([]byte, 128), 0o644)
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	medians := map[int]time.Duration{}
	for _, n := range []int{0, 64} {
		b.Run(fmt.Sprintf("files=%d", n), func(b *testing.B) {
			v := startVictim(b, bin, fmt.Sprint(n), base)
			v.ask(b, 'p')
			dir := b.TempDir()
			img, err := Checkpoint(tr, v.pid, dir, Options{Reconnect: []int{0, 1}, Leave: LeaveRunning})
			if err != nil {
				b.Fatal(err)
			}
			var ds []time.Duration
			for i := 0; i < b.N; i++ {
				p, st := restore(b, tr, img, false)
				p.ask(b, 'p')
				ds = append(ds, st.Total)
				p.cmd.Process.Kill()
			}
			sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
			medians[n] = ds[len(ds)/2]
			b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "restore-µs-p50")
		})
	}
	if m0, m64 := medians[0], medians[64]; m0 > 0 && m64 > 0 {
		b.Logf("eager restore cost per regular file: %.1f µs", float64(m64-m0)/64/1e3)
	}
}
