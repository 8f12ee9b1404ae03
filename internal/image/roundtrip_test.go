package image

import (
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// roundTrip checkpoints victim v (its stdin and stdout reconnected),
// which the checkpoint kills, and restores it: the restored process, and
// the image.
func roundTrip(t *testing.T, tr *ptrace.Tracer, v *proc) (*proc, *Image) {
	t.Helper()
	img, err := Checkpoint(tr, v.pid, filepath.Join(t.TempDir(), "img"), Options{Reconnect: []int{0, 1}})
	if err != nil {
		t.Fatal(err)
	}
	v.cmd.Wait()
	p, _ := restore(t, tr, img, false)
	return p, img
}
