package image

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// BenchmarkCopyAnon measures what restoring anonymous memory as
// anonymous memory (Options.CopyAnon: each dumped page read in with
// pread at boot) costs against mapping pages.img privately (pages fault
// in from the page cache on first touch), for a Python process like a
// template (its heap holds a 50000-entry dict): restore alone and
// restore + first answer, warm (pages.img in the page cache) and cold
// (drop_caches before each restore), in one run, as p50s.
func BenchmarkCopyAnon(b *testing.B) {
	testutil.RequiresRoot(b)
	py, err := exec.LookPath("python3")
	if err != nil {
		b.Skip("needs python3")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	imgs := map[bool]*Image{}
	for _, copyAnon := range []bool{false, true} {
		v := startVictim(b, py, "-c", pyLoop)
		v.in.Write([]byte("a\n"))
		v.out.ReadString('\n')
		img, err := Checkpoint(tr, v.pid, filepath.Join(b.TempDir(), "img"), Options{Reconnect: []int{0, 1}, CopyAnon: copyAnon})
		if err != nil {
			b.Fatal(err)
		}
		v.cmd.Wait()
		imgs[copyAnon] = img
	}
	b.Logf("pages.img: %d KiB", imgs[false].PagesSize()>>10)
	for _, cold := range []bool{false, true} {
		for _, copyAnon := range []bool{false, true} {
			name := map[bool]string{false: "warm", true: "cold"}[cold] + map[bool]string{false: "/map", true: "/copy"}[copyAnon]
			b.Run(name, func(b *testing.B) {
				total, restoreOnly := benchRestores(b, tr, imgs[copyAnon], RestoreOptions{}, cold, func(p *proc) {
					p.in.Write([]byte("x\n"))
					if _, err := p.out.ReadString('\n'); err != nil {
						b.Fatal(err)
					}
				})
				b.ReportMetric(float64(p50(total).Microseconds()), "p50-answer-us")
				b.ReportMetric(float64(p50(restoreOnly).Microseconds()), "p50-restore-us")
			})
		}
	}
}
