package boot

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/atomicfile"
	"github.com/catalyzer/catalyzer/internal/cleanup"
	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/image"
	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
	"github.com/catalyzer/catalyzer/internal/sfork"
	"github.com/catalyzer/catalyzer/internal/timing"
)

// ImageMount is where a restoring sandbox sees its image (pages.img is
// mapped from there); it is unmounted before the restored code runs.
const ImageMount = "/.catalyzer-image"

// Restore boots instances by restoring a checkpoint image of the
// function's template (package image) into a pre-built sandbox env:
// init-less boot. Images are taken from the fork templates in the
// background and kept on disk, so a restarted daemon restores at once.
// Warm boot uses the image opened once (plan decoded and cached, pages in
// the page cache); cold boot opens it from disk each time and starts
// reading all of pages.img into the page cache before it takes its env
// (the plan reads every page of it: anonymous memory is copied).
type Restore struct {
	// Fork provides the templates that images are taken from.
	Fork *Fork
	// Dir holds the images, one directory per function and image key.
	Dir string
	// Pools sizes the pool of prepared restorers kept per function.
	Pools   Pools
	OnImage func(function string, err error)
	// OnWorkingSet, if set, is told how recording an image's working set
	// went (after the first invocation of its first cold boot): the bytes
	// recorded, or why it failed. The platform's cold boots no longer
	// prefetch it (they read ahead all of pages.img); it is kept for
	// image.RestoreOptions.Prefetch users and as a measure.
	OnWorkingSet func(function string, bytes int64, err error)
	OnEnv        func(function string, fromPool bool)

	initOnce sync.Once
	tr       *ptrace.Tracer
	imgs     registry[*imageEntry]
}

type imageEntry struct {
	fn    Function
	dir   string
	built chan struct{}
	err   error
	img   *image.Image // warm boot: opened once
	// reconnect maps image fds to the restorer's (see reconnectFile).
	reconnect map[int]int
	pool      *sandbox.Pool[*restorer]
	layer     *sandbox.LayerTmpfs // tmpfs copy of the image's rootfs layer
	layerCg   *cgroup.Group       // what the layer's tmpfs pages are charged to
	stop      chan struct{}
	wsMu      sync.Mutex
	wsSet     bool
}

// Engine returns the engine of mode (ModeWarm or ModeCold, which reads
// pages.img ahead).
func (r *Restore) Engine(mode Mode) Engine { return restoreEngine{r, mode, mode == ModeCold} }

// ColdWithoutPrefetch is the cold engine that skips the readahead (to
// measure what it buys: catalyzer bench --no-prefetch).
func (r *Restore) ColdWithoutPrefetch() Engine { return restoreEngine{r, ModeCold, false} }

type restoreEngine struct {
	r        *Restore
	mode     Mode
	prefetch bool
}

func (e restoreEngine) Mode() Mode { return e.mode }
func (e restoreEngine) Boot(ctx context.Context, f Function) (*Instance, error) {
	return e.r.boot(ctx, f, e.mode == ModeCold, e.prefetch)
}

func (r *Restore) init() {
	r.initOnce.Do(func() {
		r.tr = ptrace.NewTracer()
	})
}

// imageKey names what an image depends on: the function's code, runtime,
// handler and environment (the state its init produced).
func imageKey(f Function) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%d\x00", f.CodeDir, f.Runtime, f.Handler, f.OutputLimit)
	// Images whose anonymous memory maps pages.img (before CopyAnon)
	// are not reused.
	fmt.Fprintf(h, "copyanon\x00")
	keys := make([]string, 0, len(f.Env))
	for k := range f.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\x00", k, f.Env[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

