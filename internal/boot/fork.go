package boot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/kobj"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/sfork"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// forkChannelFD is the template's fd of its fork channel (after the
// control channel on fd 3).
const forkChannelFD = 4

// Fork boots instances by forking a live, frozen template of the
// function (package sfork) into a sandbox env taken from a pool of
// pre-built envs. Templates are built in the background by Prepare and
// rebuilt when they die.
type Fork struct {
	// Scratch boots the templates.
	Scratch *Scratch
	// Pools sizes the pool of pre-built envs kept per function.
	Pools Pools
	// OnEnv, if set, is told how each fork got its env (from the pool or
	// built on the spot because the pool was empty).
	OnEnv func(function string, fromPool bool)
	// OnTemplate, if set, is told when a template is ready or failed.
	OnTemplate func(function string, err error)

	initOnce sync.Once
	tr       *ptrace.Tracer
	freeing  sync.WaitGroup // released templates waiting for their last instance
	tpls     registry[*template]
}

// template is one function's frozen template and its env pool.
type template struct {
	fn       Function
	built    chan struct{} // closed once inst/tpl/pool or err are set
	replaced chan struct{} // closed when keep replaced this record by a fresh one
	inst     *Instance
	tpl      *sfork.Template
	users    *sandbox.UserNS // the template's: owns its envs' namespaces
	pool     *sandbox.Pool[*sandbox.Env]
	err      error
	stop     chan struct{} // closed by Drop

	// Fork instances die with their template (their PID namespaces are
	// nested in its), so a dropped template lives on, frozen, until the
	// last of them has ended: redeploy and delete let busy ones finish.
	refMu   sync.Mutex
	live    int  // fork instances alive (and forks under way)
	retired bool // released: no new forks; freed once live is 0
	free    func()
	freeing *sync.WaitGroup // the engine's: Close waits for deferred frees
}

// ErrNoTemplate: the function has no template (not prepared, or its build
// failed — the error says why).
var ErrNoTemplate = errors.New("no template")

func (f *Fork) Mode() Mode { return ModeFork }

func (f *Fork) init() {
	f.initOnce.Do(func() {
		f.tr = ptrace.NewTracer()
	})
}

// Prepare builds fn's template in the background (replacing any older
// one) and keeps it alive: a template that dies is rebuilt.
func (f *Fork) Prepare(fn Function) {
	f.init()
	t := &template{fn: fn, built: make(chan struct{}), replaced: make(chan struct{}), stop: make(chan struct{}), freeing: &f.freeing}
	old, ok := f.tpls.put(fn.Name, t)
	if !ok {
		return
	}
	if old != nil {
		go old.close()
	}
	go f.keep(t)
}

// Drop destroys fn's template.
func (f *Fork) Drop(name string) {
	f.init()
	if t := f.tpls.take(name); t != nil {
		t.close()
	}
}

// Status is where name's template stands.
func (f *Fork) Status(name string) BuildStatus {
	f.init()
	t := f.tpls.get(name)
	return t.status()
}

// status is t's BuildStatus (NotBuilt for nil).
func (t *template) status() BuildStatus {
	if t == nil {
		return BuildStatus{State: NotBuilt}
	}
	select {
	case <-t.built:
	default:
		return BuildStatus{State: Building}
	}
	switch {
	case t.err != nil:
		return BuildStatus{State: BuildFailed, Err: t.err}
	case !t.tpl.Alive():
		return BuildStatus{State: Building} // dead; keep is rebuilding it
	}
	return BuildStatus{State: Built}
}

