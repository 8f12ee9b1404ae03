package platform

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/catalyzer/catalyzer/internal/boot"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	tu "github.com/catalyzer/catalyzer/internal/testutil"
)

// TestMain lets the test binary serve as the sandbox's helper (it is
// re-executed as /proc/self/exe).
func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

func examplesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

// newTestPlatform starts a platform for real boots (root) with hello, the
// Python example, deployed with maxInstances.
func newTestPlatform(t *testing.T, cfg Config, maxInstances int) *Platform {
	t.Helper()
	tu.RequiresRoot(t)
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		tu.Missing(t, "needs /usr/bin/python3 (apt-get install python3)")
	}
	cfg.StateDir = t.TempDir()
	cfg.CgroupParent = fmt.Sprintf("catalyzer-test-platform-%d", os.Getpid())
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = time.Hour
	}
	cfg.CodeRoots = []string{examplesDir()}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	if _, _, err := p.Deploy("hello", DeployRequest{Runtime: "python", Handler: "main.handler",
		CodePath: filepath.Join(examplesDir(), "python", "hello"), MaxInstances: maxInstances}); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestEvictionOffBootPath: a boot into a full pool (max_instances live,
// one idle) evicts the idle instance without waiting for its
// destruction. The destruction is held until the boot has answered: with
// the eviction on the boot path, Invoke would never return and the test
// would fail at go test's -timeout.
func TestEvictionOffBootPath(t *testing.T) {
	p := newTestPlatform(t, Config{NoTemplates: true}, 1)
	ctx := context.Background()
	first, err := p.Invoke(ctx, "hello", boot.ModeScratch, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	pl := p.fns["hello"].pool
	p.mu.Unlock()
	entered := make(chan *boot.Instance, 1)
	hold := make(chan struct{})
	pl.mu.Lock()
	pl.destroyFn = func(inst *boot.Instance) error {
		entered <- inst
		<-hold
		return inst.Destroy()
	}
	pl.mu.Unlock()

	second, err := p.Invoke(ctx, "hello", boot.ModeScratch, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second.Reused || second.InstanceID == first.InstanceID {
		t.Fatalf("second invocation reused %s: no eviction happened", first.InstanceID)
	}
	var m dto.Metric
	if err := p.metrics.evictions.WithLabelValues("hello").Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetCounter().GetValue(); n != 1 {
		t.Fatalf("catalyzer_evictions_total = %v, want 1", n)
	}
	for _, ph := range second.Phases {
		if ph.Name == "evict" || ph.Name == "destroy" {
			t.Fatalf("the boot's phases name the eviction: %v", second.Phases)
		}
	}
	evicted := <-entered
	if evicted.ID != first.InstanceID {
		t.Fatalf("evicted %s, want the idle %s", evicted.ID, first.InstanceID)
	}
	if st := evicted.State(); st == boot.StateDead {
		t.Fatalf("the evicted instance is %s while its destruction is held", st)
	}
	// Live: the new instance only; the evicted one is on its way out.
	if got := len(pl.list()); got != 1 {
		t.Fatalf("%d live instances, want 1", got)
	}
	close(hold)
	pl.wg.Wait()
	if st := evicted.State(); st != boot.StateDead {
		t.Fatalf("evicted instance is %s after its destruction", st)
	}
}

// TestPoolsSizeFromBootRate: fork boots arrive in bursts of six at once
// (three times the default pool of two), four bursts a second: a rate
// the env builders can sustain on average. After a warm-up, every boot
// takes its env from the pool: the pool has grown to the burst and the
// rate, and none is built on demand. (A closed loop of back-to-back fork
// boots is not such a rate here: one env costs more than one fork boot,
// see docs/ARCHITECTURE.md.)
// With Config.FixedEnvPools the same load builds most of its envs on
// demand (48 of 72 when this was written).
func TestPoolsSizeFromBootRate(t *testing.T) {
	p := newTestPlatform(t, Config{KeepAlive: 2 * time.Second}, 400)
	deadline := time.Now().Add(60 * time.Second)
	for !p.fork.Ready("hello") {
		if st := p.fork.Status("hello"); st.State == boot.BuildFailed || time.Now().After(deadline) {
			t.Fatalf("template: %s", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	const burst = 6
	tick := time.NewTicker(250 * time.Millisecond) // the load's pace, not a synchronisation
	defer tick.Stop()
	bursts := func(n int) {
		t.Helper()
		for range n {
			<-tick.C
			var wg sync.WaitGroup
			errs := make(chan error, burst)
			for range burst {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := p.Invoke(context.Background(), "hello", boot.ModeFork, nil); err != nil {
						errs <- err
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		}
	}
	onDemand := func() uint64 {
		st, ok := p.fork.PoolStats("hello")
		if !ok {
			t.Fatal("no env pool")
		}
		return st.OnDemand
	}
	bursts(6) // warm-up: the pool learns the burst and the rate
	before := onDemand()
	bursts(12)
	after := onDemand()
	st, _ := p.fork.PoolStats("hello")
	size, workers := p.sizer.target("hello", forkPool)
	if after != before {
		t.Fatalf("%d envs built on demand in steady state (pool set to %d envs, %d workers; %+v)", after-before, size, workers, st)
	}
	if size < burst {
		t.Fatalf("pool set to %d envs: smaller than a burst of %d", size, burst)
	}
	t.Logf("pool set to %d envs, %d workers; %d built on demand during the warm-up; %+v", size, workers, before, st)
}
