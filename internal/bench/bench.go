// Package bench measures boot latency through the daemon's API and, in
// the same run, the baselines it must be compared with: the same runtime
// and handler fork+exec'd with no sandbox at all ("direct"), and under
// bubblewrap and runc when they are installed. Numbers are medians and
// tails of many runs, reported next to ratios against the baselines —
// never absolute thresholds.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/client"
)

// Options of one benchmark run.
type Options struct {
	Client   *client.Client
	Function string
	Boot     string // scratch, fork, cold, warm: every invocation boots a fresh instance
	N        int
	// Concurrency lists the levels to run, each o.N boots with that many
	// in flight at once (default 1). The report's headline numbers are
	// the first level's; Report.Sweep has every level.
	Concurrency []int
	Event       []byte
	// FirstInvocation also measures how long the handler runs on a
	// scratch instance's first and second invocation, to set next to the
	// first invocation after this mode's boots (which every run measures:
	// each boot's invocation is its instance's first).
	FirstInvocation bool
	// ColdImage makes each boot read the image from disk (cold boot):
	// before it, the function's idle instances are destroyed (they map
	// the image's pages) and the image's files are evicted from the page
	// cache. The runtime's own files stay cached, as on a serving host.
	ColdImage bool
	// DropCaches empties the whole page cache (and dentries and inodes)
	// before each boot: everything cold, the runtime's files too. Needs
	// root on the daemon's host.
	DropCaches bool
	// NoPrefetch turns off the readahead of cold boots.
	NoPrefetch bool
	// PSSAt lists instance counts at which to measure the proportional set
	// size per instance (booted in this mode, kept alive), before the
	// latency run.
	PSSAt []int
	// Baselines to run locally (the daemon must be on this host):
	// "direct", "bwrap", "runc", "zygote" (which brings "kernel-fork"
	// with it); those not available are skipped and listed in
	// Report.Skipped.
	Baselines []string
}

// Report is the result of a run. Field names are the --json contract.
type Report struct {
	Function    string                    `json:"function"`
	Runtime     string                    `json:"runtime"`
	Boot        string                    `json:"boot"`
	N           int                       `json:"n"`
	Concurrency int                       `json:"concurrency"`
	Errors      int                       `json:"errors"`
	P50         int64                     `json:"p50_us"` // accept to response
	P90         int64                     `json:"p90_us"`
	P99         int64                     `json:"p99_us"`
	Max         int64                     `json:"max_us"`
	Entry       Summary                   `json:"start_to_entry"` // boot start to handler entry
	Client      Summary                   `json:"client_round_trip"`
	Phases      map[string]int64          `json:"phases"` // phase → p50 µs
	PhaseOrder  []string                  `json:"phase_order"`
	Baselines   map[string]int64          `json:"baselines"` // name → start-to-entry p50 µs
	BaselineRun map[string]BaselineResult `json:"baseline_detail,omitempty"`
	Ratios      map[string]float64        `json:"ratio_vs_baseline"` // baseline p50 / our start-to-entry p50
	Skipped     map[string]string         `json:"skipped_baselines,omitempty"`
	// Fork boot only: the template, its env pool, and the proportional
	// set size of the idle forked instances the run left.
	Template *TemplateReport `json:"template,omitempty"`
	// Handler is how long the handler ran on each boot's invocation (its
	// instance's first), exit minus entry.
	Handler Summary `json:"first_invocation_handler"`
	// First compares it with a scratch instance's first and second
	// invocations (--first-invocation).
	First *FirstInvocation `json:"first_invocation,omitempty"`
	// Sweep has one entry per concurrency level, in the order run.
	Sweep []Level `json:"concurrency_sweep,omitempty"`
	// Compare sets our distributions against the baselines' (and other
	// modes' of the same run), p50 and p99.
	Compare []Comparison `json:"compare,omitempty"`
	// Cold and warm boot: the image, and PSS per instance (median KiB) at
	// each count of live instances asked for.
	Image      *ImageReport     `json:"image,omitempty"`
	PSS        map[string]int64 `json:"pss_kb_per_instance,omitempty"`
	DropCaches bool             `json:"drop_caches,omitempty"`
	ColdImage  bool             `json:"cold_image,omitempty"`
	Prefetch   *bool            `json:"prefetch,omitempty"`
	// The first level's samples (µs), for plots.
	AcceptSamples []int64 `json:"accept_samples_us,omitempty"`
	EntrySamples  []int64 `json:"start_to_entry_samples_us,omitempty"`
}