// Wait waits until name's template is no longer Building (built, failed,
// or dropped) or ctx ends, and returns where it stands then. A template
// that dies while waited for is waited for again, rebuilt.
func (f *Fork) Wait(ctx context.Context, name string) (BuildStatus, error) {
	f.init()
	for {
		t := f.tpls.get(name)
		if t == nil {
			return BuildStatus{State: NotBuilt}, nil
		}
		select {
		case <-t.built:
		case <-ctx.Done():
			return BuildStatus{State: Building}, ctx.Err()
		}
		if st := t.status(); st.State != Building {
			return st, nil
		}
		// Dead: keep swaps in a fresh record; wait for that.
		select {
		case <-t.replaced:
		case <-t.stop:
		case <-ctx.Done():
			return BuildStatus{State: Building}, ctx.Err()
		}
	}
}

// WaitBuilt is Wait that also waits through failed builds keep will
// retry (all but an unsupported runtime and a broken function), so a
// template that fails at first and then builds is seen built: it returns
// Built, a failure that is final, or where it stands when ctx ends.
func (f *Fork) WaitBuilt(ctx context.Context, name string) (BuildStatus, error) {
	for {
		st, err := f.Wait(ctx, name)
		if err != nil || st.State != BuildFailed || !retried(st.Err) {
			return st, err
		}
		t := f.tpls.get(name)
		if t == nil {
			return BuildStatus{State: NotBuilt}, nil
		}
		if t.status().State != BuildFailed {
			continue // already replaced
		}
		select {
		case <-t.replaced:
		case <-t.stop:
			return st, nil
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// retried reports whether keep builds a template again after err.
func retried(err error) bool {
	return !errors.Is(err, errdefs.ErrNotSupported) && !errors.Is(err, errdefs.ErrFunction)
}

// Ready reports whether name has a live template to fork now.
func (f *Fork) Ready(name string) bool { return f.Status(name).State == Built }

// keep builds t, and rebuilds it whenever its process dies, until Drop.
func (f *Fork) keep(t *template) {
	backoff := 100 * time.Millisecond
	for {
		err := f.build(t)
		if f.OnTemplate != nil {
			f.OnTemplate(t.fn.Name, err)
		}
		if err != nil && !retried(err) {
			return // a multi-threaded runtime or a broken init: retrying will not help
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			select {
			case <-t.stop:
				return
			case <-t.inst.Dead():
			}
		} else {
			select {
			case <-t.stop:
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
		}
		// Dead or failed: start over with a fresh template record so that
		// waiters of the old one see its error.
		nt := &template{fn: t.fn, built: make(chan struct{}), replaced: make(chan struct{}), stop: t.stop, freeing: t.freeing}
		if !f.tpls.replace(t.fn.Name, t, nt) {
			return // dropped, replaced or closed meanwhile: its owner releases it
		}
		close(t.replaced)
		t.release()
		t = nt
	}
}

// build boots t's template instance, freezes it and starts its env pool.
func (f *Fork) build(t *template) (err error) {
	defer func() {
		t.err = err
		close(t.built)
	}()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("template %s: fork channel: %w", t.fn.Name, err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "fork-channel"), os.NewFile(uintptr(fds[1]), "fork-channel-template")
	defer theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return fmt.Errorf("template %s: fork channel: %w", t.fn.Name, err)
	}
	cl := cleanup.Make(func() { c.Close() })
	defer cl.Clean()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The template runs tenant code (init) with CAP_SYS_ADMIN in its
	// permitted set, for its forks' join: only ever in a user namespace
	// of its own, where that capability reaches nothing of the host.
	fn := t.fn
	fn.UserNS = true
	inst, err := f.Scratch.boot(ctx, fn, true, []*os.File{theirs})
	if err != nil {
		return fmt.Errorf("template %s: %w", t.fn.Name, err)
	}
	cl.Add(func() { inst.Destroy() })
	// Threads and all: each fork re-creates the template's threads and
	// gets its own copy of its event objects.
	tpl, err := sfork.FreezeWith(f.tr, inst.Pid(), c.(*net.UnixConn), forkChannelFD,
		sfork.FreezeOptions{Threads: true, CopyObjects: true, Skip: privateFDs})
	if err != nil {
		return fmt.Errorf("template %s: %w", t.fn.Name, notForkable(err))
	}
	cl.Add(func() { tpl.Close() })
	// Frozen, it allocates nothing; what its forks' clones charge to it
	// must never OOM-kill it (that would end every fork instance).
	if err := inst.sb.LiftMemoryLimit(); err != nil {
		return fmt.Errorf("template %s: %w", t.fn.Name, err)
	}
	users, err := inst.sb.OpenUserNS()
	if err != nil {
		return fmt.Errorf("template %s: %w", t.fn.Name, err)
	}
	cl.Add(func() { users.Close() })
	upper := inst.sb.UpperDir()
	pool := sandbox.NewPool(f.Pools.size(), f.Pools.workers(), func() (*sandbox.Env, error) {
		id := NewID("fk")
		cfg := sandbox.EnvConfig{
			ID:           id,
			Hostname:     id,
			Lowers:       []string{upper},
			Rootfs:       f.Scratch.Rootfs,
			Binds:        []sandbox.Bind{{Source: fn.CodeDir, Target: CodeMount}, {Source: f.Scratch.AgentDir, Target: AgentMount}},
			Network:      sandbox.NetworkNone,
			Limits:       Limits(fn),
			CgroupParent: f.Scratch.CgroupParent,
			UserNS:       users,
		}
		if fn.NetworkHost {
			cfg.Network = sandbox.NetworkHost
		}
		return sandbox.NewEnv(cfg)
	}, (*sandbox.Env).Release)
	cl.Release()
	t.inst, t.tpl, t.users, t.pool = inst, tpl, users, pool
	return nil
}

// privateFDs are the template's descriptors each fork replaces or closes
// itself: its stdio, control channel and fork channel. Every other object
// a fork would share with its siblings is either copied per fork
// (sfork's CopyObjects: eventfds, epolls, in-process pipes...) or refuses
// the template (fork must never become a channel between two requests):
// a copy of its stdout, say, would have every fork write into the
// template's.
var privateFDs = []int{0, 1, 2, 3, forkChannelFD}

// notForkable is the error of a template whose objects no fork can be
// given its own of.
func notForkable(err error) error {
	var se *kobj.SharedError
	if !errors.As(err, &se) {
		return err
	}
	names := make([]string, len(se.Objects))
	for i, o := range se.Objects {
		names[i] = o.String()
	}
	return fmt.Errorf("its init made objects every fork would share with its siblings (%s): fork and restore are off for this function; boot=scratch works, or create them in the handler: %w",
		strings.Join(names, "; "), errdefs.ErrNotSupported)
}

// Pools configures the pools an engine keeps per function: pre-built
// envs (fork) or restorers already in their env (warm, cold).
type Pools struct {
	// Size is how many are kept ready (default 2).
	Size int
	// Workers is how many each pool builds in parallel (default: a
	// quarter of the CPUs, at least one).
	Workers int
}

func (p Pools) size() int {
	if p.Size > 0 {
		return p.Size
	}
	return 2
}

func (p Pools) workers() int {
	if p.Workers > 0 {
		return p.Workers
	}
	return max(runtime.NumCPU()/4, 1)
}

// release frees what t holds: its env pool at once, the template process
// once its last fork instance has ended.
func (t *template) release() {
	select {
	case <-t.built:
	default:
		return // still building: build's own cleanup or the next release
	}
	if t.pool != nil {
		t.pool.Close()
	}
	t.refMu.Lock()
	if t.retired {
		t.refMu.Unlock()
		return
	}
	t.retired = true
	t.free = func() {
		if t.tpl != nil {
			t.tpl.Close()
		}
		if t.inst != nil {
			t.inst.Destroy()
		}
		if t.users != nil {
			t.users.Close()
		}
	}
	now := t.live == 0
	if !now {
		t.freeing.Add(1)
		free := t.free
		t.free = func() { free(); t.freeing.Done() }
	}
	t.refMu.Unlock()
	if now {
		t.free()
	}
}

// hold counts a fork about to be made; false once t is released.
func (t *template) hold() bool {
	t.refMu.Lock()
	defer t.refMu.Unlock()
	if t.retired {
		return false
	}
	t.live++
	return true
}

// unhold: a fork instance ended (or its fork failed); the last one of a
// released template frees it.
func (t *template) unhold() {
	t.refMu.Lock()
	t.live--
	last := t.live == 0 && t.retired
	t.refMu.Unlock()
	if last {
		t.free()
	}
}

func (t *template) close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.built
	t.release()
}

// Caps of a forked child: it raises CAP_SYS_ADMIN (held in its permitted
// set as a template) to join its env, then drops it for good.
var (
	dockerCaps, _ = sandbox.CapMask(sandbox.Capabilities())
	sysAdmin      = uint64(1) << uint(capability.CAP_SYS_ADMIN)
	raiseCaps     = sfork.Caps{Effective: dockerCaps | sysAdmin, Permitted: dockerCaps | sysAdmin, Inheritable: 0}
	finalCaps     = sfork.Caps{Effective: dockerCaps, Permitted: dockerCaps, Inheritable: 0}
)

// procMounts masks the /proc a child gets in its env (sfork.Child.ProcFS
// mounts the proc itself).
var procMounts = func() []sfork.Mount {
	var out []sfork.Mount
	for _, m := range sandbox.ProcMounts()[1:] {
		out = append(out, sfork.Mount{Source: m.Source, Target: m.Target, FSType: m.FSType, Flags: m.Flags, Data: m.Data, Optional: m.Optional})
	}
	return out
}()

// Boot forks fn's template into a fresh env and waits until the agent in
// the child has reseeded its runtime's random generators.
func (f *Fork) Boot(ctx context.Context, fn Function) (*Instance, error) {
	f.init()
	start := agent.Monotonic()
	t, err := f.held(ctx, fn.Name)
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
	}
	held := true
	defer func() {
		if held {
			t.unhold()
		}
	}()
	mark := time.Now()
	phases := []timing.Phase{}
	phase := func(name string, d time.Duration) { phases = append(phases, timing.Phase{Name: name, D: d}) }

	env, fromPool, err := t.pool.Get()
	if err != nil {
		return nil, fmt.Errorf("boot %s: sandbox env: %w", fn.Name, err)
	}
	if f.OnEnv != nil {
		f.OnEnv(fn.Name, fromPool)
	}
	cl := cleanup.Make(func() { env.Release() })
	defer cl.Clean()
	phase("env", time.Since(mark))

	pipes, err := newInstanceIO()
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
	}
	cl.Add(pipes.close)
	defer pipes.closeChildEnds()

	// On cgroup v2 the child is born in its env's cgroup: what its clone
	// charges is not the template's.
	cgdir, err := env.CgroupDir()
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
	}
	if cgdir != nil {
		defer cgdir.Close()
	}
	var sb *sandbox.Sandbox
	forked, err := t.tpl.Fork(t.child(env, pipes, cgdir, func(pid int) error {
		var err error
		sb, err = env.Adopt(pid)
		return err
	}))
	if err != nil {
		if errors.Is(err, sfork.ErrTemplateDead) {
			return nil, fmt.Errorf("boot %s: its template died; it is being rebuilt, retry: %w: %w", fn.Name, err, errdefs.ErrNotReady)
		}
		return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
	}
	cl = cleanup.Make(func() { sb.Destroy() })
	cl.Add(pipes.close)
	for _, p := range forked.Phases {
		phase(p.Name, p.D)
	}
	mark = time.Now()
	conn := agent.NewConn(pipes.parent)
	if _, err := conn.Forked(ctx); err != nil {
		return nil, fmt.Errorf("boot %s: forked instance: %w%s", fn.Name, err, stderrHint(pipes.stderr))
	}
	phase("reseed", time.Since(mark))
	cl.Release()
	// Its parent is the template: reap its zombie when it ends, and let
	// a released template go with its last instance.
	held = false
	go func() {
		<-sb.Done()
		t.tpl.Reap()
		t.unhold()
	}()
	return newInstance(sb.ID(), ModeFork, fn, start, phases, sb, conn, pipes.stdout, pipes.stderr), nil
}

