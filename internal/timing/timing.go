// Package timing names the measured steps of a boot. Each layer reports
// its own steps as Phases (the sandbox's setup, a fork's batches, a
// restore's plan), and the engines above put them in order with their
// own, so that a boot's latency is split into named parts that add up to
// it (docs/ARCHITECTURE.md, "Boot latency").
package timing

import "time"

// Phase is one named, measured step.
type Phase struct {
	Name string
	D    time.Duration
}

// Clock measures consecutive steps: each Mark appends a Phase lasting
// from the previous Mark (or Start) to now.
type Clock struct {
	last   time.Time
	Phases []Phase
}

// Start returns a clock whose first step starts now.
func Start() *Clock { return &Clock{last: time.Now()} }

// Mark ends the current step, naming it, and starts the next.
func (c *Clock) Mark(name string) {
	now := time.Now()
	c.Phases = append(c.Phases, Phase{name, now.Sub(c.last)})
	c.last = now
}

// Add appends steps measured elsewhere (prefixed, when prefix is not
// empty) and restarts the current step now.
func (c *Clock) Add(prefix string, ps []Phase) {
	for _, p := range ps {
		c.Phases = append(c.Phases, Phase{prefix + p.Name, p.D})
	}
	c.last = time.Now()
}