// ImageReport describes the image behind a cold or warm run.
type ImageReport struct {
	PagesBytes    int64 `json:"pages_bytes"`
	PagesApparent int64 `json:"pages_apparent_bytes"`
	PlanEntries   int   `json:"plan_entries"`
	WorkingSet    int64 `json:"working_set_bytes"`
}

// TemplateReport describes the template behind a fork-boot run.
type TemplateReport struct {
	PSSKB         int64   `json:"pss_kb"`
	IdleForkPSSKB int64   `json:"idle_fork_pss_kb"` // median over the idle forked instances
	PoolReady     int     `json:"pool_ready"`
	PoolOnDemand  uint64  `json:"pool_on_demand"`
	PoolTaken     uint64  `json:"pool_taken"`
	EnvBuildUs    int64   `json:"env_build_us"`   // mean cost of one pre-built env
	RefillPerSec  float64 `json:"refill_per_sec"` // envs one refill goroutine builds per second
}

// BaselineResult is one baseline's distributions.
type BaselineResult struct {
	Entry Summary `json:"start_to_entry"`
	Total Summary `json:"start_to_response"`
	// The samples (µs), for plots.
	EntrySamples []int64 `json:"start_to_entry_samples_us,omitempty"`
	TotalSamples []int64 `json:"start_to_response_samples_us,omitempty"`
}

// FirstInvocation is the handler's run time (µs) on an instance's first
// invocation after this mode's boot, set against a scratch instance's
// first and second invocation.
type FirstInvocation struct {
	Mode          Summary `json:"mode_first"`
	ScratchFirst  Summary `json:"scratch_first"`
	ScratchSecond Summary `json:"scratch_second"`
	// RatioP50 and RatioP99: Mode over ScratchSecond.
	RatioP50 float64 `json:"ratio_p50"`
	RatioP99 float64 `json:"ratio_p99"`
}

// Level is one concurrency level of a sweep.
type Level struct {
	Concurrency int     `json:"concurrency"`
	N           int     `json:"n"`
	Errors      int     `json:"errors"`
	WallUs      int64   `json:"wall_us"`
	BootsPerSec float64 `json:"boots_per_sec"`
	Accept      Summary `json:"accept_to_response"`
	Entry       Summary `json:"start_to_entry"`
	// Against the sweep's concurrency-1 level (0 when it has none):
	// this level's accept-to-response p99 over that level's p50, and its
	// throughput over that level's.
	P99OverSingleP50 float64 `json:"p99_over_single_p50,omitempty"`
	ThroughputVs1    float64 `json:"throughput_vs_c1,omitempty"`
	// EnvsOnDemand counts the envs the mode's pool had to build on the
	// boot path during this level (fork boot; -1 when unknown).
	EnvsOnDemand int64 `json:"envs_on_demand"`
}

// Comparison is one of our distributions over a baseline's, p50 and p99
// (below 1: we are faster). Goal, when set, is the ratio the issue asks
// for at most.
type Comparison struct {
	Name     string  `json:"name"`
	OursP50  int64   `json:"ours_p50_us"`
	OursP99  int64   `json:"ours_p99_us"`
	BaseP50  int64   `json:"base_p50_us"`
	BaseP99  int64   `json:"base_p99_us"`
	RatioP50 float64 `json:"ratio_p50"`
	RatioP99 float64 `json:"ratio_p99"`
	Goal     float64 `json:"goal,omitempty"`
}

// Run runs the benchmark in one boot mode (o.Boot).
func Run(ctx context.Context, o Options) (Report, error) {
	rs, err := RunModes(ctx, o, []string{o.Boot})
	if err != nil {
		return Report{}, err
	}
	return rs[0], nil
}

