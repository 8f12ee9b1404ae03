package boot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// Paths inside every sandbox.
const (
	CodeMount  = "/var/task"      // the function's code, read-only
	AgentMount = "/opt/catalyzer" // our agents, read-only
)

// Scratch boots by exec'ing the runtime in a fresh sandbox env and running
// the function's init there: the cost every other mode removes.
//
// With Pools, it keeps sandboxes prestarted per function (sandbox.Prestart:
// cgroup, namespaces, root, network and the init helper waiting), built
// off the critical path like fork's envs, so that a boot only sends the
// process part and execs the runtime (see docs/ARCHITECTURE.md, "Scratch
// boot", for the numbers). A template's boot builds its own sandbox.
type Scratch struct {
	// AgentDir is the host directory holding the installed agents
	// (runtimes.InstallAgents).
	AgentDir string
	// CgroupParent names the parent cgroup of every instance.
	CgroupParent string
	// Rootfs is the lower layer of every instance's root ("" = the embedded default root, sandbox package).
	Rootfs string
	// Pools sizes the pools of prestarted sandboxes; nil keeps none (every
	// boot builds its sandbox: a one-shot command).
	Pools *Pools

	mu      sync.Mutex
	pools   map[string]*scratchPool // by function name
	closed  bool
	closing sync.WaitGroup // pools of older versions of a function being closed
}

// scratchPool is the pool of one function's prestarted sandboxes, for the
// function as key describes it (a changed function gets a new pool).
type scratchPool struct {
	key  string
	pool *sandbox.Pool[*sandbox.Pending]
}

func (s *Scratch) Mode() Mode { return ModeScratch }

// Boot starts a sandbox running f's runtime and waits until the handler
// is loaded.
func (s *Scratch) Boot(ctx context.Context, f Function) (*Instance, error) {
	return s.boot(ctx, f, false, nil)
}

// boot is Boot, optionally as a template (sandbox.Config.Template) with
// extra files after the control channel (fd 4, 5, ...).
func (s *Scratch) boot(ctx context.Context, f Function, template bool, extra []*os.File) (*Instance, error) {
	start := agent.Monotonic()
	rt, err := runtimes.Lookup(f.Runtime)
	if err != nil {
		return nil, err
	}
	cl := cleanup.Cleanup{}
	defer cl.Clean()

	pipes, err := newInstanceIO()
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", f.Name, err)
	}
	cl.Add(pipes.close)
	defer pipes.closeChildEnds()
	proc := sandbox.Process{
		Argv:       rt.Command(CodeMount, AgentMount, f.Handler),
		Env:        InstanceEnv(f),
		Cwd:        CodeMount,
		ExtraFiles: append([]*os.File{pipes.child}, extra...),
		Stdout:     pipes.outW,
		Stderr:     pipes.errW,
	}
	var sb *sandbox.Sandbox
	var phases []timing.Phase
	if template || s.Pools == nil {
		prefix := "sc"
		if template {
			prefix = "tpl"
		}
		cfg := s.config(f, NewID(prefix))
		cfg.Process, cfg.Template = proc, template
		sb, err = sandbox.Start(cfg)
		if err == nil {
			phases = sb.Phases()
		}
	} else {
		sb, phases, err = s.execPrestarted(f, proc)
	}
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", f.Name, err)
	}
	cl.Add(func() { sb.Destroy() })
	execDone := time.Now()

	conn := agent.NewConn(pipes.parent)
	if _, err := conn.Init(ctx, bootInit(f, template)); err != nil {
		return nil, fmt.Errorf("boot %s: init: %w%s", f.Name, err, stderrHint(pipes.stderr))
	}
	phases = append(phases, timing.Phase{Name: "init", D: time.Since(execDone)})
	cl.Release()
	inst := newInstance(sb.ID(), ModeScratch, f, start, phases, sb, conn, pipes.stdout, pipes.stderr)
	return inst, nil
}

// config is the sandbox of f's instance id, but its process.
func (s *Scratch) config(f Function, id string) sandbox.Config {
	cfg := sandbox.Config{
		EnvConfig: sandbox.EnvConfig{
			ID: id,
			Binds: []sandbox.Bind{
				{Source: f.CodeDir, Target: CodeMount},
				{Source: s.AgentDir, Target: AgentMount},
			},
			Rootfs:       s.Rootfs,
			Network:      sandbox.NetworkNone,
			Limits:       Limits(f),
			CgroupParent: s.CgroupParent,
		},
		OwnUserNS: f.UserNS,
		UIDBase:   f.UIDBase,
	}
	if f.NetworkHost {
		cfg.Network = sandbox.NetworkHost
	}
	return cfg
}

// execPrestarted runs proc in one of f's prestarted sandboxes. Its phases
// are "prestart" (taking one from the pool; when it was empty, the
// prestart's own phases instead) and those of the exec.
func (s *Scratch) execPrestarted(f Function, proc sandbox.Process) (*sandbox.Sandbox, []timing.Phase, error) {
	t := time.Now()
	pool, err := s.pool(f)
	if err != nil {
		return nil, nil, err
	}
	p, fromPool, err := pool.Get()
	if err != nil {
		return nil, nil, err
	}
	phases := []timing.Phase{{Name: "prestart", D: time.Since(t)}}
	if !fromPool {
		phases = p.Phases()
	}
	sb, err := p.Exec(proc)
	if err != nil {
		return nil, nil, errors.Join(err, p.Release())
	}
	return sb, append(phases, sb.Phases()...), nil
}

