package sandbox

import (
	"testing"

	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
)

func TestPhasesOf(t *testing.T) {
	// Out of order: the helper's "config" may come before the host's "send".
	ps := phasesOf(1, []initwire.Mark{{Phase: "config", T: 5}, {Phase: "rootfs", T: 9}, {Phase: "send", T: 3}})
	if len(ps) != 3 || ps[0].Name != "send" || ps[0].D != 2 || ps[1].D != 2 || ps[2].Name != "rootfs" || ps[2].D != 4 {
		t.Errorf("phases %v", ps)
	}
}
