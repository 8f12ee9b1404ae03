package sandbox

import (
	"sort"
	"time"

	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// phasesOf turns marks (CLOCK_MONOTONIC ns, the daemon's and the helper's)
// into consecutive phases from t0, in time order.
func phasesOf(t0 int64, marks []initwire.Mark) []timing.Phase {
	sort.SliceStable(marks, func(i, j int) bool { return marks[i].T < marks[j].T })
	out := make([]timing.Phase, 0, len(marks))
	prev := t0
	for _, m := range marks {
		out = append(out, timing.Phase{Name: m.Phase, D: time.Duration(m.T - prev)})
		prev = m.T
	}
	return out
}

// phaseClock collects the marks of one setup: the host's own (Now), then
// the helper's (Add).
type phaseClock struct {
	t0    int64
	marks []initwire.Mark
}

func newPhaseClock() *phaseClock { return &phaseClock{t0: initwire.MonoNow()} }

// Now marks the end of the named phase.
func (c *phaseClock) Now(name string) {
	c.marks = append(c.marks, initwire.Mark{Phase: name, T: initwire.MonoNow()})
}

// Add takes the helper's marks.
func (c *phaseClock) Add(m []initwire.Mark) { c.marks = append(c.marks, m...) }

// Phases is the setup so far as consecutive phases.
func (c *phaseClock) Phases() []timing.Phase { return phasesOf(c.t0, c.marks) }
