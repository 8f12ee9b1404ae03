package platform

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Metrics are the daemon's Prometheus metrics, on a registry of their own
// (so that tests can run several platforms in one process).
type Metrics struct {
	Registry    *prometheus.Registry
	invocations *prometheus.CounterVec
	errors      *prometheus.CounterVec
	bootLatency *prometheus.HistogramVec
	bootPhase   *prometheus.HistogramVec
	invokeDur   *prometheus.HistogramVec
	instances   *prometheus.GaugeVec
	envBuilt    *prometheus.CounterVec
	imageBytes  *prometheus.GaugeVec
	poolTarget  *prometheus.GaugeVec
	evictions   *prometheus.CounterVec
	bootWait    *prometheus.HistogramVec
}

// latencyBuckets span 50 µs to 10 s: fork boots sit at the bottom,
// scratch boots of big runtimes at the top.
var latencyBuckets = prometheus.ExponentialBuckets(50e-6, 2, 18)

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		invocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catalyzer_invocations_total",
			Help: "Invocations by function, boot mode (\"reuse\" for a live instance) and outcome.",
		}, []string{"function", "boot", "outcome"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catalyzer_errors_total",
			Help: "Failed invocations by function and error type (the type of the API's error body: errdefs.Table, or the function's exception class).",
		}, []string{"function", "type"}),
		bootLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "catalyzer_boot_latency_seconds",
			Help:    "Boot start to handler entry, by function and boot mode.",
			Buckets: latencyBuckets,
		}, []string{"function", "boot"}),
		bootPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "catalyzer_boot_phase_seconds",
			Help:    "Duration of each boot phase, by function, boot mode and phase.",
			Buckets: latencyBuckets,
		}, []string{"function", "boot", "phase"}),
		invokeDur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "catalyzer_request_duration_seconds",
			Help:    "Accept to response of invocations, by function and boot mode.",
			Buckets: latencyBuckets,
		}, []string{"function", "boot"}),
		instances: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "catalyzer_instances",
			Help: "Live instances by function and state (busy, idle).",
		}, []string{"function", "state"}),
		imageBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "catalyzer_image_bytes",
			Help: "Size of each function's checkpoint image: pages on disk (pages.img is sparse) and apparent.",
		}, []string{"function", "kind"}),
		poolTarget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "catalyzer_pool_target",
			Help: "What each function's self-sizing pool is set to, by pool (fork: envs, restore: restorers) and what (size, workers).",
		}, []string{"function", "pool", "what"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catalyzer_evictions_total",
			Help: "Idle instances destroyed to make room for a boot (max_instances), by function. Off the boot path: the boot does not wait for them.",
		}, []string{"function"}),
		bootWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "catalyzer_boot_admit_seconds",
			Help:    "Time from an invocation's arrival at its function's pool to the start of its boot (admission: finding room under max_instances), by function.",
			Buckets: latencyBuckets,
		}, []string{"function"}),
		envBuilt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "catalyzer_sandbox_envs_total",
			Help: "Sandbox envs built, by how (pool, on_demand).",
		}, []string{"how"}),
	}
	m.Registry.MustRegister(m.invocations, m.errors, m.bootLatency, m.bootPhase, m.invokeDur, m.instances, m.envBuilt, m.imageBytes,
		m.poolTarget, m.evictions, m.bootWait,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveRequest records one request's accept-to-response time.
func (m *Metrics) ObserveRequest(function, boot string, seconds float64) {
	m.invokeDur.WithLabelValues(function, boot).Observe(seconds)
}

// countError counts a failed invocation under its error's type: the type
// the API's error body names (errdefs.Classify).
func (m *Metrics) countError(name string, err error) {
	m.errors.WithLabelValues(name, errdefs.Classify(err).Type).Inc()
}

func (m *Metrics) forget(function string) {
	for _, v := range []*prometheus.GaugeVec{m.instances, m.imageBytes, m.poolTarget} {
		v.DeletePartialMatch(prometheus.Labels{"function": function})
	}
}
