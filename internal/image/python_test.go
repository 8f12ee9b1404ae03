package image

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// pyLoop answers each line on stdin with a counter and a value computed
// from state built at startup.
const pyLoop = `
import os, sys, time
os.closerange(3, 1024)  # fds the test harness leaked to us
data = {i: i * i for i in range(50000)}
n = 0
for line in sys.stdin:
    n += 1
    print("n=%d sum=%d mono=%d" % (n, sum(data[i] for i in range(100)), time.monotonic() > 0), flush=True)
`

func TestPython(t *testing.T) {
	testutil.RequiresRoot(t)
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	v := startVictim(t, py, "-c", pyLoop)
	v.in.Write([]byte("a\nb\n"))
	v.out.ReadString('\n')
	first, _ := v.out.ReadString('\n')
	dir := filepath.Join(t.TempDir(), "img")
	img, err := Checkpoint(tr, v.pid, dir, Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	r, st := restore(t, tr, img, false)
	t.Logf("python restore: %v, %d entries, pages.img %d kB", st.Total, st.Entries, img.PagesSize()>>10)
	r.in.Write([]byte("y\n"))
	line, err := r.out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(line, "n=3 sum=328350 mono=1") {
		t.Errorf("first answer %q, after restore %q", first, line)
	}
}
