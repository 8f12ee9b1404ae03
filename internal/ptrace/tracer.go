package ptrace

import (
	"errors"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("ptrace: tracer closed")

// Tracer owns one OS thread from which every ptrace call for its tracees
// is made (the kernel ties a tracee to the thread that attached it).
type Tracer struct {
	reqs      chan func()
	tid       int
	closeOnce sync.Once
	mu        sync.RWMutex
	closed    bool
	done      chan struct{}
}

// NewTracer starts the tracer thread.
func NewTracer() *Tracer {
	t := &Tracer{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan int)
	go func() {
		// Never unlocked: the goroutine ends with the thread, so no other
		// goroutine ever runs on a thread that is some process's tracer.
		runtime.LockOSThread()
		ready <- unix.Gettid()
		for f := range t.reqs {
			f()
		}
		close(t.done)
	}()
	t.tid = <-ready
	return t
}

// TID is the tracer thread's id.
func (t *Tracer) TID() int { return t.tid }

// Do runs f on the tracer thread and returns its error; a panic in f is
// re-raised in the caller. Called from the tracer thread itself (inside
// another Do), it runs f directly, so Tracee methods compose inside one Do
// — which also saves the thread hand-off (~20 µs on this VM) that each
// top-level call pays. f must not call runtime.Goexit (t.Fatal): that
// would end the tracer thread. Do not call Close from inside Do.
func (t *Tracer) Do(f func() error) error {
	if unix.Gettid() == t.tid {
		return f()
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return ErrClosed
	}
	type result struct {
		err      error
		panicked bool
		p        any
	}
	resc := make(chan result, 1)
	t.reqs <- func() {
		r := result{panicked: true}
		defer func() {
			if r.panicked {
				r.p = recover()
			}
			resc <- r
		}()
		r.err = f()
		r.panicked = false
	}
	r := <-resc
	if r.panicked {
		// Re-panic in the caller: the tracer thread lives on.
		panic(r.p)
	}
	return r.err
}

// Close ends the tracer thread after the running Do. The kernel detaches
// any tracee still attached when the thread exits (and kills those seized
// with ExitKill); detach them first.
func (t *Tracer) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.reqs)
		t.mu.Unlock()
		<-t.done
	})
	return nil
}