// Prepare makes fn's image available in the background: from disk if a
// matching one is there, else checkpointed from fn's fork template once
// it is ready.
func (r *Restore) Prepare(fn Function) {
	r.init()
	e := &imageEntry{fn: fn, dir: filepath.Join(r.Dir, fn.Name, imageKey(fn)), built: make(chan struct{}), stop: make(chan struct{})}
	old, ok := r.imgs.put(fn.Name, e)
	if !ok {
		return
	}
	if old != nil {
		go func() {
			old.close()
			if old.dir != e.dir {
				os.RemoveAll(old.dir) // the function changed: its old image is garbage
			}
		}()
	}
	go func() {
		err := r.build(e)
		if r.OnImage != nil {
			r.OnImage(fn.Name, err)
		}
	}()
}

// Drop forgets name's image and deletes its files.
func (r *Restore) Drop(name string) {
	r.init()
	if e := r.imgs.take(name); e != nil {
		e.close()
	}
	os.RemoveAll(filepath.Join(r.Dir, name))
}

// Status is where name's image stands.
func (r *Restore) Status(name string) BuildStatus {
	r.init()
	return r.imgs.get(name).status()
}

// status is e's BuildStatus (NotBuilt for nil).
func (e *imageEntry) status() BuildStatus {
	if e == nil {
		return BuildStatus{State: NotBuilt}
	}
	select {
	case <-e.built:
	default:
		return BuildStatus{State: Building}
	}
	if e.err != nil {
		return BuildStatus{State: BuildFailed, Err: e.err}
	}
	return BuildStatus{State: Built}
}

func (e *imageEntry) close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	<-e.built
	if e.pool != nil {
		e.pool.Close()
	}
	if e.layer != nil {
		e.layer.Release()
	}
	if e.layerCg != nil {
		e.layerCg.Delete() // its charges went with the tmpfs
	}
}

// captureLayerHelper copies an image's rootfs layer into a tmpfs from a
// child process in the layer's own cgroup (sandbox.RunHelper): tmpfs
// pages are charged to their writer, which must not be the daemon.
const captureLayerHelper = "capture-layer"

func init() {
	sandbox.RegisterHelper(captureLayerHelper, func(args []string) error {
		if len(args) != 2 {
			return fmt.Errorf("usage: %s SRC DIR", captureLayerHelper)
		}
		return image.CaptureLayer(args[0], args[1])
	})
}

func (r *Restore) build(e *imageEntry) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("image of %s: %w", e.fn.Name, err)
		}
		e.err = err
		close(e.built)
	}()
	img, err := image.Open(e.dir)
	if err == nil {
		// Found on disk (a restarted daemon): check every page once.
		err = img.Verify()
	}
	if err != nil {
		if img, err = r.checkpoint(e); err != nil {
			return err
		}
	}
	if e.reconnect, err = readReconnect(e.dir); err != nil {
		return err
	}
	e.img = img
	// The image's rootfs layer lies on the host's root file system, which
	// overlayfs refuses as a layer above "/": use a tmpfs copy, sized to
	// what it holds (it was the template's upper, no larger than an
	// instance's), named for this entry alone: functions with one image
	// key each have their own (on one shared name they were stacked, and
	// releasing one unmounted another's).
	src := filepath.Join(e.dir, image.LayerDir)
	size, err := image.LayerBytes(src, sandbox.DefaultUpperBytes)
	if err != nil {
		return err
	}
	id := NewID("layer")
	layer, err := sandbox.NewLayerTmpfs(r.Fork.Scratch.CgroupParent, id, size)
	if err != nil {
		return err
	}
	// Its pages are charged to a cgroup of its own, bounded by its size
	// (and the copying helper's own few MiB), not to the daemon.
	cg, err := cgroup.New(r.Fork.Scratch.CgroupParent, id, cgroup.Limits{MemoryBytes: size + 64<<20})
	if err != nil {
		layer.Release()
		return err
	}
	if err := sandbox.RunHelper(cg, captureLayerHelper, src, layer.Dir); err != nil {
		layer.Release()
		cg.Delete()
		return fmt.Errorf("capture layer: %w", err)
	}
	e.layer, e.layerCg = layer, cg
	e.pool = sandbox.NewPool(r.Pools.size(), r.Pools.workers(),
		func() (*restorer, error) { return r.prepare(e) }, r.release)
	return nil
}