// RunModes runs the benchmark in each boot mode of modes, one after the
// other, against one set of baselines measured once in the same run:
// every ratio in the reports is between numbers of this one run.
func RunModes(ctx context.Context, o Options, modes []string) ([]Report, error) {
	if o.N <= 0 {
		return nil, fmt.Errorf("bench: -n must be positive")
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1}
	}
	for _, c := range o.Concurrency {
		if c <= 0 {
			return nil, fmt.Errorf("bench: --concurrency %d: want positive levels", c)
		}
	}
	if len(modes) == 0 {
		return nil, fmt.Errorf("bench: --boot must name a mode (scratch, fork, cold, warm)")
	}
	for _, m := range modes {
		if m == "" || m == "auto" {
			return nil, fmt.Errorf("bench: --boot must name a mode (scratch, fork, cold, warm): auto would reuse live instances and measure no boot")
		}
	}
	fn, err := o.Client.Get(ctx, o.Function)
	if err != nil {
		return nil, err
	}
	var reports []Report
	for _, m := range modes {
		mo := o
		mo.Boot = m
		mo.ColdImage = o.ColdImage && m == "cold"
		r, err := runMode(ctx, mo, fn)
		if err != nil {
			return nil, fmt.Errorf("bench: --boot %s: %w", m, err)
		}
		reports = append(reports, r)
	}
	// The scratch instance's second invocation, after the modes' runs
	// (it drains the function's idle instances).
	var first *FirstInvocation
	if o.FirstInvocation {
		if first, err = scratchInvocations(ctx, o); err != nil {
			return nil, err
		}
	}
	base := map[string]BaselineResult{}
	skipped := map[string]string{}
	for _, b := range o.Baselines {
		if b == Zygote {
			z, k, err := runZygote(ctx, fn.Runtime, fn.Handler, fn.CodePath, o.Event, o.N)
			if err != nil {
				skipped[b] = err.Error()
				continue
			}
			base[Zygote], base[KernelFork] = z, k
			continue
		}
		res, err := runBaseline(ctx, b, fn.Runtime, fn.Handler, fn.CodePath, o.Event, o.N)
		if err != nil {
			skipped[b] = err.Error()
			continue
		}
		base[b] = res
	}
	for i := range reports {
		r := &reports[i]
		for k, v := range skipped {
			r.Skipped[k] = v
		}
		for k, v := range base {
			r.addBaseline(k, v)
		}
		if first != nil {
			f := *first
			f.Mode = r.Handler
			f.RatioP50, f.RatioP99 = ratio(f.Mode.P50, f.ScratchSecond.P50), ratio(f.Mode.P99, f.ScratchSecond.P99)
			r.First = &f
		}
		r.compare(reports)
	}
	return reports, nil
}

// runMode measures o.Boot at each concurrency level.
func runMode(ctx context.Context, o Options, fn wire.Function) (Report, error) {
	invoke, err := invoker(ctx, o)
	if err != nil {
		return Report{}, err
	}
	// One untimed invocation first so a missing template or a broken
	// function fails fast with the daemon's own error.
	if _, err := invoke(); err != nil {
		return Report{}, fmt.Errorf("bench: warm-up invocation: %w", err)
	}
	pss, err := measurePSS(ctx, o, invoke)
	if err != nil {
		return Report{}, err
	}
	var s0 *samples
	var sweep []Level
	for _, c := range o.Concurrency {
		before := onDemand(ctx, o)
		start := time.Now()
		s := sampleBoots(ctx, o, c, invoke)
		wall := time.Since(start)
		lv := Level{Concurrency: c, N: len(s.accept), Errors: s.errs, WallUs: wall.Microseconds(),
			Accept: Summarize(s.accept), Entry: Summarize(s.entry), EnvsOnDemand: -1}
		if wall > 0 {
			lv.BootsPerSec = float64(len(s.accept)) / wall.Seconds()
		}
		if after := onDemand(ctx, o); before >= 0 && after >= before {
			lv.EnvsOnDemand = after - before
		}
		sweep = append(sweep, lv)
		if s0 == nil {
			s0 = s
		}
	}
	if len(s0.accept) == 0 {
		return Report{}, fmt.Errorf("bench: every invocation failed; first error: %v", s0.firstErr)
	}
	for i := range sweep {
		for _, one := range sweep {
			if one.Concurrency == 1 && one.N > 0 {
				sweep[i].P99OverSingleP50 = ratio(sweep[i].Accept.P99, one.Accept.P50)
				if one.BootsPerSec > 0 {
					sweep[i].ThroughputVs1 = sweep[i].BootsPerSec / one.BootsPerSec
				}
				break
			}
		}
	}
	a := Summarize(s0.accept)
	r := Report{
		Function: o.Function, Runtime: fn.Runtime, Boot: o.Boot, N: len(s0.accept), Concurrency: o.Concurrency[0], Errors: s0.errs,
		P50: a.P50, P90: a.P90, P99: a.P99, Max: a.Max,
		Entry: Summarize(s0.entry), Client: Summarize(s0.round), Handler: Summarize(s0.handler),
		Phases: map[string]int64{}, PhaseOrder: s0.order,
		Baselines: map[string]int64{}, BaselineRun: map[string]BaselineResult{},
		Ratios: map[string]float64{}, Skipped: map[string]string{},
		AcceptSamples: s0.accept, EntrySamples: s0.entry,
	}
	if len(sweep) > 1 {
		r.Sweep = sweep
	}
	for k, v := range s0.phases {
		r.Phases[k] = Summarize(v).P50
	}
	r.PSS, r.DropCaches, r.ColdImage = pss, o.DropCaches, o.ColdImage
	if o.Boot == "cold" {
		pf := !o.NoPrefetch
		r.Prefetch = &pf
	}
	if o.Boot == "cold" || o.Boot == "warm" {
		if v, err := o.Client.Instances(ctx, o.Function); err == nil && v.Image.Status == "ready" {
			r.Image = &ImageReport{PagesBytes: v.Image.PagesBytes, PagesApparent: v.Image.PagesApparent, PlanEntries: v.Image.PlanEntries, WorkingSet: v.Image.WorkingSet}
		}
	}
	if o.Boot == "fork" {
		r.addForkReport(ctx, o)
	}
	return r, nil
}

