package metrics

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/route"
	"github.com/krait-server/krait/internal/supervisor"
)

// base is an engine writer that supports hijacking and trailers.
type base struct {
	status             int
	hijacked, trailers int
}

func (b *base) WriteHeader(s int, _ []byte, _ []exchange.Header, _ int64) error {
	b.status = s
	return nil
}
func (*base) Write(p []byte) (int, error)                    { return len(p), nil }
func (*base) SendFile(*os.File, int64, int64) (int64, error) { return 0, nil }
func (*base) Flush() error                                   { return nil }
func (*base) Abort()                                         {}
func (b *base) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	b.hijacked++
	return nil, nil, nil
}
func (b *base) WriteTrailers([]exchange.Header) error { b.trailers++; return nil }

// passThrough stands for another global wrapper (the access log) between
// Wrap's recorder and the route.
type passThrough struct{ exchange.ResponseWriter }

func (p passThrough) Unwrap() exchange.ResponseWriter { return p.ResponseWriter }

func passMiddleware(h exchange.Handler) exchange.Handler {
	return handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) { h.Serve(passThrough{w}, r) })
}

type handlerFunc func(exchange.ResponseWriter, *exchange.Request)

func (f handlerFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

// statusHandler answers with the status in the query ("?503"); "?0"
// writes nothing (the client went away), "?101" hijacks.
var statusHandler = handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
	s, _ := strconv.Atoi(string(r.Query))
	switch s {
	case 0:
	case 101:
		_, _, _ = exchange.Hijack(w)
	default:
		_ = w.WriteHeader(s, nil, nil, 0)
	}
})

func newRouter(t *testing.T, m *Metrics, app, static exchange.Handler) *route.Router {
	t.Helper()
	rt, err := route.New([]route.Route{
		{Kind: route.KindApp, Prefix: "/app", Handler: app, Middleware: []route.Middleware{m.Kind(route.KindApp)}},
		{Kind: "static", Prefix: "/static", Handler: static, Middleware: []route.Middleware{m.Kind("static")}},
	}, m.Wrap, passMiddleware)
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func request(target string) *exchange.Request {
	path, query, _ := strings.Cut(target, "?")
	return &exchange.Request{Method: []byte("GET"), Target: []byte(target), Path: []byte(path), Query: []byte(query),
		ProtoMajor: 1, ProtoMinor: 1, Body: strings.NewReader(""), Host: []byte("example.com")}
}

func counter(t *testing.T, m *Metrics, kind, code string) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.requests.WithLabelValues(kind, code).(dtoWriter).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}

func histCount(t *testing.T, m *Metrics, kind string) uint64 {
	t.Helper()
	var d dto.Metric
	if err := m.duration.WithLabelValues(kind).(dtoWriter).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

func gauge(t *testing.T, g interface{ Write(*dto.Metric) error }) float64 {
	t.Helper()
	var d dto.Metric
	if err := g.Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetGauge().GetValue()
}

type dtoWriter interface{ Write(*dto.Metric) error }

func TestRequestsCountedByKindAndClass(t *testing.T) {
	m := New()
	rt := newRouter(t, m, statusHandler, statusHandler)
	serve := func(target string, n int) {
		for range n {
			rt.Serve(&base{}, request(target))
		}
	}
	serve("/app/x?200", 3)
	serve("/app?503", 2)
	serve("/app?0", 1) // no answer: 499
	serve("/app/ws?101", 4)
	serve("/static/a.css?304", 1)
	serve("/static/b.css?200", 4)
	serve("/static?999", 1) // no class: counted as 5xx
	serve("/elsewhere", 2)  // the router's 404

	want := map[[2]string]float64{
		{"app", "1xx"}: 4, {"app", "2xx"}: 3, {"app", "3xx"}: 0, {"app", "4xx"}: 1, {"app", "5xx"}: 2,
		{"static", "1xx"}: 0, {"static", "2xx"}: 4, {"static", "3xx"}: 1, {"static", "4xx"}: 0, {"static", "5xx"}: 1,
		{"none", "1xx"}: 0, {"none", "2xx"}: 0, {"none", "3xx"}: 0, {"none", "4xx"}: 2, {"none", "5xx"}: 0,
	}
	for k, v := range want {
		if got := counter(t, m, k[0], k[1]); got != v {
			t.Errorf("krait_http_requests_total{kind=%q,code=%q} = %v, want %v", k[0], k[1], got, v)
		}
	}
	// WebSocket sessions (101) are counted, not timed.
	for kind, n := range map[string]uint64{"app": 6, "static": 6, "none": 2} {
		if got := histCount(t, m, kind); got != n {
			t.Errorf("latency observations for %s = %d, want %d", kind, got, n)
		}
	}
	if g := gauge(t, m.inFlight); g != 0 {
		t.Errorf("in flight after every request returned = %v, want 0", g)
	}
}

func TestInFlight(t *testing.T) {
	m := New()
	entered, release := make(chan struct{}), make(chan struct{})
	block := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		entered <- struct{}{}
		<-release
		_ = w.WriteHeader(200, nil, nil, 0)
	})
	rt := newRouter(t, m, block, statusHandler)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); rt.Serve(&base{}, request("/app")) }()
	}
	for range 3 {
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers did not start")
		}
	}
	if g := gauge(t, m.inFlight); g != 3 {
		t.Errorf("in flight with 3 requests blocked = %v, want 3", g)
	}
	close(release)
	wg.Wait()
	if g := gauge(t, m.inFlight); g != 0 {
		t.Errorf("in flight after = %v, want 0", g)
	}
	if got := counter(t, m, "app", "2xx"); got != 3 {
		t.Errorf("app 2xx = %v, want 3", got)
	}
}