// envConfig is the sandbox env an instance of e is restored into.
func (r *Restore) envConfig(e *imageEntry) sandbox.EnvConfig {
	id := NewID("rs")
	cfg := sandbox.EnvConfig{
		ID:       id,
		Hostname: id,
		Lowers:   []string{filepath.Join(e.layer.Dir, image.LayerDir)},
		Rootfs:   r.Fork.Scratch.Rootfs,
		Binds: []sandbox.Bind{
			{Source: e.fn.CodeDir, Target: CodeMount},
			{Source: r.Fork.Scratch.AgentDir, Target: AgentMount},
			{Source: e.dir, Target: ImageMount},
		},
		Network:      sandbox.NetworkNone,
		Limits:       Limits(e.fn),
		CgroupParent: r.Fork.Scratch.CgroupParent,
	}
	if e.fn.NetworkHost {
		cfg.Network = sandbox.NetworkHost
	}
	return cfg
}

// restorer is a restore target prepared off the boot path, so that a boot
// is only the plan: a restorer process (PID 1 of its own PID namespace)
// seized on the engine's tracer, inside its env (joined, /proc built, in
// its cgroup), with the executor mapped where the image wants it, and the
// daemon's ends of its control channel and output pipes.
type restorer struct {
	cmd *exec.Cmd
	tc  *ptrace.Tracee
	sb  *sandbox.Sandbox
	io  *instanceIO
}

func (r *Restore) prepare(e *imageEntry) (*restorer, error) {
	pipes, err := newInstanceIO()
	if err != nil {
		return nil, err
	}
	defer pipes.closeChildEnds()
	x := &restorer{io: pipes}
	if x.cmd, x.tc, x.sb, err = StartRestorerIn(r.tr, r.envConfig(e), e.fn.uidBase(), []*os.File{pipes.child, pipes.outW, pipes.errW}, e.img.ExecAddr()); err != nil {
		pipes.close()
		return nil, err
	}
	return x, nil
}

// StartRestorerIn starts a restorer process ready to restore an image
// into a new env built from cfg: PID 1 of a new PID namespace, seized on
// tr (seccomp suspended), with files as its fds 3, 4, ..., adopted by the
// env (in its cgroup), with the executor mapped at execAddr (the
// image's), and joined to the env with its own /proc. With uidBase != 0
// the restorer is root of a user namespace of its own whose root maps to
// host uid uidBase (the function's range), and the env is built inside
// that namespace: what the restorer's capabilities allow (the plan needs
// CAP_CHECKPOINT_RESTORE, CAP_SYS_ADMIN) is allowed there only. On error
// nothing of it remains.
func StartRestorerIn(tr *ptrace.Tracer, cfg sandbox.EnvConfig, uidBase int, files []*os.File, execAddr uintptr) (*exec.Cmd, *ptrace.Tracee, *sandbox.Sandbox, error) {
	var cl cleanup.Cleanup
	defer cl.Clean()
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	var env *sandbox.Env
	files = append([]*os.File{}, files...)
	envFD := 3 + len(files)
	if uidBase == 0 {
		var err error
		if env, err = sandbox.NewEnv(cfg); err != nil {
			return nil, nil, nil, err
		}
		cl.Add(func() { env.Release() })
		files = append(files, env.PidFD())
	} else {
		// A mount namespace of its own too: there it may create the proc
		// it moves into the env (the kernel wants a fully visible proc
		// where one is mounted in a user namespace).
		attr.Cloneflags |= syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS
		m := []syscall.SysProcIDMap{{ContainerID: 0, HostID: uidBase, Size: sandbox.UIDMapSize}}
		attr.UidMappings, attr.GidMappings, attr.GidMappingsEnableSetgroups = m, m, true
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	cmd, tc, err := image.StartRestorerAttr(tr, files, attr, ptrace.SuspendSeccomp(true))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("restorer: %w", err)
	}
	cl.Add(func() { cmd.Process.Kill(); cmd.Wait() })
	var join *ptrace.Batch
	if uidBase == 0 {
		join = joinBatch(envFD)
	} else {
		users, err := sandbox.OpenUserNS(tc.Pid(), uidBase)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("restorer: %w", err)
		}
		cfg.UserNS = users
		env, err = sandbox.NewEnv(cfg)
		users.Close() // the restorer and the env's holder keep it alive
		if err != nil {
			return nil, nil, nil, err
		}
		cl.Add(func() { env.Release() })
		join = joinPathsBatch(env.NamespacePaths())
	}
	// Accounted from the start: the restored memory faults into its cgroup.
	sb, err := env.Adopt(tc.Pid())
	if err != nil {
		return nil, nil, nil, err
	}
	cl.Add(func() { sb.Destroy() })
	err = tr.Do(func() error {
		if err := tc.InstallExecutorAt(execAddr); err != nil {
			return err
		}
		_, err := tc.Exec(join)
		return err
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("restorer: join env: %w", err)
	}
	cl.Release()
	return cmd, tc, sb, nil
}

