package sandbox

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Pool backoff after a failed build: doubling from the first to the max.
var (
	PoolBackoffMin = 10 * time.Millisecond
	PoolBackoffMax = 5 * time.Second
)

// PoolStats is a snapshot of a Pool's counters.
type PoolStats struct {
	Ready     int           // envs ready now
	Built     uint64        // envs built in the background
	Taken     uint64        // Gets served from the pool
	OnDemand  uint64        // Gets that built an env on the spot (pool empty)
	Failures  uint64        // failed builds, background and on demand
	MeanBuild time.Duration // mean duration of a successful build (the refill cost per env)
}

// Pool keeps size things ready (envs, or restorers already inside their
// env), built by build in background workers (each building one at a
// time), with backoff (PoolBackoffMin doubling to PoolBackoffMax) after a
// failure; release frees one that is never handed out. Its methods are
// safe for concurrent use.
type Pool[T any] struct {
	size     int // under mu (SetSize)
	build    func() (T, error)
	release  func(T) error
	inflight int // background builds running
	workers  int // refill goroutines wanted (SetWorkers); under mu
	running  int // refill goroutines running; under mu

	mu         sync.Mutex
	ready      []T
	waiters    []*hedge[T] // Gets on an empty pool waiting for a builder's env, oldest first
	closed     bool
	st         PoolStats
	buildTotal time.Duration
	builds     uint64

	wake chan struct{} // a Get took one: refill
	stop chan struct{}
	wg   sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// NewPool starts a pool that keeps size envs ready (size 0: every Get
// builds on demand), refilled by workers builders in parallel (at least
// one): one builder refills ~130 envs/s on a 16-core host, less than fork
// boot consumes, so size the workers to the cores that can be spared.
func NewPool[T any](size, workers int, build func() (T, error), release func(T) error) *Pool[T] {
	workers = max(workers, 1)
	p := &Pool[T]{size: max(size, 0), build: build, release: release, wake: make(chan struct{}, maxPoolWorkers),
		stop: make(chan struct{}), workers: workers, running: workers}
	for range workers {
		p.wg.Add(1)
		go p.refill()
	}
	return p
}

// maxPoolWorkers bounds SetWorkers.
const maxPoolWorkers = 64

// SetSize changes how many are kept ready. Growing wakes the builders;
// shrinking releases the surplus ready ones (in the background). Safe
// for concurrent use; a no-op on a closed pool.
func (p *Pool[T]) SetSize(size int) {
	size = max(size, 0)
	p.mu.Lock()
	if p.closed || size == p.size {
		p.mu.Unlock()
		return
	}
	grow := size > p.size
	p.size = size
	var surplus []T
	if n := len(p.ready); n > size {
		surplus = append(surplus, p.ready[size:]...)
		clear(p.ready[size:])
		p.ready = p.ready[:size]
	}
	if len(surplus) > 0 {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if grow {
		p.kick()
	}
	if len(surplus) > 0 {
		go func() {
			defer p.wg.Done()
			for _, e := range surplus {
				_ = p.release(e)
			}
		}()
	}
}

// SetWorkers changes how many builders refill the pool in parallel (1
// to 64): extra ones start at once, surplus ones stop after their build
// in progress. A no-op on a closed pool.
func (p *Pool[T]) SetWorkers(n int) {
	n = min(max(n, 1), maxPoolWorkers)
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.workers = n
	start := max(n-p.running, 0)
	p.running += start
	p.wg.Add(start)
	p.mu.Unlock()
	for range start {
		go p.refill()
	}
	p.kick() // surplus ones notice they are surplus
}

// Target is the size and workers the pool is set to.
func (p *Pool[T]) Target() (size, workers int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.size, p.workers
}

// kick wakes every idle builder (without blocking).
func (p *Pool[T]) kick() {
	for range maxPoolWorkers {
		select {
		case p.wake <- struct{}{}:
		default:
			return
		}
	}
}

// timedBuild builds one env and accounts for it.
func (p *Pool[T]) timedBuild() (T, error) {
	t := time.Now()
	e, err := p.build()
	d := time.Since(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.st.Failures++
		var zero T
		return zero, err
	}
	p.builds++
	p.buildTotal += d
	return e, nil
}

func (p *Pool[T]) refill() {
	defer p.wg.Done()
	backoff := time.Duration(0)
	for {
		p.mu.Lock()
		if p.running > p.workers { // SetWorkers lowered the count
			p.running--
			p.mu.Unlock()
			return
		}
		need := !p.closed && len(p.ready)+p.inflight < p.size
		if need {
			p.inflight++
		}
		p.mu.Unlock()
		if !need {
			select {
			case <-p.stop:
				return
			case <-p.wake:
				continue
			}
		}
		if backoff > 0 {
			select {
			case <-p.stop:
				p.mu.Lock()
				p.inflight--
				p.mu.Unlock()
				return
			case <-time.After(backoff):
			}
		}
		e, err := p.timedBuild()
		p.mu.Lock()
		p.inflight--
		p.mu.Unlock()
		if err != nil {
			backoff = min(max(2*backoff, PoolBackoffMin), PoolBackoffMax)
			continue
		}
		backoff = 0
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			_ = p.release(e)
			return
		}
		p.st.Built++
		p.deliver(e)
		p.mu.Unlock()
	}
}

// hedge is a Get on an empty pool racing its own build against the
// builds in progress: it takes whichever env comes first, and the other
// one goes to the pool.
type hedge[T any] struct {
	pooled chan T              // a builder's env, handed over by deliver
	own    chan buildResult[T] // its own build's, when that came first
	done   bool                // under mu: one of the two was handed over
}

type buildResult[T any] struct {
	e   T
	err error
}

// deliver hands a built env to the oldest waiting Get, or keeps it
// ready. With mu held.
func (p *Pool[T]) deliver(e T) {
	for len(p.waiters) > 0 {
		h := p.waiters[0]
		p.waiters = p.waiters[1:]
		if !h.done {
			h.done = true
			h.pooled <- e
			return
		}
	}
	p.ready = append(p.ready, e)
}

// getHedged is Get on an empty pool with a build in progress that no
// other Get waits for (mu held, released here): the pool's workers
// build envs one after the other, so the one in progress is usually
// done before a build started now; on 2 cores a build on demand took
// ~100 ms under load, and the boot waited for all of it.
func (p *Pool[T]) getHedged() (T, bool, error) {
	h := &hedge[T]{pooled: make(chan T, 1), own: make(chan buildResult[T], 1)}
	p.waiters = append(p.waiters, h)
	p.wg.Add(1) // Close waits for the own build too
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		e, err := p.timedBuild()
		p.mu.Lock()
		if !h.done {
			h.done = true
			p.waiters = slices.DeleteFunc(p.waiters, func(w *hedge[T]) bool { return w == h })
			if err == nil {
				p.st.OnDemand++
			}
			p.mu.Unlock()
			h.own <- buildResult[T]{e, err}
			return
		}
		// The Get took a builder's env: this one refills the pool.
		if err == nil && !p.closed && len(p.ready) < p.size {
			p.st.Built++
			p.deliver(e)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if err == nil {
			_ = p.release(e)
		}
	}()
	select {
	case e := <-h.pooled:
		p.mu.Lock()
		p.st.Taken++
		p.mu.Unlock()
		return e, true, nil
	case r := <-h.own:
		if r.err != nil {
			return r.e, false, fmt.Errorf("env pool: build on demand: %w", r.err)
		}
		return r.e, false, nil
	}
}

// Get returns a ready env (fromPool true), or builds one on the spot when
// the pool is empty (fromPool false: count it as a cold env in metrics).
// While a builder has an env in progress that no other Get waits for,
// Get takes that one if it is done before its own (fromPool true; its
// own then refills the pool).
// A closed pool is errdefs.ErrShutdown. The caller owns the env: Adopt
// or Release it.
func (p *Pool[T]) Get() (e T, fromPool bool, err error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return e, false, fmt.Errorf("env pool: closed: %w", errdefs.ErrShutdown)
	}
	if n := len(p.ready); n > 0 {
		var zero T
		e = p.ready[0]
		p.ready[0] = zero
		p.ready = p.ready[1:]
		p.st.Taken++
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
		return e, true, nil
	}
	if p.inflight > len(p.waiters) {
		return p.getHedged()
	}
	p.st.OnDemand++
	p.mu.Unlock()
	e, err = p.timedBuild()
	if err != nil {
		return e, false, fmt.Errorf("env pool: build on demand: %w", err)
	}
	return e, false, nil
}

// Stats returns the pool's counters.
func (p *Pool[T]) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.st
	s.Ready = len(p.ready)
	if p.builds > 0 {
		s.MeanBuild = p.buildTotal / time.Duration(p.builds)
	}
	return s
}

// Close stops refilling (waiting for a build in progress) and releases
// every ready env. Envs already handed out are the callers'. It is
// idempotent.
func (p *Pool[T]) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.stop)
		p.wg.Wait()
		p.mu.Lock()
		ready := p.ready
		p.ready = nil
		p.mu.Unlock()
		var errs []error
		for _, e := range ready {
			errs = append(errs, p.release(e))
		}
		if err := errors.Join(errs...); err != nil {
			p.closeErr = fmt.Errorf("env pool: close: %w", err)
		}
	})
	return p.closeErr
}
