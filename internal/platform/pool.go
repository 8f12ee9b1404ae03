package platform

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// pool holds one function's live instances: idle ones kept for reuse
// (newest last) and a count of all live ones (booting, busy, idle).
type pool struct {
	p   *Platform
	fn  Function
	bf  boot.Function
	max int

	mu    sync.Mutex
	idle  []idleInstance
	live  int
	busy  map[*boot.Instance]bool
	state poolState
	dying int            // instances being destroyed off the request path (evictions, releases)
	wg    sync.WaitGroup // instance destructions in flight

	// destroyFn destroys one instance: (*boot.Instance).Destroy, or a
	// test's hook.
	destroyFn func(*boot.Instance) error
}

// poolState is where a function's pool is, changed under pool.mu:
//
//	serving --retire (delete, redeploy, shutdown)--> retired
//	retired --last instance gone--> drained   (the platform forgets it)
type poolState int

const (
	poolServing poolState = iota
	poolRetired
	poolDrained
)

type idleInstance struct {
	inst  *boot.Instance
	since time.Time
}

func (p *Platform) newPool(f Function) *pool {
	return &pool{p: p, fn: f, bf: p.bootFunction(f), max: f.MaxInstances, busy: map[*boot.Instance]bool{},
		destroyFn: (*boot.Instance).Destroy}
}

// acquire returns an instance to serve one invocation: a live idle one
// when mode is auto, else a freshly booted one. Nothing it destroys is on
// the boot's path: an idle instance evicted to make room under
// max_instances (or found dead) is destroyed in the background while the
// boot goes on.
func (pl *pool) acquire(ctx context.Context, mode boot.Mode, o invokeOptions) (*boot.Instance, bool, error) {
	arrived := time.Now()
	pl.mu.Lock()
	if pl.state != poolServing {
		pl.mu.Unlock()
		return nil, false, fmt.Errorf("function %q was deleted or replaced: %w", pl.fn.Name, errdefs.ErrNotFound)
	}
	if mode == boot.ModeAuto {
		for len(pl.idle) > 0 {
			it := pl.idle[len(pl.idle)-1]
			pl.idle = pl.idle[:len(pl.idle)-1]
			if it.inst.State() == boot.StateReady {
				pl.busy[it.inst] = true
				pl.gauges()
				pl.mu.Unlock()
				return it.inst, true, nil
			}
			// Died while idle.
			pl.live--
			pl.destroyLater(it.inst)
		}
	}
	if pl.live >= pl.max {
		if len(pl.idle) == 0 {
			pl.mu.Unlock()
			return nil, false, fmt.Errorf("function %q is running its max_instances (%d) invocations; retry later or raise max_instances: %w", pl.fn.Name, pl.max, errdefs.ErrUnavailable)
		}
		// A fresh boot was asked for: make room by evicting the oldest
		// idle. It never serves again and no longer counts as live; it is
		// destroyed in the background, the boot does not wait for it.
		pl.destroyLater(pl.idle[0].inst)
		pl.idle = pl.idle[1:]
		pl.live--
		pl.p.metrics.evictions.WithLabelValues(pl.fn.Name).Inc()
	}
	pl.live++
	pl.gauges()
	pl.mu.Unlock()

	eng := pl.p.engineFor(mode, pl.fn.Name, o)
	pl.p.metrics.bootWait.WithLabelValues(pl.fn.Name).Observe(time.Since(arrived).Seconds())
	done := pl.p.sizer.start(pl.fn.Name, eng.Mode())
	bctx, cancel := context.WithTimeout(ctx, pl.p.cfg.InitTimeout)
	inst, err := eng.Boot(bctx, pl.bf)
	cancel()
	done()
	if err != nil {
		pl.mu.Lock()
		pl.live--
		pl.gauges()
		pl.mu.Unlock()
		pl.maybeDrained()
		return nil, false, err
	}
	pl.mu.Lock()
	pl.busy[inst] = true
	pl.gauges()
	pl.mu.Unlock()
	return inst, false, nil
}

