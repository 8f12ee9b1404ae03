package boot

import "github.com/catalyzer/catalyzer/internal/sandbox"

// Pool sizing from outside the engines: the platform watches each
// function's boot rate and sets how many pre-built envs (fork) or
// prepared restorers (warm, cold) its pool keeps ready and how many it
// builds in parallel (sandbox.Pool.SetSize, SetWorkers). A pool that is
// rebuilt (a template that died and came back) starts at Pools' size
// again until the next Resize.

// Resize sets the env pool of name's template to keep size envs ready,
// built by workers in parallel. It reports false when name has no built
// template (nothing to resize yet).
func (f *Fork) Resize(name string, size, workers int) bool {
	f.init()
	t := f.tpls.get(name)
	if t == nil || !f.Ready(name) || t.pool == nil {
		return false
	}
	t.pool.SetSize(size)
	t.pool.SetWorkers(workers)
	return true
}

// Resize sets the restorer pool of name's image (warm and cold boot) to
// keep size restorers ready, built by workers in parallel. It reports
// false when name has no built image.
func (r *Restore) Resize(name string, size, workers int) bool {
	r.init()
	e := r.imgs.get(name)
	if e == nil || r.Status(name).State != Built || e.pool == nil {
		return false
	}
	e.pool.SetSize(size)
	e.pool.SetWorkers(workers)
	return true
}

// PoolStats returns the restorer pool statistics of name's image.
func (r *Restore) PoolStats(name string) (sandbox.PoolStats, bool) {
	r.init()
	e := r.imgs.get(name)
	if e == nil || r.Status(name).State != Built || e.pool == nil {
		return sandbox.PoolStats{}, false
	}
	return e.pool.Stats(), true
}