// held waits for name's template to be built and holds it (the caller
// unholds it once its instance is gone).
func (f *Fork) held(ctx context.Context, name string) (*template, error) {
	t := f.tpls.get(name)
	if t == nil {
		return nil, fmt.Errorf("%w: deploy it again or use boot=scratch: %w", ErrNoTemplate, errdefs.ErrNotReady)
	}
	select {
	case <-t.built:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for its template to be built: %w: %w", ctx.Err(), errdefs.ErrNotReady)
	}
	if t.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoTemplate, t.err)
	}
	if !t.hold() {
		return nil, fmt.Errorf("its template was replaced; retry: %w", errdefs.ErrNotReady)
	}
	return t, nil
}

// child is what a fork of t into env does before it runs the template's
// code: its files in place, the env joined, its proc, its capabilities;
// ready (the cgroup adoption) runs meanwhile.
func (t *template) child(env *sandbox.Env, pipes *instanceIO, cgdir *os.File, ready func(pid int) error) sfork.Child {
	return sfork.Child{
		Cgroup: cgdir,
		Files:  []*os.File{pipes.child, pipes.outW, pipes.errW, env.PidFD()},
		// The control channel is not for the handler's subprocesses (as
		// in scratch, where the agent marks it close-on-exec at start).
		Dups:         []sfork.Dup{{File: 0, Target: 3, CloseOnExec: true}, {File: 1, Target: 1}, {File: 2, Target: 2}},
		Join:         3,
		JoinFlags:    env.JoinFlags(),
		NewPID:       true,
		Chdir:        t.tpl.Cwd(),
		ProcFS:       "/proc",
		Mounts:       procMounts,
		Close:        []int{forkChannelFD},
		Raise:        &raiseCaps,
		DropBounding: []int{int(capability.CAP_SYS_ADMIN)},
		Final:        &finalCaps,
		Ready:        ready,
	}
}

