package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/route"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/worker"
)

// KindNone labels requests no route matched (the router's own 404s).
const KindNone = "none"

// statusClasses are the values of the "code" label, indexed by status/100-1.
var statusClasses = [5]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// LatencyBuckets are the bounds, in seconds, of the request latency
// histogram: from a cached static file to a slow app view.
var LatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// PoolStats is what the metrics read from the worker pool
// (*supervisor.Pool).
type PoolStats interface {
	Stats() supervisor.Stats
}

// Metrics holds krait's Prometheus registry, the request middleware's
// counters and the health state behind /healthz and /readyz. Create it
// with New; it is safe for concurrent use.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge

	mu    sync.Mutex
	kinds map[string]*kindStats // resolved once per kind

	none *kindStats // requests no route matched

	pool     atomic.Pointer[poolRef] // nil until the workers are up
	draining atomic.Bool

	// statm reads a process's resident set size; a field so tests can
	// fake /proc.
	statm func(pid int) (int64, bool)
}

type poolRef struct{ p PoolStats }

// kindStats are the pre-resolved series of one route kind, so that the
// hot path does no label lookup.
type kindStats struct {
	codes    [5]prometheus.Counter
	duration prometheus.Observer
}

// New returns Metrics with a private registry holding krait's metrics
// and the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "krait_http_requests_total",
			Help: "HTTP requests answered, by route kind and status class (no answer, the client gone, counts as 4xx like the access log's 499).",
		}, []string{"kind", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "krait_http_request_duration_seconds",
			Help:    "Time from the request head to the end of the response, by route kind; WebSocket sessions (101) are not timed.",
			Buckets: LatencyBuckets,
		}, []string{"kind"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "krait_http_requests_in_flight",
			Help: "HTTP requests being served now, WebSocket sessions included.",
		}),
		kinds: make(map[string]*kindStats),
		statm: worker.ReadRSS,
	}
	m.reg.MustRegister(m.requests, m.duration, m.inFlight,
		&poolCollector{m: m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.none = m.kind(KindNone)
	return m
}

// Registry returns the registry the metrics are in (to register more).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SetPool makes the pool's state visible: workers, queue, restarts, RSS,
// and readiness. Until it is called /readyz answers 503.
func (m *Metrics) SetPool(p PoolStats) {
	if p == nil {
		m.pool.Store(nil)
		return
	}
	m.pool.Store(&poolRef{p})
}

// SetDraining marks the server as stopping: /readyz answers 503 from now
// on, for good.
func (m *Metrics) SetDraining() { m.draining.Store(true) }

// Ready reports whether the server should get traffic: not draining, and
// at least one worker running and in rotation. The reason says why not.
func (m *Metrics) Ready() (ok bool, reason string) {
	if m.draining.Load() {
		return false, "draining"
	}
	ref := m.pool.Load()
	if ref == nil {
		return false, "workers not started"
	}
	st := ref.p.Stats()
	if !st.Ready() {
		return false, "no worker ready"
	}
	return true, ""
}

// kind returns the pre-resolved series of kind, creating them (all at
// zero, so every series exists from the start) the first time.
func (m *Metrics) kind(kind string) *kindStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ks := m.kinds[kind]; ks != nil {
		return ks
	}
	ks := &kindStats{duration: m.duration.WithLabelValues(kind)}
	for i, c := range statusClasses {
		ks.codes[i] = m.requests.WithLabelValues(kind, c)
	}
	m.kinds[kind] = ks
	return ks
}

// Wrap is the global middleware (route.New's global list): it counts and
// times every request, the router's own 404s included (as kind "none").
// The route kind comes from Kind's middleware on the matched route.
func (m *Metrics) Wrap(h exchange.Handler) exchange.Handler {
	return &handler{m: m, next: h}
}

// Kind returns the route middleware that labels the route's requests with
// kind; Wrap must be among the router's global middleware for it to count
// anything. It adds no writer of its own: it finds Wrap's in the chain.
func (m *Metrics) Kind(kind string) route.Middleware {
	ks := m.kind(kind)
	return func(h exchange.Handler) exchange.Handler {
		return &kindHandler{ks: ks, next: h}
	}
}

type handler struct {
	m    *Metrics
	next exchange.Handler
}

var recorderPool = sync.Pool{New: func() any { return new(recorder) }}