// onDemand is how many envs o's fork template's pool has built on demand
// so far, or -1 when the mode is not fork or the count cannot be read.
func onDemand(ctx context.Context, o Options) int64 {
	if o.Boot != "fork" {
		return -1
	}
	v, err := o.Client.Instances(ctx, o.Function)
	if err != nil || v.Template.Pool == nil {
		return -1
	}
	return int64(v.Template.Pool.OnDemand)
}

// scratchInvocations times the handler on the first and second
// invocation of fresh scratch instances: each round drains the
// function's idle instances, boots one in scratch and invokes it again
// (boot=auto reuses it: it is the only live one).
func scratchInvocations(ctx context.Context, o Options) (*FirstInvocation, error) {
	n := min(o.N, 20)
	var first, second []int64
	for i := 0; i < n; i++ {
		if err := o.Client.Drain(ctx, o.Function); err != nil {
			return nil, fmt.Errorf("bench: --first-invocation: %w", err)
		}
		a, err := o.Client.InvokeQuery(ctx, o.Function, url.Values{"boot": {"scratch"}}, o.Event)
		if err != nil {
			return nil, fmt.Errorf("bench: --first-invocation: scratch boot: %w", err)
		}
		b, err := o.Client.InvokeQuery(ctx, o.Function, url.Values{"boot": {"auto"}}, o.Event)
		if err != nil {
			return nil, fmt.Errorf("bench: --first-invocation: second invocation: %w", err)
		}
		if !b.Reused || b.Instance != a.Instance {
			return nil, fmt.Errorf("bench: --first-invocation: the second invocation did not reuse the scratch instance (%s served it, reused=%v): is the daemon's keep-alive off?", b.Instance, b.Reused)
		}
		first, second = append(first, a.HandlerUs), append(second, b.HandlerUs)
	}
	return &FirstInvocation{ScratchFirst: Summarize(first), ScratchSecond: Summarize(second)}, nil
}

// compare fills r.Compare: r against the baselines it has, and against
// the other modes of the same run.
func (r *Report) compare(all []Report) {
	ours := func(name string, o, b Summary, goal float64) {
		if o.N == 0 || b.N == 0 {
			return
		}
		r.Compare = append(r.Compare, Comparison{Name: name, OursP50: o.P50, OursP99: o.P99, BaseP50: b.P50, BaseP99: b.P99,
			RatioP50: ratio(o.P50, b.P50), RatioP99: ratio(o.P99, b.P99), Goal: goal})
	}
	accept := Summary{N: r.N, P50: r.P50, P90: r.P90, P99: r.P99, Max: r.Max}
	goal := func(mode string, g float64) float64 {
		if r.Boot == mode {
			return g
		}
		return 0
	}
	if z, ok := r.BaselineRun[Zygote]; ok {
		ours("accept-to-response / zygote start-to-response", accept, z.Total, goal("fork", 1.5))
		ours("start-to-entry / zygote start-to-entry", r.Entry, z.Entry, 0)
	}
	if f, ok := r.BaselineRun["fork-floor"]; ok {
		ours("start-to-entry / fork-floor start-to-entry", r.Entry, f.Entry, 0)
	}
	if k, ok := r.BaselineRun[KernelFork]; ok {
		ours("start-to-entry / kernel-fork", r.Entry, k.Entry, 0)
	}
	for _, b := range []string{"direct", "bwrap", "runc"} {
		if d, ok := r.BaselineRun[b]; ok {
			g := 0.0
			if b == "direct" {
				g = goal("scratch", 1.1)
			}
			ours("start-to-entry / "+b+" start-to-entry", r.Entry, d.Entry, g)
		}
	}
	if f := r.First; f != nil {
		ours("first invocation / scratch's second invocation (handler)", f.Mode, f.ScratchSecond, 1.5)
	}
	for _, o := range all {
		if o.Boot == "scratch" && r.Boot != "scratch" {
			g := 0.0
			if r.Boot == "cold" {
				g = 0.1
			}
			ours("start-to-entry / scratch start-to-entry", r.Entry, o.Entry, g)
		}
	}
}