// Frozen is what a checkpoint of a template needs: the template frozen
// (its tracee, on its tracer thread, between forks), its other threads
// as Freeze recorded them, the host path of its file system layer, and
// the host uid its user namespace maps root to.
type Frozen struct {
	Tracee   *ptrace.Tracee
	Threads  []ptrace.ThreadState
	UpperDir string
	UIDBase  int
}

// WithFrozen runs fn with name's built template, frozen and held (no fork
// runs meanwhile): to checkpoint it.
func (f *Fork) WithFrozen(name string, fn func(Frozen) error) error {
	f.init()
	t := f.tpls.get(name)
	if t == nil {
		return fmt.Errorf("template %s: %w", name, ErrNoTemplate)
	}
	<-t.built
	if t.err != nil {
		return t.err
	}
	return t.tpl.WithTracee(func(tc *ptrace.Tracee) error {
		return fn(Frozen{Tracee: tc, Threads: t.tpl.Threads(), UpperDir: t.inst.sb.UpperDir(), UIDBase: t.users.UIDBase()})
	})
}

// Close destroys every template. Forked instances live on.
func (f *Fork) Close() error {
	f.init()
	for _, t := range f.tpls.close() {
		t.close()
	}
	// Templates dropped earlier go with their last instance (the
	// platform has destroyed every instance by now).
	f.freeing.Wait()
	return f.tr.Close()
}