func (h *handler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	start := time.Now()
	h.m.inFlight.Inc()
	rec := recorderPool.Get().(*recorder)
	rec.Reset(w)
	rec.ks = h.m.none
	h.next.Serve(rec, r)
	status, ks := rec.Status, rec.ks
	rec.Reset(nil)
	rec.ks = nil
	recorderPool.Put(rec)
	h.m.inFlight.Dec()

	switch {
	case status == 0:
		// Never answered (the client went away first): 499, as in the
		// access log.
		status = 499
	case status >= 600:
		// Codes 600-999 are legal on the wire but have no class.
		status = 599
	}
	ks.codes[status/100-1].Inc()
	if status != 101 {
		ks.duration.Observe(time.Since(start).Seconds())
	}
}

type kindHandler struct {
	ks   *kindStats
	next exchange.Handler
}

func (h *kindHandler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	// Other wrappers (the access log) may sit between Wrap's recorder and
	// the route: walk the Unwrap chain to it. A few type assertions, no
	// allocation.
	for cur := w; cur != nil; {
		if rec, ok := cur.(*recorder); ok {
			rec.ks = h.ks
			break
		}
		u, ok := cur.(exchange.Unwrapper)
		if !ok {
			break
		}
		cur = u.Unwrap()
	}
	h.next.Serve(w, r)
}

// recorder is the shared exchange.Recorder (final status, Hijack and
// trailers forwarded by the wrapper convention) plus the route kind, which
// kindHandler finds by walking the Unwrap chain to this type.
type recorder struct {
	exchange.Recorder
	ks *kindStats
}

var _ exchange.Unwrapper = (*recorder)(nil)

// poolCollector reads the pool's snapshot at scrape time.
type poolCollector struct{ m *Metrics }

var (
	descWorkers = prometheus.NewDesc("krait_workers",
		"Worker slots by state (idle, busy, stopping, starting, failing); they add up to --workers.",
		[]string{"state"}, nil)
	descWorkerBusy = prometheus.NewDesc("krait_worker_busy",
		"Requests in flight on each worker.", []string{"worker"}, nil)
	descWorkerCapacity = prometheus.NewDesc("krait_worker_capacity",
		"Requests each worker may run at once.", []string{"worker"}, nil)
	descWorkerRSS = prometheus.NewDesc("krait_worker_rss_bytes",
		"Resident set size of each running worker process, from /proc/PID/statm.",
		[]string{"worker", "pid"}, nil)
	descQueueDepth = prometheus.NewDesc("krait_queue_depth",
		"Requests waiting for a free worker slot.", nil, nil)
	descQueueWait = prometheus.NewDesc("krait_queue_wait_seconds",
		"How long requests that found no free worker slot waited in the queue.", nil, nil)
	descRestarts = prometheus.NewDesc("krait_worker_restarts_total",
		"Worker restarts by reason (retired, died, died_early, boot_failed).",
		[]string{"reason"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkers, descWorkerBusy, descWorkerCapacity,
		descWorkerRSS, descQueueDepth, descQueueWait, descRestarts} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	ref := c.m.pool.Load()
	if ref == nil {
		return // still booting: no pool to describe yet
	}
	st := ref.p.Stats()
	byState := make(map[string]int, len(supervisor.WorkerStates))
	for _, w := range st.Workers {
		byState[w.State]++
		id := strconv.Itoa(w.ID)
		ch <- prometheus.MustNewConstMetric(descWorkerBusy, prometheus.GaugeValue, float64(w.Busy), id)
		ch <- prometheus.MustNewConstMetric(descWorkerCapacity, prometheus.GaugeValue, float64(w.Capacity), id)
		if w.Pid > 0 {
			if rss, ok := c.m.statm(w.Pid); ok {
				ch <- prometheus.MustNewConstMetric(descWorkerRSS, prometheus.GaugeValue, float64(rss), id, strconv.Itoa(w.Pid))
			}
		}
	}
	for _, s := range supervisor.WorkerStates {
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(byState[s]), s)
	}
	ch <- prometheus.MustNewConstMetric(descQueueDepth, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstHistogram(descQueueWait, st.QueueWait.Count, st.QueueWait.SumSeconds, st.QueueWait.Buckets)
	for _, r := range supervisor.RestartReasons {
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(st.Restarts[r]), r)
	}
}