// The recorder must not hide what the engine's writer can do.
func TestRecorderKeepsHijackAndTrailers(t *testing.T) {
	m := New()
	var canHijack, canTrailers bool
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		canHijack, canTrailers = exchange.CanHijack(w), exchange.CanWriteTrailers(w)
		if r.Query != nil && string(r.Query) == "trailers" {
			_ = exchange.WriteTrailers(w, nil)
			return
		}
		_, _, _ = exchange.Hijack(w)
	})
	rt := newRouter(t, m, h, h)
	b := &base{}
	rt.Serve(b, request("/app"))
	rt.Serve(b, request("/app?trailers"))
	if !canHijack || !canTrailers {
		t.Fatalf("through the metrics recorder: CanHijack %v, CanWriteTrailers %v; want both", canHijack, canTrailers)
	}
	if b.hijacked != 1 || b.trailers != 1 {
		t.Errorf("engine writer: hijacked %d, trailers %d; want 1, 1", b.hijacked, b.trailers)
	}
	// Trailers first: the engine sends an implicit 200.
	if got := counter(t, m, "app", "1xx"); got != 1 {
		t.Errorf("app 1xx = %v, want 1", got)
	}
	if got := counter(t, m, "app", "2xx"); got != 1 {
		t.Errorf("app 2xx = %v, want 1", got)
	}
}

func TestMiddlewareDoesNotAllocate(t *testing.T) {
	m := New()
	ok := handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) { _ = w.WriteHeader(200, nil, nil, 0) })
	rt, err := route.New([]route.Route{
		{Kind: route.KindApp, Prefix: "/", Handler: ok, Middleware: []route.Middleware{m.Kind(route.KindApp)}},
	}, m.Wrap)
	if err != nil {
		t.Fatal(err)
	}
	h := rt.Listener("x")
	b, r := &base{}, request("/")
	if avg := testing.AllocsPerRun(1000, func() { h.Serve(b, r) }); avg != 0 {
		t.Errorf("%v allocations per request, want 0", avg)
	}
	if got := counter(t, m, "app", "2xx"); got != 1001 { // AllocsPerRun warms up once
		t.Errorf("app 2xx = %v, want 1001", got)
	}
}

// fakePool returns whatever stats the test sets.
type fakePool struct {
	mu sync.Mutex
	st supervisor.Stats
}

func (f *fakePool) Stats() supervisor.Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakePool) set(st supervisor.Stats) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func workers(states ...string) []supervisor.WorkerStats {
	ws := make([]supervisor.WorkerStats, len(states))
	for i, s := range states {
		ws[i] = supervisor.WorkerStats{ID: i + 1, Pid: 1000 + i, State: s, Capacity: 1}
	}
	return ws
}

