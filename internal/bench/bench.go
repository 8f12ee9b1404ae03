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
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/client"
)

// Options of one benchmark run.
type Options struct {
	Client      *client.Client
	Function    string
	Boot        string // scratch, fork, cold, warm: every invocation boots a fresh instance
	N           int
	Concurrency int
	Event       []byte
	// ColdImage makes each boot read the image from disk (cold boot):
	// before it, the function's idle instances are destroyed (they map
	// the image's pages) and the image's files are evicted from the page
	// cache. The runtime's own files stay cached, as on a serving host.
	ColdImage bool
	// DropCaches empties the whole page cache (and dentries and inodes)
	// before each boot: everything cold, the runtime's files too. Needs
	// root on the daemon's host.
	DropCaches bool
	// NoPrefetch turns off the working-set prefetch of cold boots.
	NoPrefetch bool
	// PSSAt lists instance counts at which to measure the proportional set
	// size per instance (booted in this mode, kept alive), before the
	// latency run.
	PSSAt []int
	// Baselines to run locally (the daemon must be on this host):
	// "direct", "bwrap", "runc"; those not installed are skipped and
	// listed in Report.Skipped.
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
	// Cold and warm boot: the image, and PSS per instance (median KiB) at
	// each count of live instances asked for.
	Image      *ImageReport     `json:"image,omitempty"`
	PSS        map[string]int64 `json:"pss_kb_per_instance,omitempty"`
	DropCaches bool             `json:"drop_caches,omitempty"`
	ColdImage  bool             `json:"cold_image,omitempty"`
	Prefetch   *bool            `json:"prefetch,omitempty"`
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
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (Report, error) {
	if o.N <= 0 {
		return Report{}, fmt.Errorf("bench: -n must be positive")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Boot == "" || o.Boot == "auto" {
		return Report{}, fmt.Errorf("bench: --boot must name a mode (scratch, fork, cold, warm): auto would reuse live instances and measure no boot")
	}
	fn, err := o.Client.Get(ctx, o.Function)
	if err != nil {
		return Report{}, err
	}
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
	s := sampleBoots(ctx, o, invoke)
	if len(s.accept) == 0 {
		return Report{}, fmt.Errorf("bench: every invocation failed; first error: %v", s.firstErr)
	}
	a := Summarize(s.accept)
	r := Report{
		Function: o.Function, Runtime: fn.Runtime, Boot: o.Boot, N: len(s.accept), Concurrency: o.Concurrency, Errors: s.errs,
		P50: a.P50, P90: a.P90, P99: a.P99, Max: a.Max,
		Entry: Summarize(s.entry), Client: Summarize(s.round),
		Phases: map[string]int64{}, PhaseOrder: s.order,
		Baselines: map[string]int64{}, BaselineRun: map[string]BaselineResult{},
		Ratios: map[string]float64{}, Skipped: map[string]string{},
	}
	for k, v := range s.phases {
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
	for _, b := range o.Baselines {
		res, err := runBaseline(ctx, b, fn.Runtime, fn.Handler, fn.CodePath, o.Event, o.N)
		if err != nil {
			r.Skipped[b] = err.Error()
			continue
		}
		r.addBaseline(b, res)
	}
	return r, nil
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
	accept, entry, round []int64
	phases               map[string][]int64
	order                []string
	errs                 int
	firstErr             error
}

// sampleBoots makes o.N boots, o.Concurrency at a time. A failed boot,
// or an invocation that reused a live instance (no boot), counts as an
// error.
func sampleBoots(ctx context.Context, o Options, invoke func() (client.Invocation, error)) *samples {
	s := &samples{phases: map[string][]int64{}}
	var mu sync.Mutex
	work := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < o.Concurrency; w++ {
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
	r.addBaseline("fork-floor", BaselineResult{Entry: Summarize(floor)})
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
	names := make([]string, 0, len(r.BaselineRun))
	for k := range r.BaselineRun {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		b := r.BaselineRun[k]
		fmt.Fprintf(tw, "baseline %s: start to entry\t%d\t%d\t%d\t%d\t\n", k, b.Entry.P50, b.Entry.P90, b.Entry.P99, b.Entry.Max)
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