// release destroys a prepared restorer that was never used.
func (r *Restore) release(x *restorer) error {
	err := x.sb.Destroy() // killed, and seen dead
	x.cmd.Wait()          // reap it: dead, its tracer has nothing left to see
	x.io.close()
	return err
}

// checkpoint waits for fn's fork template and checkpoints it into a
// fresh image directory, with its rootfs changes.
func (r *Restore) checkpoint(e *imageEntry) (*image.Image, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-e.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	// Through the template's retried failures: a template that builds
	// at its second try still gets its image.
	st, err := r.Fork.WaitBuilt(ctx, e.fn.Name)
	switch {
	case err != nil:
		// Only e.stop ends ctx: the function was deleted or redeployed
		// before its template was built. The caller's request names a
		// function that is gone (or another version of it): 404, as the
		// platform answers for a boot of a deleted function.
		return nil, fmt.Errorf("function was deleted or replaced before its template was built (%w): %w", err, errdefs.ErrNotFound)
	case st.State == BuildFailed:
		// The template's own error: what it wraps (ErrNotSupported for a
		// multi-threaded runtime) must reach the caller (501, not 500).
		return nil, fmt.Errorf("no template to checkpoint: %w", st.Err)
	case st.State != Built:
		return nil, fmt.Errorf("no template to checkpoint (%s)", st)
	}
	tmp := e.dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return nil, err
	}
	var upper string
	err = r.Fork.WithFrozen(e.fn.Name, func(t Frozen) error {
		upper = t.UpperDir
		rc, err := reconnectMap(t.Tracee.Pid())
		if err != nil {
			return err
		}
		fds := make([]int, 0, len(rc))
		for fd := range rc {
			fds = append(fds, fd)
		}
		if _, err := image.CheckpointTracee(t.Tracee, tmp, image.Options{
			Reconnect:          fds,
			Drop:               []int{forkChannelFD},
			SeccompReinstalled: true,
			// Credentials as the template sees them in its user
			// namespace: restores run as root of one of the same range.
			IDBase:  t.UIDBase,
			Threads: t.Threads,
			// Anonymous memory restored as anonymous memory (pages
			// read in at boot), not mapped from pages.img: after
			// MADV_DONTNEED it must read zeros, as allocators
			// (jemalloc's purge, calloc) rely on, never the
			// template's bytes. The cost is measured in
			// docs/ARCHITECTURE.md (image.BenchmarkCopyAnon).
			CopyAnon: true,
		}); err != nil {
			return err
		}
		return writeReconnect(tmp, rc)
	})
	if err == nil {
		err = image.CaptureLayer(upper, tmp)
	}
	if err == nil {
		os.RemoveAll(e.dir)
		err = os.Rename(tmp, e.dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	return image.Open(e.dir)
}

// reconnectFile lists, in an image made from a template, which of its fds
// take the instance's control channel, stdout or stderr at restore: fd 3
// and every descriptor of the same pipe as its stdout or stderr (the
// agents hold no copy of them between calls; a native function may).
const reconnectFile = "reconnect"

// reconnectMap maps every fd of the template pid that is its control
// channel (fd 3) or the same pipe as its stdout or stderr to the
// restorer's fd for it.
func reconnectMap(pid int) (map[int]int, error) {
	links, err := procfs.FDLinks(pid)
	if err != nil {
		return nil, err
	}
	targets := map[string]int{links[1]: rsStdout, links[2]: rsStderr}
	out := map[int]int{3: rsControl}
	for fd, l := range links {
		if fd == 3 || fd == forkChannelFD {
			continue
		}
		if t, ok := targets[l]; ok && strings.HasPrefix(l, "pipe:") {
			out[fd] = t
		}
	}
	return out, nil
}

func writeReconnect(dir string, m map[int]int) error {
	return atomicfile.WriteFile(filepath.Join(dir, reconnectFile), encodeReconnect(m), 0o644)
}

func readReconnect(dir string) (map[int]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, reconnectFile))
	if err != nil {
		return nil, err
	}
	m, err := parseReconnect(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", reconnectFile, err)
	}
	return m, nil
}

