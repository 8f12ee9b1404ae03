package sandbox

import (
	"sync"
	"testing"
	"time"
)

// TestPoolHedgedGet: a Get on an empty pool while a builder is at work
// takes the builder's env when it is done first (fromPool), and its own
// build, finished later, refills the pool instead of being lost.
func TestPoolHedgedGet(t *testing.T) {
	var mu sync.Mutex
	next := 0
	gates := map[int]chan struct{}{} // build n waits for gates[n] when set
	started := make(chan int, 16)
	gate := func(n int) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		if gates[n] == nil {
			gates[n] = make(chan struct{})
		}
		return gates[n]
	}
	build := func() (int, error) {
		mu.Lock()
		next++
		n := next
		mu.Unlock()
		started <- n
		<-gate(n)
		return n, nil
	}
	released := make(chan int, 16)
	p := NewPool(1, 1, build, func(n int) error { released <- n; return nil })
	defer p.Close()
	close(gate(1))
	if n := <-started; n != 1 {
		t.Fatalf("first build %d", n)
	}
	waitPool(t, p, func(s PoolStats) bool { return s.Ready == 1 })
	if e, fromPool, err := p.Get(); e != 1 || !fromPool || err != nil {
		t.Fatalf("Get = %d, %v, %v; want the ready env 1", e, fromPool, err)
	}
	if n := <-started; n != 2 { // the refill, held at its gate
		t.Fatalf("refill build %d", n)
	}
	type got struct {
		e        int
		fromPool bool
		err      error
	}
	res := make(chan got, 1)
	go func() {
		e, fromPool, err := p.Get()
		res <- got{e, fromPool, err}
	}()
	if n := <-started; n != 3 { // the Get's own build, held too
		t.Fatalf("own build %d", n)
	}
	close(gate(2)) // the builder's env is done first
	if r := <-res; r.e != 2 || !r.fromPool || r.err != nil {
		t.Fatalf("hedged Get = %+v; want the builder's env 2 from the pool", r)
	}
	close(gate(3))
	waitPool(t, p, func(s PoolStats) bool { return s.Ready == 1 })
	if e, fromPool, err := p.Get(); e != 3 || !fromPool || err != nil {
		t.Fatalf("Get = %d, %v, %v; want the hedge's own env 3, kept by the pool", e, fromPool, err)
	}
	if st := p.Stats(); st.OnDemand != 0 || st.Taken != 3 {
		t.Errorf("stats %+v; want 3 taken from the pool, none on demand", st)
	}
	// Close waits for the refill in progress (build 4) and releases it.
	<-started
	close(gate(4))
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-released:
		if n != 4 {
			t.Errorf("released %d, want 4", n)
		}
	default:
		// build 4 may have been handed out as ready before Close: then it
		// is in the pool's ready list, released by Close.
		t.Errorf("Close released nothing; stats %+v", p.Stats())
	}
}

func waitPool[T any](t *testing.T, p *Pool[T], ok func(PoolStats) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(p.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("pool never reached the state: %+v", p.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}