func TestReadyzTransitions(t *testing.T) {
	m := New()
	h := m.Handler(nil)
	check := func(step string, wantCode int, wantBody string) {
		t.Helper()
		if code, body := get(t, h, "/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("%s: /healthz = %d %q, want 200 \"ok\\n\"", step, code, body)
		}
		if code, body := get(t, h, "/readyz"); code != wantCode || body != wantBody {
			t.Errorf("%s: /readyz = %d %q, want %d %q", step, code, body, wantCode, wantBody)
		}
	}
	check("booting", 503, "not ready: workers not started\n")
	p := &fakePool{}
	p.set(supervisor.Stats{Workers: workers(supervisor.StateStarting, supervisor.StateFailing)})
	m.SetPool(p)
	check("no worker up", 503, "not ready: no worker ready\n")
	p.set(supervisor.Stats{Workers: workers(supervisor.StateStarting, supervisor.StateIdle)})
	check("one idle worker", 200, "ok\n")
	p.set(supervisor.Stats{Workers: workers(supervisor.StateBusy, supervisor.StateStopping)})
	check("one busy worker", 200, "ok\n")
	p.set(supervisor.Stats{Workers: workers(supervisor.StateStopping, supervisor.StateFailing)})
	check("stopping and failing", 503, "not ready: no worker ready\n")
	p.set(supervisor.Stats{Workers: workers(supervisor.StateIdle), Closed: true})
	check("pool closed", 503, "not ready: no worker ready\n")
	p.set(supervisor.Stats{Workers: workers(supervisor.StateIdle)})
	check("recovered", 200, "ok\n")
	m.SetDraining()
	check("draining", 503, "not ready: draining\n")
	if code, _ := get(t, h, "/nope"); code != 404 {
		t.Errorf("/nope = %d, want 404", code)
	}
}

func TestPoolMetricsScrape(t *testing.T) {
	m := New()
	m.statm = func(pid int) (int64, bool) { return int64(pid) * 4096, pid != 1002 }
	p := &fakePool{}
	ws := workers(supervisor.StateIdle, supervisor.StateBusy, supervisor.StateBusy, supervisor.StateStarting)
	ws[1].Busy, ws[2].Busy, ws[3].Pid = 1, 1, 0
	p.set(supervisor.Stats{
		Workers: ws, Queued: 7,
		Restarts: map[string]uint64{supervisor.RestartDied: 2, supervisor.RestartBootFailed: 1,
			supervisor.RestartRetired: 0, supervisor.RestartDiedEarly: 0},
		QueueWait: supervisor.QueueWait{Count: 3, SumSeconds: 1.5, Buckets: map[float64]uint64{0.1: 1, 1: 3}},
	})
	_, body := get(t, m.Handler(nil), "/metrics")
	if strings.Contains(body, "krait_worker") || strings.Contains(body, "krait_queue") {
		t.Error("pool metrics scraped before SetPool")
	}
	m.SetPool(p)
	_, body = get(t, m.Handler(nil), "/metrics")
	for _, line := range []string{
		`krait_workers{state="idle"} 1`,
		`krait_workers{state="busy"} 2`,
		`krait_workers{state="stopping"} 0`,
		`krait_workers{state="starting"} 1`,
		`krait_workers{state="failing"} 0`,
		`krait_worker_busy{worker="2"} 1`,
		`krait_worker_capacity{worker="4"} 1`,
		`krait_worker_rss_bytes{pid="1000",worker="1"} 4.096e+06`,
		`krait_worker_rss_bytes{pid="1001",worker="2"} 4.100096e+06`,
		`krait_queue_depth 7`,
		`krait_queue_wait_seconds_bucket{le="0.1"} 1`,
		`krait_queue_wait_seconds_bucket{le="+Inf"} 3`,
		`krait_queue_wait_seconds_sum 1.5`,
		`krait_worker_restarts_total{reason="died"} 2`,
		`krait_worker_restarts_total{reason="boot_failed"} 1`,
		`krait_worker_restarts_total{reason="retired"} 0`,
		`krait_http_requests_total{code="2xx",kind="none"} 0`,
		`krait_http_requests_in_flight 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, "\n"+line) {
			t.Errorf("scrape lacks %q", line)
		}
	}
	// No RSS for a worker whose statm cannot be read, nor for a slot
	// without a process.
	if n := strings.Count(body, "\nkrait_worker_rss_bytes{"); n != 2 {
		t.Errorf("%d krait_worker_rss_bytes series, want 2", n)
	}
}

// BenchmarkMiddleware is the cost the metrics add per request, over the
// bare router ("off").
func BenchmarkMiddleware(b *testing.B) {
	ok := handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) { _ = w.WriteHeader(200, nil, nil, 0) })
	for _, on := range []bool{false, true} {
		name := "off"
		m := New()
		rt := []route.Route{{Kind: route.KindApp, Prefix: "/", Handler: ok}}
		var global []route.Middleware
		if on {
			name = "on"
			rt[0].Middleware = []route.Middleware{m.Kind(route.KindApp)}
			global = append(global, m.Wrap)
		}
		r, err := route.New(rt, global...)
		if err != nil {
			b.Fatal(err)
		}
		h, w, req := r.Listener("x"), &base{}, request("/")
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				h.Serve(w, req)
			}
		})
	}
}