// PoolStats returns the env pool statistics of name's template.
func (f *Fork) PoolStats(name string) (sandbox.PoolStats, bool) {
	f.init()
	t := f.tpls.get(name)
	if t == nil || !f.Ready(name) {
		return sandbox.PoolStats{}, false
	}
	return t.pool.Stats(), true
}

// Floor measures the floor of fork boot for fn, n times: the template
// forked with no sandbox work (no env to join, no new PID namespace, no
// /proc, no cgroup), the child reseeded and invoked with event exactly as
// a forked instance is. Each sample is fork start to handler entry. The
// children are killed at once. The handler is tenant code: each child
// first gets a read-only view of the template's mounts (its own mount
// namespace) and drops CAP_SYS_ADMIN, four syscalls in its batch, so that
// it can change nothing the template or its forks see.
func (f *Fork) Floor(ctx context.Context, fn Function, event []byte, n int) ([]time.Duration, error) {
	f.init()
	t := f.tpls.get(fn.Name)
	if t == nil {
		return nil, fmt.Errorf("floor %s: %w: %w", fn.Name, ErrNoTemplate, errdefs.ErrNotReady)
	}
	select {
	case <-t.built:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if t.err != nil {
		return nil, fmt.Errorf("floor %s: %w: %w", fn.Name, ErrNoTemplate, t.err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	var out []time.Duration
	defer t.tpl.Reap() // the children it killed
	for i := 0; i < n; i++ {
		d, err := f.floorOnce(ctx, t, devnull, event)
		if err != nil {
			return out, fmt.Errorf("floor %s: %w", fn.Name, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func (f *Fork) floorOnce(ctx context.Context, t *template, devnull *os.File, event []byte) (time.Duration, error) {
	start := agent.Monotonic()
	parent, child, err := ControlPair()
	if err != nil {
		return 0, err
	}
	defer parent.Close()
	defer child.Close()
	forked, err := t.tpl.Fork(sfork.Child{
		Files: []*os.File{child, devnull},
		Dups:  []sfork.Dup{{File: 0, Target: 3}, {File: 1, Target: 1}, {File: 1, Target: 2}},
		Join:  -1,
		// Its own PID namespace, as a boot's: the template's threads
		// are re-created with their tids, free only in a fresh one.
		NewPID:       true,
		Close:        []int{forkChannelFD},
		ReadOnlyRoot: true,
		DropBounding: []int{int(capability.CAP_SYS_ADMIN)},
		Final:        &finalCaps,
	})
	if err != nil {
		return 0, err
	}
	defer unix.Kill(forked.Pid, unix.SIGKILL)
	conn := agent.NewConn(parent)
	if _, err := conn.Forked(ctx); err != nil {
		return 0, err
	}
	res, err := conn.Invoke(ctx, agent.Invoke{ID: "floor", Event: event})
	if err != nil {
		return 0, err
	}
	return time.Duration(res.EntryNS - start), nil
}

// TemplateInfo describes a function's template for operators. It is no
// wire format: the API shows it through its own type (wire.Template), so
// a field renamed here changes no JSON.
type TemplateInfo struct {
	Status string
	Pid    int
	// KilledAtFreeze counts the processes the template's init left
	// running, killed when it was frozen.
	KilledAtFreeze int
	PSSKB          int64
	Pool           *sandbox.PoolStats
}

// Info describes name's template. Status and details come from one
// record: a template replaced meanwhile (by a redeploy) is seen building,
// not as the old one's status over the new one's unset pool.
func (f *Fork) Info(name string) TemplateInfo {
	f.init()
	t := f.tpls.get(name)
	st := t.status()
	info := TemplateInfo{Status: st.String()}
	if st.State != Built {
		return info
	}
	ps := t.pool.Stats()
	info.Pid, info.PSSKB, info.Pool = t.tpl.Pid(), PSS(t.tpl.Pid()), &ps
	info.KilledAtFreeze = len(t.tpl.Killed())
	return info
}

// PSS is the proportional set size of pid in KiB, or -1 when it cannot be
// read.
func PSS(pid int) int64 {
	kb, err := procfs.PSS(pid)
	if err != nil {
		return -1
	}
	return kb
}