// release returns an instance after an invocation: kept idle when it is
// healthy, reuse is on and the pool is current; destroyed otherwise, in
// the background (the invocation's response does not wait for it).
func (pl *pool) release(inst *boot.Instance) {
	pl.mu.Lock()
	delete(pl.busy, inst)
	keep := pl.state == poolServing && pl.p.cfg.KeepAlive > 0 && inst.State() == boot.StateReady
	if keep {
		pl.idle = append(pl.idle, idleInstance{inst: inst, since: time.Now()})
	} else {
		pl.live--
		pl.destroyLater(inst)
	}
	pl.gauges()
	pl.mu.Unlock()
}

// destroyLater destroys inst in the background; call with pl.mu held.
// shutdown waits for it, and a retired pool is drained only once it is
// done.
func (pl *pool) destroyLater(inst *boot.Instance) {
	pl.dying++
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		if err := pl.destroyFn(inst); err != nil {
			pl.p.log.Warn("destroy instance", "function", pl.fn.Name, "instance", inst.ID, "err", err)
		}
		pl.mu.Lock()
		pl.dying--
		pl.mu.Unlock()
		pl.maybeDrained()
	}()
}

// reap destroys instances idle since before now-KeepAlive (and dead ones).
func (pl *pool) reap(now time.Time) {
	pl.mu.Lock()
	var gone []*boot.Instance
	kept := pl.idle[:0]
	for _, it := range pl.idle {
		if now.Sub(it.since) > pl.p.cfg.KeepAlive || it.inst.State() == boot.StateDead {
			gone = append(gone, it.inst)
			pl.live--
		} else {
			kept = append(kept, it)
		}
	}
	pl.idle = kept
	pl.gauges()
	pl.mu.Unlock()
	for _, inst := range gone {
		pl.destroy(inst)
	}
}

// retire stops new invocations, destroys idle instances now and busy ones
// as they finish.
func (pl *pool) retire() {
	pl.mu.Lock()
	if pl.state == poolServing {
		pl.state = poolRetired
	}
	pl.mu.Unlock()
	pl.drain()
	pl.maybeDrained()
}

// shutdown destroys every instance, busy ones included, and waits.
func (pl *pool) shutdown() {
	pl.retire()
	pl.mu.Lock()
	busy := make([]*boot.Instance, 0, len(pl.busy))
	for inst := range pl.busy {
		busy = append(busy, inst)
	}
	pl.mu.Unlock()
	for _, inst := range busy {
		inst.Destroy()
	}
	pl.wg.Wait()
}

func (pl *pool) destroy(inst *boot.Instance) {
	pl.wg.Add(1)
	defer pl.wg.Done()
	if err := pl.destroyFn(inst); err != nil {
		pl.p.log.Warn("destroy instance", "function", pl.fn.Name, "instance", inst.ID, "err", err)
	}
}

func (pl *pool) maybeDrained() {
	pl.mu.Lock()
	done := pl.state == poolRetired && pl.live == 0 && pl.dying == 0
	if done {
		pl.state = poolDrained
	}
	pl.mu.Unlock()
	if done {
		pl.p.poolDrained(pl)
	}
}

// drain destroys the idle instances and returns how many.
func (pl *pool) drain() int {
	pl.mu.Lock()
	idle := pl.idle
	pl.idle = nil
	pl.live -= len(idle)
	pl.gauges()
	pl.mu.Unlock()
	for _, it := range idle {
		pl.destroy(it.inst)
	}
	return len(idle)
}

// list returns the live instances (busy and idle).
func (pl *pool) list() []*boot.Instance {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	out := make([]*boot.Instance, 0, len(pl.busy)+len(pl.idle))
	for inst := range pl.busy {
		out = append(out, inst)
	}
	for _, it := range pl.idle {
		out = append(out, it.inst)
	}
	return out
}

// gauges publishes the instance counts; call with pl.mu held.
func (pl *pool) gauges() {
	if pl.state != poolServing {
		return
	}
	pl.p.metrics.instances.WithLabelValues(pl.fn.Name, "busy").Set(float64(len(pl.busy)))
	pl.p.metrics.instances.WithLabelValues(pl.fn.Name, "idle").Set(float64(len(pl.idle)))
}