// ratio is a/b, 0 when b is 0.
func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// invoker returns the function that boots one instance in o's mode, with
// the cache state o asks for before each boot.
func invoker(ctx context.Context, o Options) (func() (client.Invocation, error), error) {
	q := url.Values{"boot": {o.Boot}}
	if o.NoPrefetch {
		q.Set("prefetch", "false")
	}
	imageDir := ""
	if o.ColdImage {
		v, err := o.Client.Instances(ctx, o.Function)
		if err != nil {
			return nil, err
		}
		if imageDir = v.Image.Dir; imageDir == "" {
			return nil, fmt.Errorf("bench: --boot cold: the function's image is %s", v.Image.Status)
		}
	}
	return func() (client.Invocation, error) {
		if o.ColdImage || o.DropCaches {
			if err := o.Client.Drain(ctx, o.Function); err != nil {
				return client.Invocation{}, err
			}
		}
		if o.ColdImage {
			if err := evict(imageDir); err != nil {
				return client.Invocation{}, err
			}
		}
		if o.DropCaches {
			if err := dropCaches(); err != nil {
				return client.Invocation{}, err
			}
		}
		return o.Client.InvokeQuery(ctx, o.Function, q, o.Event)
	}, nil
}

// samples are the timed boots of a run.
type samples struct {
	accept, entry, round, handler []int64
	phases                        map[string][]int64
	order                         []string
	errs                          int
	firstErr                      error
}

