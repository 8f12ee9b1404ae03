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
	wg    sync.WaitGroup // instance destructions in flight
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
	return &pool{p: p, fn: f, bf: p.bootFunction(f), max: f.MaxInstances, busy: map[*boot.Instance]bool{}}
}

// acquire returns an instance to serve one invocation: a live idle one
// when mode is auto, else a freshly booted one.
func (pl *pool) acquire(ctx context.Context, mode boot.Mode, o invokeOptions) (*boot.Instance, bool, error) {
	var evict *boot.Instance
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
			pl.destroy(it.inst)
		}
	}
	if pl.live >= pl.max {
		if len(pl.idle) == 0 {
			pl.mu.Unlock()
			return nil, false, fmt.Errorf("function %q is running its max_instances (%d) invocations; retry later or raise max_instances: %w", pl.fn.Name, pl.max, errdefs.ErrUnavailable)
		}
		// A fresh boot was asked for: make room by evicting the oldest idle.
		evict = pl.idle[0].inst
		pl.idle = pl.idle[1:]
		pl.live--
	}
	pl.live++
	pl.gauges()
	pl.mu.Unlock()
	if evict != nil {
		pl.destroy(evict)
	}

	eng := pl.p.engineFor(mode, pl.fn.Name, o)
	bctx, cancel := context.WithTimeout(ctx, pl.p.cfg.InitTimeout)
	inst, err := eng.Boot(bctx, pl.bf)
	cancel()
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
// healthy, reuse is on and the pool is current; destroyed otherwise.
func (pl *pool) release(inst *boot.Instance) {
	pl.mu.Lock()
	delete(pl.busy, inst)
	keep := pl.state == poolServing && pl.p.cfg.KeepAlive > 0 && inst.State() == boot.StateReady
	if keep {
		pl.idle = append(pl.idle, idleInstance{inst: inst, since: time.Now()})
	} else {
		pl.live--
	}
	pl.gauges()
	pl.mu.Unlock()
	if !keep {
		pl.destroy(inst)
		pl.maybeDrained()
	}
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
	if err := inst.Destroy(); err != nil {
		pl.p.log.Warn("destroy instance", "function", pl.fn.Name, "instance", inst.ID, "err", err)
	}
}

func (pl *pool) maybeDrained() {
	pl.mu.Lock()
	done := pl.state == poolRetired && pl.live == 0
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
