package timing

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	c := Start()
	time.Sleep(2 * time.Millisecond)
	c.Mark("a")
	c.Add("x-", []Phase{{"b", time.Second}})
	c.Mark("c")
	if len(c.Phases) != 3 || c.Phases[0].Name != "a" || c.Phases[0].D < 2*time.Millisecond ||
		c.Phases[1] != (Phase{"x-b", time.Second}) || c.Phases[2].Name != "c" || c.Phases[2].D >= time.Second {
		t.Fatalf("phases %v", c.Phases)
	}
}
