// Package platform is the function platform: the registry of deployed
// functions (persisted in a state dir), their instance pools with
// keep-alive, the choice of boot mode, and the metrics.
//
// Contract:
//   - Deploy validates everything before it writes anything; invalid input
//     is an error wrapping errdefs.ErrInvalid or errdefs.ErrTooLarge and
//     leaves no trace on disk.
//   - State survives a SIGKILL of the daemon: New reloads every function
//     and sweeps whatever a killed daemon left (instances' processes and
//     cgroups, staging dirs, every mount under its run dir, stacked or
//     busy ones too). What it cannot remove is logged, path by path, and
//     never keeps it from starting.
//   - Close removes every instance, mount and run dir; what it cannot
//     remove it logs and returns as an error (sandbox.Leftover values).
//   - An invocation either reuses a live idle instance (boot=auto) or boots
//     a fresh one in the requested mode; at most max_instances live
//     instances exist per function and a request beyond that fails with
//     errdefs.ErrUnavailable rather than queueing. A closed platform
//     answers errdefs.ErrShutdown.
//   - A function's failure (handler error, crash, timeout, OOM) is an
//     *agent.FunctionError and never affects other instances or the daemon.
package platform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// Config configures a Platform.
type Config struct {
	StateDir string
	// CgroupParent is the parent cgroup of every instance (default
	// "catalyzer"). Everything under it belongs to this daemon and is
	// swept at start.
	CgroupParent string
	// KeepAlive is how long an idle instance is kept for reuse (default 60s;
	// negative disables reuse).
	KeepAlive time.Duration
	// InitTimeout bounds a boot including the function's init (default 30s).
	InitTimeout time.Duration
	// Rootfs is the lower layer of every instance's root ("" = the embedded default root, sandbox package).
	Rootfs string
	// NoUserNS runs scratch instances without a user namespace of their
	// own (root inside is host root, with Docker's capabilities). Fork
	// templates and their instances always run in the function's user
	// namespace, whatever it says.
	NoUserNS bool
	// KeepCgroupMovesSlow leaves the kernel's cgroup migrations as the
	// host has them. By default, on a cgroup v1 host, the platform mounts
	// a hierarchy with favordynmods while it runs
	// (sandbox.FavorMigrations): moving an instance into its cgroups then
	// costs ~0.3 ms instead of ~11 ms, and every fork and exit on the host
	// an atomic operation more.
	KeepCgroupMovesSlow bool
	// OutputLimit bounds captured stdout and stderr per invocation
	// (default 64 KiB each).
	OutputLimit int
	// EnvPoolSize is how many pre-built sandbox envs each function's fork
	// template keeps ready (default 2).
	EnvPoolSize int
	// EnvPoolWorkers is how many envs each pool builds in parallel
	// (default: a quarter of the CPUs).
	EnvPoolWorkers int
	// EnvPoolSize and EnvPoolWorkers are the floor of pools that size
	// themselves from the boot rate they serve (sizer.go); EnvPoolMax is
	// the ceiling of their size (default 64). FixedEnvPools keeps every
	// pool at EnvPoolSize and EnvPoolWorkers.
	EnvPoolMax    int
	FixedEnvPools bool
	// NoTemplates turns off building fork templates (fork boot then fails
	// with "no template").
	NoTemplates bool
	// CodeRoots are the host directories under which a deploy may name
	// its code by path (code_path); none by default, so code_path is
	// refused and code is uploaded (see checkCodePath).
	CodeRoots []string
	// AllowHostNet lets functions choose network "host"; otherwise
	// such a deploy is refused with errdefs.ErrForbidden.
	AllowHostNet bool
	// MaxFunctions bounds how many functions may be deployed (default
	// DefaultMaxFunctions). Each costs the daemon memory it is charged for
	// (its record, its image's rootfs layer tmpfs, its template's and
	// pools' bookkeeping): a deploy of one more answers ErrUnavailable.
	MaxFunctions int
	Logger       *slog.Logger
}

// DefaultMaxFunctions is Config.MaxFunctions when unset.
const DefaultMaxFunctions = 1000