// encodeReconnect is the reconnect file: one "FD TARGET" line per fd, by
// fd.
func encodeReconnect(m map[int]int) []byte {
	fds := make([]int, 0, len(m))
	for fd := range m {
		fds = append(fds, fd)
	}
	sort.Ints(fds)
	var b strings.Builder
	for _, fd := range fds {
		fmt.Fprintf(&b, "%d %d\n", fd, m[fd])
	}
	return []byte(b.String())
}

// parseReconnect reads what encodeReconnect wrote: each line two decimal
// numbers, an fd (0 to 1<<20, each once) and a restorer fd (rsControl,
// rsStdout or rsStderr). Anything else is ErrInvalid.
func parseReconnect(b []byte) (map[int]int, error) {
	m := map[int]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("bad line %q: %w", line, errdefs.ErrInvalid)
		}
		fd, err1 := strconv.Atoi(f[0])
		t, err2 := strconv.Atoi(f[1])
		if err1 != nil || err2 != nil || fd < 0 || fd >= 1<<20 || t < rsControl || t > rsStderr {
			return nil, fmt.Errorf("bad line %q: %w", line, errdefs.ErrInvalid)
		}
		if _, dup := m[fd]; dup {
			return nil, fmt.Errorf("fd %d twice: %w", fd, errdefs.ErrInvalid)
		}
		m[fd] = t
	}
	return m, nil
}

// ImageInfo describes a function's checkpoint image for operators. It is
// no wire format: the API shows it through its own type (wire.Image).
type ImageInfo struct {
	Status string
	Dir    string
	// PagesBytes is what pages.img occupies on disk (it is sparse);
	// PagesApparent its size.
	PagesBytes    int64
	PagesApparent int64
	PlanEntries   int
	WorkingSet    int64
}

// Info describes name's image. Status and details come from one entry:
// an image replaced meanwhile (by a redeploy) is seen building, and its
// fields are read only once it is built.
func (r *Restore) Info(name string) ImageInfo {
	r.init()
	e := r.imgs.get(name)
	st := e.status()
	info := ImageInfo{Status: st.String()}
	if st.State != Built {
		return info
	}
	info.Dir = e.dir
	var fst unix.Stat_t
	if unix.Stat(filepath.Join(e.dir, image.PagesFile), &fst) == nil {
		info.PagesBytes, info.PagesApparent = fst.Blocks*512, fst.Size
	}
	if plan, err := e.img.Plan(); err == nil {
		info.PlanEntries = plan.Len()
	}
	ws := e.img.WorkingSet
	if len(ws) == 0 {
		// Recorded after the image was opened (by the first cold boot).
		if img, err := image.Open(e.dir); err == nil {
			ws = img.WorkingSet
		}
	}
	for _, rg := range ws {
		info.WorkingSet += int64(rg.Len)
	}
	return info
}

