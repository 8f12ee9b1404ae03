package platform

import (
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/sandbox"
)

// The pools of pre-built envs (fork) and prepared restorers (warm, cold)
// size themselves from the boot rate they serve, so that in steady state
// no boot builds its env on demand (12-14 ms here, competing with the
// boots themselves). Per function and pool:
//
//   - rate R: boots started in the last sizeWindow, per second;
//   - B: the pool's mean build time (sandbox.PoolStats.MeanBuild);
//   - R·B envs are taken while one is rebuilt (Little's law), so
//     workers = ⌈2·R·B⌉ builders keep up with twice the rate, and
//     size = peak boots in flight + ⌈2·R·B⌉ + 1 absorbs a burst of every
//     boot in flight at once while the builders catch up.
//
// Growing is applied at once, on the boot that raises the target;
// shrinking waits until the target has stayed lower for shrinkAfter, so a
// pause between bursts does not throw the envs away. Config.EnvPoolSize
// and EnvPoolWorkers are the floor, EnvPoolMax the ceiling.
const (
	sizeWindow   = 2 * time.Second
	shrinkAfter  = 10 * time.Second
	defaultBuild = 15 * time.Millisecond // before the pool has built one
	maxWorkers   = 16
)

// poolKind names the pool a boot mode takes from.
type poolKind string

const (
	forkPool    poolKind = "fork"    // the template's envs
	restorePool poolKind = "restore" // the image's restorers (warm, cold)
)

func poolOf(m boot.Mode) (poolKind, bool) {
	switch m {
	case boot.ModeFork:
		return forkPool, true
	case boot.ModeWarm, boot.ModeCold:
		return restorePool, true
	}
	return "", false
}

// sizer tracks the demand on every pool and resizes them.
type sizer struct {
	p     *Platform
	fixed bool // Config.FixedEnvPools: never resize
	min   int
	minW  int
	max   int

	mu  sync.Mutex
	dem map[demandKey]*demand
}

type demandKey struct {
	fn   string
	kind poolKind
}

// demand is one pool's recent boots and the target applied to it.
type demand struct {
	starts   [256]time.Time // ring of recent boot starts
	next     int
	inflight int
	peak     int // most boots in flight within the window
	peakAt   time.Time
	size     int // applied; 0 = nothing applied yet
	workers  int
	lowSince time.Time // when the wanted target first fell below the applied one
}

func newSizer(p *Platform, cfg Config) *sizer {
	minW := cfg.EnvPoolWorkers
	if minW <= 0 {
		minW = max(runtime.NumCPU()/4, 1)
	}
	size := cfg.EnvPoolSize
	if size <= 0 {
		size = 2
	}
	return &sizer{p: p, fixed: cfg.FixedEnvPools, min: size, minW: minW, max: max(cfg.EnvPoolMax, size), dem: map[demandKey]*demand{}}
}

// start records a boot of fn in mode m starting now; call the returned
// func when it has its env (or failed).
func (s *sizer) start(fn string, m boot.Mode) func() {
	kind, ok := poolOf(m)
	if !ok || s.fixed {
		return func() {}
	}
	k := demandKey{fn, kind}
	now := time.Now()
	s.mu.Lock()
	d := s.dem[k]
	if d == nil {
		d = &demand{}
		s.dem[k] = d
	}
	d.starts[d.next%len(d.starts)] = now
	d.next++
	d.inflight++
	if d.inflight >= d.peak || now.Sub(d.peakAt) > sizeWindow {
		d.peak, d.peakAt = d.inflight, now
	}
	s.mu.Unlock()
	s.adjust(k, now, false)
	return func() {
		s.mu.Lock()
		d.inflight--
		s.mu.Unlock()
	}
}

// tick re-evaluates every pool: shrinks those whose demand fell and
// re-applies the others' targets (a rebuilt template's fresh pool starts
// at the floor).
func (s *sizer) tick(now time.Time) {
	if s.fixed {
		return
	}
	s.mu.Lock()
	keys := make([]demandKey, 0, len(s.dem))
	for k := range s.dem {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.adjust(k, now, true)
	}
}

// target is the size and workers applied to fn's pool of kind (0, 0
// when none yet).
func (s *sizer) target(fn string, kind poolKind) (size, workers int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.dem[demandKey{fn, kind}]; d != nil {
		return d.size, d.workers
	}
	return 0, 0
}

// forget drops fn's demand (deleted function).
func (s *sizer) forget(fn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.dem {
		if k.fn == fn {
			delete(s.dem, k)
		}
	}
}

// want computes the target of a pool with demand d and mean build time
// build, at now; call with s.mu held.
func (s *sizer) want(d *demand, build time.Duration, now time.Time) (size, workers int) {
	n := 0
	for _, t := range d.starts {
		if !t.IsZero() && now.Sub(t) <= sizeWindow {
			n++
		}
	}
	rate := float64(n) / sizeWindow.Seconds()
	if build <= 0 {
		build = defaultBuild
	}
	need := int(math.Ceil(2 * rate * build.Seconds()))
	peak := d.inflight
	if now.Sub(d.peakAt) <= sizeWindow {
		peak = max(peak, d.peak)
	}
	size = min(max(peak+need+1, s.min), s.max)
	workers = min(max(need, s.minW), maxWorkers)
	return size, workers
}

// adjust applies k's target: growth at once, shrinking once it has held
// for shrinkAfter; reapply sets the current target again even when it did
// not change.
func (s *sizer) adjust(k demandKey, now time.Time, reapply bool) {
	st, ok := s.stats(k)
	if !ok {
		return // no pool yet (template or image still building)
	}
	s.mu.Lock()
	d := s.dem[k]
	if d == nil {
		s.mu.Unlock()
		return
	}
	size, workers := s.want(d, st.MeanBuild, now)
	apply := false
	switch {
	case size > d.size || workers > d.workers:
		size, workers = max(size, d.size), max(workers, d.workers)
		d.lowSince = time.Time{}
		apply = true
	case size < d.size || workers < d.workers:
		if d.lowSince.IsZero() {
			d.lowSince = now
		} else if now.Sub(d.lowSince) >= shrinkAfter {
			d.lowSince = time.Time{}
			apply = true
		}
		if !apply {
			size, workers = d.size, d.workers
		}
	}
	if !apply && !reapply {
		s.mu.Unlock()
		return
	}
	d.size, d.workers = size, workers
	s.mu.Unlock()
	if s.resize(k, size, workers) {
		s.p.metrics.poolTarget.WithLabelValues(k.fn, string(k.kind), "size").Set(float64(size))
		s.p.metrics.poolTarget.WithLabelValues(k.fn, string(k.kind), "workers").Set(float64(workers))
	}
}

func (s *sizer) stats(k demandKey) (sandbox.PoolStats, bool) {
	if k.kind == forkPool {
		return s.p.fork.PoolStats(k.fn)
	}
	return s.p.restore.PoolStats(k.fn)
}

func (s *sizer) resize(k demandKey, size, workers int) bool {
	if k.kind == forkPool {
		return s.p.fork.Resize(k.fn, size, workers)
	}
	return s.p.restore.Resize(k.fn, size, workers)
}
