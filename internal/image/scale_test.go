package image

import (
	"bufio"
	"io"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

func TestConcurrentRestores(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	_, img, before := checkpointVictim(t, tr)
	var wg sync.WaitGroup
	lines := make([]string, 3)
	for i := range lines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			own := ptrace.NewTracer() // one tracer thread each: truly concurrent
			defer own.Close()
			r, _ := restore(t, own, img, false)
			lines[i] = r.ask(t, 'p')
		}()
	}
	wg.Wait()
	for _, l := range lines {
		if field(t, l, "n") != "2" || field(t, l, "usr1") != field(t, before, "usr1") || field(t, l, "off") != "3" {
			t.Errorf("instance answered %q after %q", l, before)
		}
	}
}

// pss sums Pss and Rss (kB) of pid from smaps_rollup.
func pss(t testing.TB, pid int) (pss, rss int) {
	r, err := procfs.SmapsRollup(pid)
	if err != nil {
		t.Fatal(err)
	}
	return int(r.Fields["Pss"]), int(r.Fields["Rss"])
}

// TestPSS reports the proportional set size per restored instance with 1
// and 10 instances of one image (clean pages shared through pages.img's
// page cache).
func TestPSS(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	_, img, _ := checkpointVictim(t, tr)
	per := map[int]int{}
	for _, n := range []int{1, 10} {
		var ps []*proc
		for i := 0; i < n; i++ {
			r, _ := restore(t, tr, img, false)
			r.ask(t, 'p')
			ps = append(ps, r)
		}
		var sumP, sumR int
		for _, p := range ps {
			a, b := pss(t, p.pid)
			sumP += a
			sumR += b
		}
		t.Logf("%2d instances: PSS %d kB per instance (RSS %d kB)", n, sumP/n, sumR/n)
		per[n] = sumP / n
		for _, p := range ps {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	}
	// Clean image pages are shared through the page cache: ten instances
	// cost each well under what one alone does.
	if per[10] >= per[1]*8/10 {
		t.Errorf("PSS per instance: %d kB with 10 instances, %d kB alone: image pages are not shared", per[10], per[1])
	}
}

func TestWorkingSetPrefetch(t *testing.T) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	_, img, _ := checkpointVictim(t, tr)
	r, _ := restore(t, tr, img, false)
	r.ask(t, 'p')
	ws, err := RecordWorkingSet(r.pid, img)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, x := range ws {
		n += x.Len
	}
	t.Logf("working set: %d ranges, %d kB of %d kB in pages.img", len(ws), n>>10, img.PagesSize()>>10)
	img2, err := Open(img.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(img2.WorkingSet) != len(ws) {
		t.Fatalf("reopened image has %d ranges, want %d", len(img2.WorkingSet), len(ws))
	}
	r2, st := restore(t, tr, img2, true)
	t.Logf("restore with prefetch: %+v", st.Phases)
	if l := r2.ask(t, 'p'); field(t, l, "n") != "2" {
		t.Errorf("after prefetch restore: %s", l)
	}
}

// BenchmarkRestore measures restore + first answer of the C victim: warm
// (plan cached, pages in the page cache) and cold (drop_caches before each
// restore), each with and without working-set prefetch. It reports p50.
func BenchmarkRestore(b *testing.B) {
	tr := ptrace.NewTracer()
	defer tr.Close()
	_, img, _ := checkpointVictim(b, tr)
	r, _ := restore(b, tr, img, false)
	r.ask(b, 'p')
	if _, err := RecordWorkingSet(r.pid, img); err != nil {
		b.Fatal(err)
	}
	for _, cold := range []bool{false, true} {
		for _, prefetch := range []bool{false, true} {
			name := map[bool]string{false: "warm", true: "cold"}[cold] + map[bool]string{false: "", true: "-prefetch"}[prefetch]
			b.Run(name, func(b *testing.B) {
				ds, restoreOnly := benchRestores(b, tr, img, RestoreOptions{Prefetch: prefetch}, cold, func(p *proc) { p.ask(b, 'p') })
				b.ReportMetric(float64(p50(ds).Microseconds()), "p50-us")
				b.ReportMetric(float64(p50(restoreOnly).Microseconds()), "p50-restore-us")
			})
		}
	}
}

// benchRestores restores img b.N times with opts (the restorer's pipes
// as fds 3 and 4; cold: the page cache dropped first), has answer wait
// for the restored process's first reply, and returns each restore's
// time to that reply and the engine's own restore time. Only the
// restore and the reply are timed.
func benchRestores(b *testing.B, tr *ptrace.Tracer, img *Image, opts RestoreOptions, cold bool, answer func(*proc)) (total, restoreOnly []time.Duration) {
	opts.Reconnect = map[int]int{0: 3, 1: 4}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if cold {
			os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0o200)
		}
		inR, inW, _ := os.Pipe()
		outR, outW, _ := os.Pipe()
		cmd, tc, err := StartRestorer(tr, []*os.File{inR, outW})
		inR.Close()
		outW.Close()
		if err != nil {
			b.Fatal(err)
		}
		opts.Tracee = tc
		b.StartTimer()
		start := time.Now()
		pid, st, err := Restore(tr, img, opts)
		if err != nil {
			b.Fatal(err)
		}
		answer(&proc{pid: pid, in: inW, out: newReader(outR), cmd: cmd})
		total = append(total, time.Since(start))
		restoreOnly = append(restoreOnly, st.Total)
		b.StopTimer()
		cmd.Process.Kill()
		cmd.Wait()
		inW.Close()
		outR.Close()
	}
	return total, restoreOnly
}

func p50(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func newReader(r io.Reader) *bufio.Reader { return bufio.NewReader(r) }