// Restorer fds: what a platform restorer inherits.
const (
	rsControl = 3
	rsStdout  = 4
	rsStderr  = 5
)

// boot restores an instance of fn from its image: it waits for the
// image, opens it again when cold (and reads pages.img ahead when
// prefetch), takes a prepared restorer, runs the plan in it and reseeds
// the restored agent. Each step is a phase of the instance's boot.
func (r *Restore) boot(ctx context.Context, fn Function, cold, prefetch bool) (*Instance, error) {
	r.init()
	start := agent.Monotonic()
	mode := ModeWarm
	if cold {
		mode = ModeCold
	}
	e, err := r.built(ctx, fn.Name)
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
	}
	clock := timing.Start()
	img := e.img
	if cold {
		if img, err = openCold(e.dir, prefetch, clock); err != nil {
			return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
		}
	}
	x, fromPool, err := e.pool.Get()
	if err != nil {
		return nil, fmt.Errorf("boot %s: sandbox env: %w", fn.Name, err)
	}
	if r.OnEnv != nil {
		r.OnEnv(fn.Name, fromPool)
	}
	clock.Mark("env")
	inst, err := r.restoreInto(ctx, fn, e, img, x, mode, start, clock)
	if err != nil {
		return nil, fmt.Errorf("boot %s: %w", fn.Name, err)
	}
	if cold {
		r.recordWorkingSetAfterFirst(e, img, inst)
	}
	return inst, nil
}

// built waits until name's image is built (or ctx ends) and returns its
// entry, or why the image cannot serve a boot.
func (r *Restore) built(ctx context.Context, name string) (*imageEntry, error) {
	e := r.imgs.get(name)
	if e == nil {
		return nil, fmt.Errorf("no image: %w", errdefs.ErrNotReady)
	}
	select {
	case <-e.built:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for its image to be built: %w: %w", ctx.Err(), errdefs.ErrNotReady)
	}
	if e.err != nil {
		return nil, e.err
	}
	return e, nil
}

// openCold opens the image in dir from disk, as a cold boot does, and
// with prefetch starts reading its pages.img into the page cache.
func openCold(dir string, prefetch bool, clock *timing.Clock) (*image.Image, error) {
	img, err := image.Open(dir)
	if err != nil {
		return nil, err
	}
	clock.Mark("open")
	if prefetch {
		readAhead(filepath.Join(dir, image.PagesFile))
		clock.Mark("readahead")
	}
	return img, nil
}

// restoreInto runs img's plan in the prepared restorer x and reseeds the
// restored agent: fn's instance, ready to invoke. On error x is destroyed.
func (r *Restore) restoreInto(ctx context.Context, fn Function, e *imageEntry, img *image.Image, x *restorer, mode Mode, start int64, clock *timing.Clock) (*Instance, error) {
	pid, st, err := image.Restore(r.tr, img, image.RestoreOptions{
		Tracee:    x.tc,
		Reconnect: e.reconnect,
		PagesPath: filepath.Join(ImageMount, image.PagesFile),
		// The plan reads every page of pages.img (CopyAnon), so the
		// readahead above is the prefetch: the working set's own
		// sequential read before the plan (7.9-9.4 ms for a Python
		// hello) cost more than it saved the plan (docs/ARCHITECTURE.md).
		Prefetch:   false,
		Epilogue:   LockdownBatch,
		ThreadCaps: &threadCaps,
		// The instance keeps the (mostly untouched) executor mapping: its
		// removal cost two round trips (~0.2 ms); fork children keep theirs
		// too.
		KeepExecutor: true,
	})
	if err != nil {
		// Restore killed it; reap it and free its sandbox.
		x.sb.Destroy()
		go x.cmd.Wait()
		x.io.close()
		return nil, fmt.Errorf("%w%s", err, stderrHint(x.io.stderr))
	}
	cmd, sb, pipes := x.cmd, x.sb, x.io
	cl := cleanup.Make(func() { sb.Destroy(); pipes.close() })
	defer cl.Clean()
	// Detached: no longer traced, so reaping it is ours again (the
	// sandbox watches its exit through a pidfd).
	go cmd.Wait()
	clock.Add("restore-", st.Phases)
	conn := agent.NewConn(pipes.parent)
	if _, err := conn.Forked(ctx); err != nil {
		return nil, fmt.Errorf("restored instance %d: %w%s", pid, err, stderrHint(pipes.stderr))
	}
	clock.Mark("reseed")
	cl.Release()
	return newInstance(sb.ID(), mode, fn, start, clock.Phases, sb, conn, pipes.stdout, pipes.stderr), nil
}