// pool returns f's pool of prestarted sandboxes, made at f's first boot;
// a pool made for an older version of f is closed.
func (s *Scratch) pool(f Function) (*sandbox.Pool[*sandbox.Pending], error) {
	key := fmt.Sprintf("%s\x00%s\x00%+v\x00%v\x00%d\x00%v", f.Name, f.CodeDir, Limits(f), f.UserNS, f.UIDBase, f.NetworkHost)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("scratch: closed: %w", errdefs.ErrShutdown)
	}
	if sp, ok := s.pools[f.Name]; ok {
		if sp.key == key {
			return sp.pool, nil
		}
		s.closing.Add(1)
		go func() { // Close waits for a build in progress: not under s.mu
			defer s.closing.Done()
			_ = sp.pool.Close()
		}()
	}
	pool := sandbox.NewPool(s.Pools.size(), s.Pools.workers(), func() (*sandbox.Pending, error) {
		return sandbox.Prestart(s.config(f, NewID("sc")))
	}, (*sandbox.Pending).Release)
	if s.pools == nil {
		s.pools = map[string]*scratchPool{}
	}
	s.pools[f.Name] = &scratchPool{key: key, pool: pool}
	return pool, nil
}

// Drop releases the prestarted sandboxes of the function name.
func (s *Scratch) Drop(name string) {
	s.mu.Lock()
	sp := s.pools[name]
	delete(s.pools, name)
	s.mu.Unlock()
	if sp != nil {
		_ = sp.pool.Close()
	}
}

// PoolStats returns the statistics of name's pool of prestarted
// sandboxes, if it has one.
func (s *Scratch) PoolStats(name string) (sandbox.PoolStats, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.pools[name]
	if !ok {
		return sandbox.PoolStats{}, false
	}
	return sp.pool.Stats(), true
}

// Close releases every prestarted sandbox; later boots fail with
// errdefs.ErrShutdown when Pools is set. Instances live on.
func (s *Scratch) Close() error {
	s.mu.Lock()
	s.closed = true
	pools := s.pools
	s.pools = nil
	s.mu.Unlock()
	var errs []error
	for _, sp := range pools {
		errs = append(errs, sp.pool.Close())
	}
	s.closing.Wait()
	return errors.Join(errs...)
}

// InitMsg is the agent's init message for f with its code at codeDir.
func InitMsg(f Function, codeDir string) agent.Init {
	return agent.Init{
		Version:     agent.ProtocolVersion,
		Function:    f.Name,
		Runtime:     f.Runtime,
		Handler:     f.Handler,
		CodeDir:     codeDir,
		OutputLimit: f.OutputLimit,
	}
}

// bootInit is the init message of an instance of f booted by Scratch.boot,
// marked as a template's when it will be frozen as one (Fork).
func bootInit(f Function, template bool) agent.Init {
	m := InitMsg(f, CodeMount)
	m.Template = template
	return m
}

// InstanceEnv is the environment of f's runtime: a fixed base, then the
// function's own variables, which may not override the control fd nor
// what the runtime needs (runtimes.Runtime.Env).
func InstanceEnv(f Function) []string {
	env := map[string]string{
		"PATH":                    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME":                    "/tmp",
		"LANG":                    "C.UTF-8",
		"TMPDIR":                  "/tmp",
		"PYTHONDONTWRITEBYTECODE": "1",
	}
	for k, v := range f.Env {
		env[k] = v
	}
	if rt, err := runtimes.Lookup(f.Runtime); err == nil {
		for _, kv := range rt.Env {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	env["CATALYZER_CONTROL_FD"] = "3"
	env["CATALYZER_FUNCTION"] = f.Name
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Limits turns f's limits into cgroup limits.
func Limits(f Function) cgroup.Limits {
	pids := f.PidsMax
	if pids == 0 {
		pids = 256
	}
	return cgroup.Limits{MemoryBytes: int64(f.MemoryMB) << 20, PidsMax: pids, CPUMillis: f.CPUMillis}
}

// NewID returns a fresh instance id: prefix, dash, 12 hex digits.
func NewID(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + "-" + hex.EncodeToString(b[:])
}

// ControlPair returns a connected AF_UNIX stream pair: the daemon's end
// (as a net.Conn) and the instance's end (as a file to pass as fd 3).
func ControlPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("control socketpair: %w", err)
	}
	pf := os.NewFile(uintptr(fds[0]), "control")
	defer pf.Close()
	c, err := net.FileConn(pf)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("control conn: %w", err)
	}
	return c, os.NewFile(uintptr(fds[1]), "control-instance"), nil
}

// drainPipe returns a pipe whose read end is copied into w until EOF.
func drainPipe(w io.Writer) (r, wr *os.File, err error) {
	r, wr, err = os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	go func() {
		io.Copy(w, r)
		r.Close()
	}()
	return r, wr, nil
}

func stderrHint(t *tail) string {
	if s := t.String(); s != "" {
		return "; runtime stderr: " + s
	}
	return ""
}
