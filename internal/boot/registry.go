package boot

import "sync"

// registry is an engine's per-function records (fork templates,
// checkpoint images): one per function name, replaced by Prepare, removed
// by Drop, all taken by Close, after which nothing new is kept. Records
// are released by their engine outside the registry's lock.
type registry[E comparable] struct {
	mu     sync.Mutex
	m      map[string]E
	closed bool
}

// get is name's record, or the zero E.
func (r *registry[E]) get(name string) E {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[name]
}

// put makes e name's record and returns the one it replaced (zero if
// none); ok is false, and nothing is kept, once the registry is closed.
func (r *registry[E]) put(name string, e E) (old E, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return old, false
	}
	if r.m == nil {
		r.m = map[string]E{}
	}
	old = r.m[name]
	r.m[name] = e
	return old, true
}

// replace makes e name's record if cur still is: false when cur was
// replaced or dropped meanwhile, or the registry is closed.
func (r *registry[E]) replace(name string, cur, e E) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.m[name] != cur {
		return false
	}
	r.m[name] = e
	return true
}

// take removes name's record and returns it (zero if none).
func (r *registry[E]) take(name string) E {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[name]
	delete(r.m, name)
	return e
}

// close takes every record; the registry keeps nothing from then on.
func (r *registry[E]) close() []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	out := make([]E, 0, len(r.m))
	for _, e := range r.m {
		out = append(out, e)
	}
	r.m = nil
	return out
}
