package sandbox

import (
	"errors"
	"fmt"
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
	size     int
	build    func() (T, error)
	release  func(T) error
	inflight int // background builds running

	mu         sync.Mutex
	ready      []T
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
	p := &Pool[T]{size: max(size, 0), build: build, release: release, wake: make(chan struct{}, workers),
		stop: make(chan struct{})}
	for range workers {
		p.wg.Add(1)
		go p.refill()
	}
	return p
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
		p.ready = append(p.ready, e)
		p.st.Built++
		p.mu.Unlock()
	}
}

// Get returns a ready env (fromPool true), or builds one on the spot when
// the pool is empty (fromPool false: count it as a cold env in metrics).
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