// sampleBoots makes o.N boots, concurrency at a time. A failed boot,
// or an invocation that reused a live instance (no boot), counts as an
// error.
func sampleBoots(ctx context.Context, o Options, concurrency int, invoke func() (client.Invocation, error)) *samples {
	s := &samples{phases: map[string][]int64{}}
	var mu sync.Mutex
	work := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				inv, err := invoke()
				mu.Lock()
				s.add(inv, err)
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < o.N; i++ {
		select {
		case work <- struct{}{}:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return s
}

func (s *samples) add(inv client.Invocation, err error) {
	if err != nil || inv.Reused {
		s.errs++
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.accept = append(s.accept, inv.AcceptUs)
	s.entry = append(s.entry, inv.BootUs)
	s.round = append(s.round, inv.ClientUs)
	s.handler = append(s.handler, inv.HandlerUs)
	for _, k := range inv.Order {
		if _, ok := s.phases[k]; !ok {
			s.order = append(s.order, k)
		}
	}
	for k, v := range inv.Phases {
		s.phases[k] = append(s.phases[k], v)
	}
}

// addForkReport adds the template's report and the fork floor (the same
// template forked with no sandbox work) to a fork run's report.
func (r *Report) addForkReport(ctx context.Context, o Options) {
	var err error
	if r.Template, err = templateReport(ctx, o.Client, o.Function); err != nil {
		r.Skipped["template"] = err.Error()
	}
	floor, err := o.Client.ForkFloor(ctx, o.Function, o.Event, o.N)
	if err != nil {
		r.Skipped["fork-floor"] = err.Error()
		return
	}
	r.addBaseline("fork-floor", BaselineResult{Entry: Summarize(floor), EntrySamples: floor})
}

// addBaseline records a baseline's result and its ratio to our
// start-to-entry median.
func (r *Report) addBaseline(name string, res BaselineResult) {
	r.BaselineRun[name] = res
	r.Baselines[name] = res.Entry.P50
	if r.Entry.P50 > 0 {
		r.Ratios[name] = float64(res.Entry.P50) / float64(r.Entry.P50)
	}
}

// evict drops the files of dir (an image) from the page cache.
func evict(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("bench: evict image: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		err = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		f.Close()
		if err != nil {
			return fmt.Errorf("bench: evict %s: %w", e.Name(), err)
		}
	}
	return nil
}

// dropCaches empties the page cache (and dentries and inodes).
func dropCaches() error {
	unix.Sync()
	if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3"), 0); err != nil {
		return fmt.Errorf("bench: drop caches (needs root on the daemon's host): %w", err)
	}
	return nil
}

// measurePSS boots instances in o.Boot one by one (they stay alive: the
// daemon keeps them for reuse) and, at each count in o.PSSAt, takes the
// median PSS of the live instances booted in that mode.
func measurePSS(ctx context.Context, o Options, invoke func() (client.Invocation, error)) (map[string]int64, error) {
	if len(o.PSSAt) == 0 {
		return nil, nil
	}
	if o.ColdImage || o.DropCaches {
		return nil, fmt.Errorf("bench: --pss keeps instances alive; it cannot run with a cold cache (which destroys them before each boot)")
	}
	out := map[string]int64{}
	booted := 1 // the warm-up invocation
	for _, k := range o.PSSAt {
		for ; booted < k; booted++ {
			if _, err := invoke(); err != nil {
				return nil, fmt.Errorf("bench: pss: %w", err)
			}
		}
		v, err := o.Client.Instances(ctx, o.Function)
		if err != nil {
			return nil, err
		}
		var pss []int64
		for _, in := range v.Instances {
			if in.Boot == o.Boot && in.PSSKB >= 0 {
				pss = append(pss, in.PSSKB)
			}
		}
		if len(pss) < k {
			return nil, fmt.Errorf("bench: pss: %d live %s instances, wanted %d (raise max_instances or the keep-alive)", len(pss), o.Boot, k)
		}
		out[strconv.Itoa(k)] = Summarize(pss).P50
	}
	return out, nil
}

func templateReport(ctx context.Context, c *client.Client, name string) (*TemplateReport, error) {
	v, err := c.Instances(ctx, name)
	if err != nil {
		return nil, err
	}
	if v.Template.Status != "ready" || v.Template.Pool == nil {
		return nil, fmt.Errorf("template is %s", v.Template.Status)
	}
	t := &TemplateReport{PSSKB: v.Template.PSSKB, PoolReady: v.Template.Pool.Ready,
		PoolOnDemand: v.Template.Pool.OnDemand, PoolTaken: v.Template.Pool.Taken,
		EnvBuildUs: v.Template.Pool.MeanBuildUs}
	if t.EnvBuildUs > 0 {
		t.RefillPerSec = 1e6 / float64(t.EnvBuildUs)
	}
	var pss []int64
	for _, in := range v.Instances {
		if in.Boot == "fork" && in.State == "ready" && in.PSSKB >= 0 {
			pss = append(pss, in.PSSKB)
		}
	}
	t.IdleForkPSSKB = Summarize(pss).P50
	return t, nil
}

// WriteText prints r as a table.
func (r Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "function %s (%s), boot=%s, n=%d, concurrency=%d, errors=%d\n\n", r.Function, r.Runtime, r.Boot, r.N, r.Concurrency, r.Errors)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tp50 µs\tp90 µs\tp99 µs\tmax µs\t")
	fmt.Fprintf(tw, "accept to response\t%d\t%d\t%d\t%d\t\n", r.P50, r.P90, r.P99, r.Max)
	e := r.Entry
	fmt.Fprintf(tw, "boot start to handler entry\t%d\t%d\t%d\t%d\t\n", e.P50, e.P90, e.P99, e.Max)
	c := r.Client
	fmt.Fprintf(tw, "client round trip\t%d\t%d\t%d\t%d\t\n", c.P50, c.P90, c.P99, c.Max)
	h := r.Handler
	fmt.Fprintf(tw, "first invocation: handler\t%d\t%d\t%d\t%d\t\n", h.P50, h.P90, h.P99, h.Max)
	if f := r.First; f != nil {
		for _, x := range []struct {
			name string
			s    Summary
		}{{"scratch 1st invocation: handler", f.ScratchFirst}, {"scratch 2nd invocation: handler", f.ScratchSecond}} {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t\n", x.name, x.s.P50, x.s.P90, x.s.P99, x.s.Max)
		}
	}
	names := make([]string, 0, len(r.BaselineRun))
	for k := range r.BaselineRun {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b := r.BaselineRun[k]
		fmt.Fprintf(tw, "baseline %s: start to entry\t%d\t%d\t%d\t%d\t\n", k, b.Entry.P50, b.Entry.P90, b.Entry.P99, b.Entry.Max)
		if t := b.Total; t.N > 0 {
			fmt.Fprintf(tw, "baseline %s: start to response\t%d\t%d\t%d\t%d\t\n", k, t.P50, t.P90, t.P99, t.Max)
		}
	}
	tw.Flush()
	if len(r.PhaseOrder) > 0 {
		fmt.Fprintln(w, "\nphases (p50 µs):")
		for _, k := range r.PhaseOrder {
			fmt.Fprintf(w, "  %-12s %8d\n", k, r.Phases[k])
		}
	}
	if len(names) > 0 {
		fmt.Fprintln(w, "\nbaseline p50 / our start-to-entry p50 (>1 means we are faster):")
		for _, k := range names {
			fmt.Fprintf(w, "  %-8s %.2fx\n", k, r.Ratios[k])
		}
	}
	r.writeCompare(w)
	r.writeSweep(w)
	if len(r.PSS) > 0 {
		fmt.Fprintf(w, "\nPSS per live instance (median KiB): %v\n", r.PSS)
	}
	if im := r.Image; im != nil {
		fmt.Fprintf(w, "image: pages.img %d KiB on disk (%d KiB apparent), plan of %d syscalls, working set %d KiB\n", im.PagesBytes>>10, im.PagesApparent>>10, im.PlanEntries, im.WorkingSet>>10)
	}
	if t := r.Template; t != nil {
		fmt.Fprintf(w, "\ntemplate: PSS %d KiB; idle forked instance PSS (p50) %d KiB\n", t.PSSKB, t.IdleForkPSSKB)
		fmt.Fprintf(w, "env pool: %d ready, %d taken, %d built on demand; one env costs %d µs (refill %.0f envs/s)\n", t.PoolReady, t.PoolTaken, t.PoolOnDemand, t.EnvBuildUs, t.RefillPerSec)
	}
	for k, why := range r.Skipped {
		fmt.Fprintf(w, "baseline %s skipped: %s\n", k, why)
	}
}

// writeCompare prints r.Compare as a table.
func (r Report) writeCompare(w io.Writer) {
	if len(r.Compare) == 0 {
		return
	}
	fmt.Fprintln(w, "\nours / baseline, same run (<1: we are faster):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tours p50\tbase p50\t×p50\tours p99\tbase p99\t×p99\tgoal\t")
	for _, c := range r.Compare {
		goal := ""
		if c.Goal > 0 {
			verdict := "met"
			if c.RatioP50 > c.Goal {
				verdict = "not met"
			}
			goal = fmt.Sprintf("≤%.2gx %s", c.Goal, verdict)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2fx\t%d\t%d\t%.2fx\t%s\t\n", c.Name, c.OursP50, c.BaseP50, c.RatioP50, c.OursP99, c.BaseP99, c.RatioP99, goal)
	}
	tw.Flush()
}

// writeSweep prints r.Sweep as a table.
func (r Report) writeSweep(w io.Writer) {
	if len(r.Sweep) == 0 {
		return
	}
	fmt.Fprintf(w, "\nconcurrency sweep (accept to response; %d CPUs here):\n", runtime.NumCPU())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "c\tboots\terrors\tboots/s\t×c1\tp50 µs\tp99 µs\tp99/p50(c1)\tenvs on demand\t")
	for _, l := range r.Sweep {
		od := "-"
		if l.EnvsOnDemand >= 0 {
			od = strconv.FormatInt(l.EnvsOnDemand, 10)
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.1f\t%.2fx\t%d\t%d\t%.2fx\t%s\t\n", l.Concurrency, l.N, l.Errors, l.BootsPerSec, l.ThroughputVs1, l.Accept.P50, l.Accept.P99, l.P99OverSingleP50, od)
	}
	tw.Flush()
}

// WriteJSON prints r as one JSON object.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// SplitList splits a comma list ("direct,bwrap"); "" and "none" are empty.
func SplitList(s string) []string {
	if s == "" || s == "none" {
		return nil
	}
	return strings.Split(s, ",")
}