// Platform is the function platform. It is safe for concurrent use.
type Platform struct {
	cfg     Config
	store   *store
	metrics *Metrics
	log     *slog.Logger
	engines map[boot.Mode]boot.Engine
	fork    *boot.Fork
	restore *boot.Restore
	// unfavor ends sandbox.FavorMigrations (a no-op when not taken).
	unfavor func() error

	deployMu sync.Mutex // serializes registry writes
	mu       sync.Mutex
	fns      map[string]*entry
	retired  map[*pool]bool // pools of deleted or replaced functions still draining
	closed   bool
	// lastSlot is the highest UIDSlot handed out: slots are not reused
	// while the daemon runs (a deleted function's busy instances may
	// still hold its range).
	lastSlot int

	sizer        *sizer
	invocationID atomic.Uint64
	stop         chan struct{}
	reaperDone   chan struct{}
}

type entry struct {
	fn   Function
	pool *pool
}

// New opens (or creates) the state dir, cleans up after a killed daemon,
// and loads the registry.
func New(cfg Config) (*Platform, error) {
	cfg = cfg.withDefaults()
	st, err := openStore(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	if cfg.CodeRoots, err = resolveCodeRoots(cfg.CodeRoots, st.dir); err != nil {
		return nil, err
	}
	sweep(cfg, st)
	if err := runtimes.InstallAgents(st.path("agents")); err != nil {
		return nil, fmt.Errorf("install agents: %w", err)
	}
	unfavor := func() error { return nil }
	if !cfg.KeepCgroupMovesSlow {
		if unfavor, err = sandbox.FavorMigrations(cfg.CgroupParent); err != nil {
			cfg.Logger.Warn("cgroup moves stay slow (~10 ms per boot on cgroup v1)", "err", err)
		}
	}
	p := &Platform{
		unfavor:    unfavor,
		cfg:        cfg,
		store:      st,
		metrics:    newMetrics(),
		log:        cfg.Logger,
		fns:        map[string]*entry{},
		retired:    map[*pool]bool{},
		stop:       make(chan struct{}),
		reaperDone: make(chan struct{}),
	}
	p.sizer = newSizer(p, cfg)
	p.startEngines()
	p.loadFunctions()
	if err := p.gcCode(); err != nil {
		p.log.Warn("code garbage collection", "err", err)
	}
	go p.reaper()
	return p, nil
}

// withDefaults fills in what cfg leaves zero.
func (cfg Config) withDefaults() Config {
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "catalyzer"
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = 60 * time.Second
	}
	if cfg.InitTimeout == 0 {
		cfg.InitTimeout = 30 * time.Second
	}
	if cfg.OutputLimit == 0 {
		cfg.OutputLimit = 64 << 10
	}
	if cfg.MaxFunctions <= 0 {
		cfg.MaxFunctions = DefaultMaxFunctions
	}
	if cfg.EnvPoolMax <= 0 {
		cfg.EnvPoolMax = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// sweep removes what a previous daemon left: staged code, and the
// sandboxes under the cgroup parent. Leftovers (a mount some other
// process keeps busy, a cgroup a stuck process holds) never keep the
// daemon from starting: new instances get fresh names, and the next
// sweep tries again.
func sweep(cfg Config, st *store) {
	if err := st.cleanStaging(); err != nil {
		cfg.Logger.Warn("could not clean up everything a previous daemon left; continuing", "err", err)
	}
	n, err := sandbox.Sweep(cfg.CgroupParent)
	if err != nil {
		logLeftovers(cfg.Logger, "could not clean up everything a previous daemon left; continuing", err)
	}
	if n > 0 {
		cfg.Logger.Info("cleaned up instances left by a previous daemon", "count", n)
	}
}

// startEngines makes the boot engines, with the hooks that log and count
// what they build.
func (p *Platform) startEngines() {
	cfg, st := p.cfg, p.store
	scratch := &boot.Scratch{AgentDir: st.path("agents"), CgroupParent: cfg.CgroupParent, Rootfs: cfg.Rootfs,
		Pools: &boot.Pools{Size: cfg.EnvPoolSize, Workers: cfg.EnvPoolWorkers}}
	p.fork = &boot.Fork{
		Scratch: scratch,
		Pools:   boot.Pools{Size: cfg.EnvPoolSize, Workers: cfg.EnvPoolWorkers},
		OnEnv: func(function string, fromPool bool) {
			how := "pool"
			if !fromPool {
				how = "on_demand"
			}
			p.metrics.envBuilt.WithLabelValues(how).Inc()
		},
		OnTemplate: func(function string, err error) {
			if err != nil {
				p.log.Warn("template failed: fork boot unavailable for this function", "function", function, "err", err)
				return
			}
			if n := p.fork.Info(function).KilledAtFreeze; n > 0 {
				p.log.Warn("template: killed processes its init left running (a template must be alone in its PID namespace)", "function", function, "killed", n)
			}
			p.log.Info("template ready", "function", function)
		},
	}
	p.restore = &boot.Restore{
		Fork:  p.fork,
		Dir:   st.path("images"),
		Pools: boot.Pools{Size: cfg.EnvPoolSize, Workers: cfg.EnvPoolWorkers},
		OnEnv: p.fork.OnEnv,
		OnWorkingSet: func(function string, bytes int64, err error) {
			if err != nil {
				p.log.Warn("working set not recorded: cold boots go without prefetch", "function", function, "err", err)
				return
			}
			p.log.Info("working set recorded", "function", function, "bytes", bytes)
		},
		OnImage: func(function string, err error) {
			if err != nil {
				p.log.Warn("image failed: cold and warm boot unavailable for this function", "function", function, "err", err)
				return
			}
			info := p.restore.Info(function)
			p.metrics.imageBytes.WithLabelValues(function, "disk").Set(float64(info.PagesBytes))
			p.metrics.imageBytes.WithLabelValues(function, "apparent").Set(float64(info.PagesApparent))
			p.log.Info("image ready", "function", function, "pages_bytes", info.PagesBytes, "plan_entries", info.PlanEntries)
		},
	}
	p.engines = map[boot.Mode]boot.Engine{
		boot.ModeScratch: scratch,
		boot.ModeFork:    p.fork,
		boot.ModeCold:    p.restore.Engine(boot.ModeCold),
		boot.ModeWarm:    p.restore.Engine(boot.ModeWarm),
	}
}

// loadFunctions registers the stored functions, giving a uid range to a
// record from before they existed, and starts building their templates
// and images.
func (p *Platform) loadFunctions() {
	fns, err := p.store.load()
	if err != nil {
		// Keep serving what is readable; say loudly what is not.
		p.log.Error("some function records could not be loaded", "err", err)
	}
	for _, f := range fns {
		p.lastSlot = max(p.lastSlot, f.UIDSlot)
	}
	for _, f := range fns {
		if f.UIDSlot == 0 {
			p.lastSlot++
			f.UIDSlot = p.lastSlot
			if err := p.store.put(f); err != nil {
				p.log.Error("function record", "function", f.Name, "err", err)
			}
		}
		p.fns[f.Name] = &entry{fn: f, pool: p.newPool(f)}
		p.prepare(f)
	}
}

// Metrics returns the platform's metrics.
func (p *Platform) Metrics() *Metrics { return p.metrics }

// CodeDir is where f's code is stored on the host.
func (p *Platform) CodeDir(f Function) string { return p.store.codeDir(f.CodeDigest) }

// AgentDir is where the in-sandbox agents are installed on the host.
func (p *Platform) AgentDir() string { return p.store.path("agents") }

// Deploy creates or replaces function name. It returns the stored record
// and whether it was created.
func (p *Platform) Deploy(name string, r DeployRequest) (Function, bool, error) {
	if err := ValidateName(name); err != nil {
		return Function{}, false, err
	}
	if err := r.normalize(); err != nil {
		return Function{}, false, fmt.Errorf("deploy %s: %w", name, err)
	}
	if err := p.checkRoom(name); err != nil { // before the work of staging
		return Function{}, false, err
	}
	if err := p.checkPolicy(&r); err != nil {
		return Function{}, false, fmt.Errorf("deploy %s: %w", name, err)
	}
	staged, digest, err := p.store.stage(&r)
	if err != nil {
		return Function{}, false, fmt.Errorf("deploy %s: %w", name, err)
	}
	rt, _ := runtimes.Lookup(r.Runtime)
	if err := rt.CheckHandler(staged, r.Handler); err != nil {
		removeTree(staged)
		return Function{}, false, fmt.Errorf("deploy %s: %w", name, err)
	}

	p.deployMu.Lock()
	defer p.deployMu.Unlock()
	if err := p.checkRoom(name); err != nil { // under deployMu: the count holds
		removeTree(staged)
		return Function{}, false, err
	}
	if err := p.store.commitCode(staged, digest); err != nil {
		removeTree(staged)
		return Function{}, false, fmt.Errorf("deploy %s: %w", name, err)
	}
	now := time.Now().UTC()
	f := Function{
		Name: name, Runtime: r.Runtime, Handler: r.Handler, CodeDigest: digest,
		MemoryMB: r.MemoryMB, TimeoutMs: r.TimeoutMs, Env: r.Env,
		MaxInstances: r.MaxInstances, Network: r.Network,
		CreatedAt: now, UpdatedAt: now,
	}
	p.mu.Lock()
	old := p.fns[name]
	closed := p.closed
	p.mu.Unlock()
	if closed {
		return Function{}, false, fmt.Errorf("deploy %s: platform is shut down: %w", name, errdefs.ErrShutdown)
	}
	if old != nil {
		f.CreatedAt, f.UIDSlot = old.fn.CreatedAt, old.fn.UIDSlot
	} else {
		if p.lastSlot >= maxUIDSlots {
			return Function{}, false, fmt.Errorf("deploy %s: no uid range left (%d functions were deployed since start): restart the daemon: %w", name, maxUIDSlots, errdefs.ErrUnavailable)
		}
		p.lastSlot++
		f.UIDSlot = p.lastSlot
	}
	if err := p.store.put(f); err != nil {
		return Function{}, false, fmt.Errorf("deploy %s: %w", name, err)
	}
	p.mu.Lock()
	p.fns[name] = &entry{fn: f, pool: p.newPool(f)}
	if old != nil {
		p.retired[old.pool] = true
	}
	p.mu.Unlock()
	if old != nil {
		old.pool.retire()
	}
	p.prepare(f)
	p.log.Info("deployed", "function", name, "runtime", f.Runtime, "code", digest, "created", old == nil)
	return f, old == nil, nil
}

// checkRoom refuses a deploy that would create a function beyond
// Config.MaxFunctions; replacing one is always allowed.
func (p *Platform) checkRoom(name string) error {
	p.mu.Lock()
	_, exists := p.fns[name]
	n := len(p.fns)
	p.mu.Unlock()
	if !exists && n >= p.cfg.MaxFunctions {
		return fmt.Errorf("deploy %s: %d functions are deployed, the most this daemon keeps (serve --max-functions); delete one first: %w", name, n, errdefs.ErrUnavailable)
	}
	return nil
}

// Get returns function name.
func (p *Platform) Get(name string) (Function, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.fns[name]
	if !ok {
		return Function{}, fmt.Errorf("function %q: %w", name, errdefs.ErrNotFound)
	}
	return e.fn, nil
}

// List returns every function, sorted by name.
func (p *Platform) List() []Function {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Function, 0, len(p.fns))
	for _, e := range p.fns {
		out = append(out, e.fn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Delete removes function name and destroys its instances (busy ones when
// their invocation ends).
func (p *Platform) Delete(name string) error {
	p.deployMu.Lock()
	defer p.deployMu.Unlock()
	p.mu.Lock()
	e, ok := p.fns[name]
	p.mu.Unlock()
	if !ok {
		return fmt.Errorf("function %q: %w", name, errdefs.ErrNotFound)
	}
	if err := p.store.remove(name); err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	p.mu.Lock()
	delete(p.fns, name)
	p.retired[e.pool] = true
	p.mu.Unlock()
	e.pool.retire()
	p.fork.Drop(name)
	p.fork.Scratch.Drop(name)
	p.restore.Drop(name)
	p.sizer.forget(name)
	p.metrics.forget(name)
	p.log.Info("deleted", "function", name)
	return nil
}

// InvokeResult is what one invocation produced besides its error.
type InvokeResult struct {
	Output     json.RawMessage
	Boot       boot.Mode // how the serving instance was booted
	Reused     bool      // a live instance served it: no boot
	BootUs     int64     // boot start to handler entry, µs (0 when reused)
	HandlerUs  int64     // handler entry to exit, µs (0 when unknown)
	Phases     []timing.Phase
	InstanceID string
	Stdout     string
	Stderr     string
	Truncated  bool
	// LogsTruncated: the instance sent more log frames than one
	// invocation keeps (agent.MaxLogs, agent.MaxLogBytes).
	LogsTruncated bool
}

// InvokeOption changes how one invocation boots.
type InvokeOption func(*invokeOptions)

type invokeOptions struct{ noPrefetch bool }

// NoPrefetch makes a cold boot skip the readahead of its pages.img (a
// benchmark knob: catalyzer bench --no-prefetch).
func NoPrefetch() InvokeOption { return func(o *invokeOptions) { o.noPrefetch = true } }

// Invoke runs function name once on event. mode auto reuses a live idle
// instance or boots in the best available mode; any other mode boots a
// fresh instance in exactly that mode (never a silent fallback).
func (p *Platform) Invoke(ctx context.Context, name string, mode boot.Mode, event json.RawMessage, opts ...InvokeOption) (InvokeResult, error) {
	var o invokeOptions
	for _, f := range opts {
		f(&o)
	}
	p.mu.Lock()
	e, ok := p.fns[name]
	closed := p.closed
	p.mu.Unlock()
	if !ok {
		return InvokeResult{}, fmt.Errorf("function %q: %w", name, errdefs.ErrNotFound)
	}
	if closed {
		return InvokeResult{}, fmt.Errorf("platform is shut down: %w", errdefs.ErrShutdown)
	}
	if err := p.allowed(e.fn); err != nil {
		return InvokeResult{}, err
	}
	if len(event) == 0 {
		event = json.RawMessage("{}")
	}
	if !json.Valid(event) {
		return InvokeResult{}, fmt.Errorf("event is not valid JSON: %w", errdefs.ErrInvalid)
	}
	pl := e.pool
	inst, reused, err := pl.acquire(ctx, mode, o)
	if err != nil {
		outcome := "error"
		if errors.Is(err, errdefs.ErrUnavailable) {
			outcome = "rejected"
		}
		p.metrics.invocations.WithLabelValues(name, string(mode), outcome).Inc()
		p.metrics.countError(name, err)
		return InvokeResult{Boot: mode}, err
	}
	res := InvokeResult{Boot: inst.Mode, Reused: reused, InstanceID: inst.ID}

	timeout := time.Duration(e.fn.TimeoutMs) * time.Millisecond
	deadline := time.Now().Add(timeout)
	ictx, cancel := context.WithDeadlineCause(ctx, deadline, fmt.Errorf("function timed out after %v", timeout))
	out, err := inst.Invoke(ictx, p.invocationID.Add(1), event, deadline)
	cancel()
	pl.release(inst)

	res.Output, res.Stdout, res.Stderr, res.Truncated, res.LogsTruncated = out.Output, out.Stdout, out.Stderr, out.Truncated, out.LogsTruncated
	if out.EntryNS > 0 && out.ExitNS >= out.EntryNS {
		res.HandlerUs = (out.ExitNS - out.EntryNS) / 1000
	}
	if !reused && out.EntryNS > 0 {
		res.BootUs, res.Phases = bootBreakdown(inst, out.EntryNS)
		p.metrics.bootLatency.WithLabelValues(name, string(inst.Mode)).Observe(float64(res.BootUs) / 1e6)
		for _, ph := range res.Phases {
			p.metrics.bootPhase.WithLabelValues(name, string(inst.Mode), ph.Name).Observe(ph.D.Seconds())
		}
	}
	label := string(inst.Mode)
	if reused {
		label = "reuse"
	}
	if err != nil {
		var fe *agent.FunctionError
		if errors.As(err, &fe) {
			res.Stdout, res.Stderr, res.LogsTruncated = fe.Stdout, fe.Stderr, fe.LogsTruncated
		}
		p.metrics.invocations.WithLabelValues(name, label, "error").Inc()
		p.metrics.countError(name, err)
		return res, err
	}
	p.metrics.invocations.WithLabelValues(name, label, "ok").Inc()
	return res, nil
}

// bootBreakdown gives start-to-entry in µs and the phases that make it
// up; the last phase, "invoke", is whatever the named phases do not cover
// (dispatching the first invocation to the handler), so the phases always
// add up to the total.
func bootBreakdown(inst *boot.Instance, entryNs int64) (int64, []timing.Phase) {
	total := time.Duration(entryNs - inst.BootStart)
	phases := append([]timing.Phase(nil), inst.Phases...)
	var sum time.Duration
	for _, ph := range phases {
		sum += ph.D
	}
	phases = append(phases, timing.Phase{Name: "invoke", D: max(total-sum, 0)})
	return total.Microseconds(), phases
}

// engineFor resolves mode to an engine for function name. auto takes the
// fastest engine ready now: fork when the function's template is ready,
// else warm restore when its image is, else scratch (which needs
// neither); explicit modes are taken as asked (never a silent fallback).
func (p *Platform) engineFor(mode boot.Mode, name string, o invokeOptions) boot.Engine {
	if mode == boot.ModeCold && o.noPrefetch {
		return p.restore.ColdWithoutPrefetch()
	}
	if mode != boot.ModeAuto {
		return p.engines[mode]
	}
	if p.fork.Ready(name) {
		return p.fork
	}
	if p.restore.Status(name).State == boot.Built {
		return p.engines[boot.ModeWarm]
	}
	return p.engines[boot.ModeScratch]
}

// prepare starts building f's fork template in the background.
func (p *Platform) prepare(f Function) {
	if !p.cfg.NoTemplates && p.allowed(f) == nil {
		bf := p.bootFunction(f)
		p.fork.Prepare(bf)
		p.restore.Prepare(bf)
	}
}

// bootFunction is the boot layer's view of f.
func (p *Platform) bootFunction(f Function) boot.Function {
	return boot.Function{
		Name: f.Name, Runtime: f.Runtime, Handler: f.Handler,
		CodeDir: p.store.codeDir(f.CodeDigest), Env: f.Env,
		MemoryMB: f.MemoryMB, TimeoutMs: f.TimeoutMs,
		NetworkHost: f.Network == "host", UserNS: !p.cfg.NoUserNS,
		UIDBase:     uidBase(f.UIDSlot),
		OutputLimit: p.cfg.OutputLimit,
	}
}

// Host uid ranges: function slot n (1, 2, ...) gets the 65536 ids from
// uidRangeStart + n*65536, above the ranges distributions hand to users
// (/etc/subuid starts at 100000) and below 2^31.
const (
	uidRangeStart = 1 << 24
	maxUIDSlots   = (1<<31-uidRangeStart)/sandbox.UIDMapSize - 1
)

func uidBase(slot int) int { return uidRangeStart + slot*sandbox.UIDMapSize }

// gcCode removes code no function and no draining pool uses.
func (p *Platform) gcCode() error {
	p.mu.Lock()
	keep := map[string]bool{}
	for _, e := range p.fns {
		keep[e.fn.CodeDigest] = true
	}
	for pl := range p.retired {
		keep[pl.fn.CodeDigest] = true
	}
	p.mu.Unlock()
	return p.store.gcCode(keep)
}

// poolDrained is called by a retired pool once its last instance is gone.
func (p *Platform) poolDrained(pl *pool) {
	p.mu.Lock()
	delete(p.retired, pl)
	p.mu.Unlock()
	if err := p.gcCode(); err != nil {
		p.log.Warn("code garbage collection", "err", err)
	}
}

// reaper destroys instances idle for longer than the keep-alive.
func (p *Platform) reaper() {
	defer close(p.reaperDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.mu.Lock()
			pools := make([]*pool, 0, len(p.fns))
			for _, e := range p.fns {
				pools = append(pools, e.pool)
			}
			p.mu.Unlock()
			for _, pl := range pools {
				pl.reap(now)
			}
			p.sizer.tick(now)
		}
	}
}

// Close destroys every instance. In-flight invocations fail.
func (p *Platform) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	pools := []*pool{}
	for _, e := range p.fns {
		pools = append(pools, e.pool)
	}
	for pl := range p.retired {
		pools = append(pools, pl)
	}
	p.mu.Unlock()
	close(p.stop)
	<-p.reaperDone
	// Instances first: a fork template lives until its last instance.
	for _, pl := range pools {
		pl.shutdown()
	}
	p.restore.Close()
	p.fork.Close()
	if err := p.fork.Scratch.Close(); err != nil {
		p.log.Warn("prestarted sandboxes not all released", "err", err)
	}
	// Every instance is gone; remove the parent cgroup and run dir too so
	// that a stopped daemon leaves nothing on the host, and say what it
	// leaves if it does.
	if _, err := sandbox.Sweep(p.cfg.CgroupParent); err != nil {
		logLeftovers(p.log, "shutdown left some things behind", err)
		return fmt.Errorf("close: %w", err)
	}
	if err := p.unfavor(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// logLeftovers logs err, one line per *sandbox.Leftover it joins (and one
// for the rest).
func logLeftovers(log *slog.Logger, msg string, err error) {
	var rest []error
	for _, e := range unjoin(err) {
		var l *sandbox.Leftover
		if errors.As(e, &l) {
			log.Warn(msg, "path", l.Path, "err", l.Err)
			continue
		}
		rest = append(rest, e)
	}
	if len(rest) > 0 {
		log.Warn(msg, "err", errors.Join(rest...))
	}
}

// unjoin flattens errors.Join trees into their leaves.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// InstanceInfo describes one live instance.
type InstanceInfo struct {
	ID    string
	Boot  string
	State string
	Pid   int
	PSSKB int64
}

// Instances lists function name's live instances and its template.
func (p *Platform) Instances(name string) ([]InstanceInfo, boot.TemplateInfo, boot.ImageInfo, error) {
	p.mu.Lock()
	e, ok := p.fns[name]
	p.mu.Unlock()
	if !ok {
		return nil, boot.TemplateInfo{}, boot.ImageInfo{}, fmt.Errorf("function %q: %w", name, errdefs.ErrNotFound)
	}
	var out []InstanceInfo
	for _, inst := range e.pool.list() {
		out = append(out, InstanceInfo{ID: inst.ID, Boot: string(inst.Mode), State: inst.State().String(), Pid: inst.Pid(), PSSKB: boot.PSS(inst.Pid())})
	}
	return out, p.fork.Info(name), p.restore.Info(name), nil
}

// Drain destroys function name's idle instances (busy ones finish their
// invocation) and returns how many it destroyed.
func (p *Platform) Drain(name string) (int, error) {
	p.mu.Lock()
	e, ok := p.fns[name]
	p.mu.Unlock()
	if !ok {
		return 0, fmt.Errorf("function %q: %w", name, errdefs.ErrNotFound)
	}
	return e.pool.drain(), nil
}

// ForkFloor measures the floor of fork boot for function name n times:
// its template forked with no sandbox work (see boot.Fork.Floor).
func (p *Platform) ForkFloor(ctx context.Context, name string, event json.RawMessage, n int) ([]time.Duration, error) {
	f, err := p.Get(name)
	if err != nil {
		return nil, err
	}
	if n < 1 || n > 10000 {
		return nil, fmt.Errorf("n %d out of range [1, 10000]: %w", n, errdefs.ErrInvalid)
	}
	if len(event) == 0 {
		event = json.RawMessage("{}")
	}
	return p.fork.Floor(ctx, p.bootFunction(f), event, n)
}

// TemplateStatus describes the fork template of function name ("none",
// "building", "ready", "failed: ...").
func (p *Platform) TemplateStatus(name string) string { return p.fork.Status(name).String() }

// ImageStatus describes the checkpoint image of function name ("none",
// "building", "ready", "failed: ...").
func (p *Platform) ImageStatus(name string) string { return p.restore.Status(name).String() }

// StateDir is the absolute state dir.
func (p *Platform) StateDir() string { return p.store.dir }
