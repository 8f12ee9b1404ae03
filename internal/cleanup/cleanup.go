// Package cleanup is a stack of undo actions so that half-built setup is
// always torn down.
//
//	c := cleanup.Make(func() { os.RemoveAll(dir) })
//	defer c.Clean()           // runs unless Release was called
//	c.Add(func() { g.Delete() })
//	...
//	c.Release()               // success: keep everything
//
// Actions run in reverse order of addition, like defers.
package cleanup

// Cleanup is a LIFO stack of undo actions. The zero value is ready to use.
type Cleanup struct {
	fns []func()
}

// Make returns a Cleanup holding f (if non-nil).
func Make(f func()) Cleanup {
	c := Cleanup{}
	if f != nil {
		c.Add(f)
	}
	return c
}

// Add pushes f onto the stack.
func (c *Cleanup) Add(f func()) { c.fns = append(c.fns, f) }

// Clean runs every action in reverse order and empties the stack.
func (c *Cleanup) Clean() {
	for i := len(c.fns) - 1; i >= 0; i-- {
		c.fns[i]()
	}
	c.fns = nil
}

// Release empties the stack without running anything, and returns a
// function that runs what was released (to hand ownership to someone else).
func (c *Cleanup) Release() func() {
	fns := c.fns
	c.fns = nil
	return func() {
		for i := len(fns) - 1; i >= 0; i-- {
			fns[i]()
		}
	}
}