// recordWorkingSetAfterFirst makes the first invocation of the first cold
// boot of an image that has no working set yet record one (the pages it
// touched) for the next cold boots.
func (r *Restore) recordWorkingSetAfterFirst(e *imageEntry, img *image.Image, inst *Instance) {
	e.wsMu.Lock()
	defer e.wsMu.Unlock()
	if e.wsSet || len(img.WorkingSet) != 0 {
		return
	}
	e.wsSet = true
	inst.afterFirst = func() {
		rs, err := image.RecordWorkingSet(inst.Pid(), img)
		if r.OnWorkingSet != nil {
			var n int64
			for _, rg := range rs {
				n += int64(rg.Len)
			}
			r.OnWorkingSet(e.fn.Name, n, err)
		}
	}
}

// readAhead starts reading all of path into the page cache and returns
// without waiting (POSIX_FADV_WILLNEED submits the reads): the disk works
// while the boot takes its env and runs the plan, which reads the pages
// in. Best effort: a failure only leaves the plan to read from disk.
func readAhead(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	_ = unix.Fadvise(fd, 0, 0, unix.FADV_WILLNEED)
	unix.Close(fd)
}

// joinBatch is the restorer's prelude: join its env (it is PID 1 of a new
// PID namespace already), then build its /proc.
func joinBatch(envFD int) *ptrace.Batch {
	b := ptrace.NewBatch()
	b.Add(unix.SYS_SETNS, ptrace.Lit(int64(envFD)), ptrace.Lit(int64(sandbox.EnvNamespaces)))
	b.Add(unix.SYS_CLOSE, ptrace.Lit(int64(envFD)))
	m := sandbox.ProcMounts()[0] // the proc itself; procMounts masks it
	sfork.AddMount(b, sfork.Mount{Source: m.Source, Target: m.Target, FSType: m.FSType, Flags: m.Flags, Data: m.Data})
	for _, m := range procMounts {
		sfork.AddMount(b, m)
	}
	return b
}

// joinPathsBatch is the prelude of a restorer in a user namespace of its
// own, which was started before its env and so has no pidfd of it: create
// its proc (in its own mount namespace, where that is allowed), open the
// env's namespaces by path, join each, attach the proc there, mask it.
func joinPathsBatch(paths []string) *ptrace.Batch {
	b := ptrace.NewBatch()
	fsfd := b.Add(unix.SYS_FSOPEN, b.String("proc"), ptrace.Lit(unix.FSOPEN_CLOEXEC))
	b.Add(unix.SYS_FSCONFIG, fsfd.Result(), ptrace.Lit(unix.FSCONFIG_CMD_CREATE), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
	proc := b.Add(unix.SYS_FSMOUNT, fsfd.Result(), ptrace.Lit(unix.FSMOUNT_CLOEXEC),
		ptrace.Lit(unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC))
	b.Add(unix.SYS_CLOSE, fsfd.Result())
	var fds []ptrace.Ref
	for _, p := range paths {
		fds = append(fds, b.Add(unix.SYS_OPENAT, ptrace.Lit(unix.AT_FDCWD), b.String(p), ptrace.Lit(unix.O_RDONLY|unix.O_CLOEXEC), ptrace.Lit(0)))
	}
	for _, fd := range fds {
		b.Add(unix.SYS_SETNS, fd.Result(), ptrace.Lit(0))
		b.Add(unix.SYS_CLOSE, fd.Result())
	}
	b.Add(unix.SYS_CHDIR, b.String("/"))
	b.Add(unix.SYS_MOVE_MOUNT, proc.Result(), b.String(""), ptrace.Lit(unix.AT_FDCWD), b.String("/proc"),
		ptrace.Lit(unix.MOVE_MOUNT_F_EMPTY_PATH))
	b.Add(unix.SYS_CLOSE, proc.Result())
	for _, m := range procMounts {
		sfork.AddMount(b, m)
	}
	return b
}

// LockdownBatch is the restorer's epilogue, once the image is in place:
// hide the image, then take the sandbox's security settings (Docker's
// capabilities in every set, no_new_privs, Docker's seccomp profile, the
// filter synced to the re-created threads, which also get no_new_privs
// from it; their capabilities are bounded by threadCaps).
func LockdownBatch(t *ptrace.Tracee) (*ptrace.Batch, error) {
	prog, err := sandbox.SeccompProgram(sandbox.Capabilities())
	if err != nil {
		return nil, err
	}
	b := ptrace.NewBatch()
	// Hide the image under an empty read-only tmpfs: a bind the daemon
	// made for a root in a user namespace is locked there (umount is
	// EINVAL), and the instance cannot remove the cover (no CAP_SYS_ADMIN
	// once this batch is done).
	sfork.AddMount(b, sfork.Mount{Source: "tmpfs", Target: ImageMount, FSType: "tmpfs",
		Flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, Data: "size=4k,mode=000"})
	last, err := capability.LastCap()
	if err != nil {
		return nil, err
	}
	for c := 0; c <= int(last); c++ {
		if dockerCaps&(1<<uint(c)) == 0 {
			b.Add(unix.SYS_PRCTL, ptrace.Lit(unix.PR_CAPBSET_DROP), ptrace.Lit(int64(c))).With(ptrace.IgnoreError)
		}
	}
	sfork.AddCapset(b, finalCaps)
	b.Add(unix.SYS_PRCTL, ptrace.Lit(unix.PR_SET_NO_NEW_PRIVS), ptrace.Lit(1), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
	// Non-dumpable, as fork instances are (they inherit it from their
	// template): only the daemon may open its memory.
	b.Add(unix.SYS_PRCTL, ptrace.Lit(unix.PR_SET_DUMPABLE), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0), ptrace.Lit(0))
	farg := b.Bytes(initwire.EncodeFilter(prog))
	fprog := b.Space(ptrace.SockFprogSize)
	// Synced to every thread (a restore's re-created threads exist by
	// now; TSYNC_ESRCH: a failure is an error, not a tid).
	b.Add(unix.SYS_SECCOMP, ptrace.Lit(unix.SECCOMP_SET_MODE_FILTER),
		ptrace.Lit(unix.SECCOMP_FILTER_FLAG_TSYNC|unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH), fprog)
	addr, err := t.DataAddr(b, farg)
	if err != nil {
		return nil, err
	}
	b.SetBytes(fprog, ptrace.SockFprog(uint16(len(prog)), uint64(addr)))
	return b, nil
}

// threadCaps bound the capabilities of a restore's re-created threads as
// LockdownBatch bounds the main thread's: Docker's, in every set.
var threadCaps = ptrace.ThreadCaps{Inheritable: dockerCaps, Permitted: dockerCaps, Effective: dockerCaps,
	Bounding: dockerCaps, Ambient: dockerCaps}

// Close drops every image entry (files stay on disk for the next start).
func (r *Restore) Close() error {
	r.init()
	for _, e := range r.imgs.close() {
		e.close()
	}
	return r.tr.Close()
}
