package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/worker/workertest"
)

func TestMain(m *testing.M) {
	workertest.Main()
	os.Exit(m.Run())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// recorder is a fake exchange.ResponseWriter.
type recorder struct {
	status     int
	reason     string
	headers    map[string]string
	cl         int64
	body       bytes.Buffer
	discard    bool // count body bytes without keeping them
	n          int64
	crc        uint32
	maxWrite   int
	flushes    int
	aborted    bool
	failAfter  int64 // Write fails once this many bytes were written (0 = never)
	headerCall int
}

func (r *recorder) WriteHeader(status int, reason []byte, headers []exchange.Header, cl int64) error {
	r.headerCall++
	r.status, r.reason, r.cl = status, string(reason), cl
	r.headers = map[string]string{}
	for _, h := range headers {
		r.headers[string(h.Name)] = string(h.Value)
	}
	return nil
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.failAfter > 0 && r.n >= r.failAfter {
		return 0, errors.New("broken pipe")
	}
	if r.cl >= 0 && r.n+int64(len(p)) > r.cl {
		return 0, errors.New("more than Content-Length")
	}
	r.n += int64(len(p))
	r.maxWrite = max(r.maxWrite, len(p))
	r.crc = crc32.Update(r.crc, crc32.IEEETable, p)
	if !r.discard {
		r.body.Write(p)
	}
	return len(p), nil
}

func (r *recorder) SendFile(f *os.File, off, count int64) (int64, error) {
	var rd io.Reader = io.NewSectionReader(f, off, 1<<62)
	if count >= 0 {
		rd = io.LimitReader(rd, count)
	}
	n, err := io.Copy(&r.body, rd)
	r.n += n
	return n, err
}

func (r *recorder) Flush() error { r.flushes++; return nil }
func (r *recorder) Abort()       { r.aborted = true }

type env struct {
	pool *supervisor.Pool
	d    *Dispatcher
	out  *syncBuffer
}

func newEnv(t testing.TB, workers, capacity, maxQueue int) *env {
	t.Helper()
	out := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := supervisor.Start(context.Background(), supervisor.Config{
		Worker:  workertest.Settings(capacity, workertest.EnvMode+"=ready", workertest.EnvCapacity+"="+strconv.Itoa(capacity)),
		Workers: workers, Log: log, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &env{pool: p, d: New(p, Config{MaxQueue: maxQueue, Log: log}), out: out}
}

func get(target string) *exchange.Request {
	path, query, _ := strings.Cut(target, "?")
	return &exchange.Request{
		Method: []byte("GET"), Target: []byte(target), Path: []byte(path), Query: []byte(query),
		ProtoMajor: 1, ProtoMinor: 1, Host: []byte("example.com"),
		Headers:       []exchange.Header{{Name: []byte("Host"), Value: []byte("example.com")}},
		ContentLength: 0, Body: bytes.NewReader(nil), Scheme: "http",
		RemoteAddr: "127.0.0.1", RemotePort: 5555, LocalAddr: "127.0.0.1", LocalPort: 8000,
		Watch: func() {},
	}
}

func (e *env) serve(r *exchange.Request) *recorder {
	rec := &recorder{cl: -1}
	e.d.Serve(rec, r)
	return rec
}

func TestServeHello(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	for i := 0; i < 50; i++ {
		rec := e.serve(get("/"))
		if rec.status != 200 || rec.reason != "OK" || rec.body.String() != "hello" || rec.aborted {
			t.Fatalf("got %d %q %q aborted=%v", rec.status, rec.reason, rec.body.String(), rec.aborted)
		}
		if rec.cl != 5 {
			t.Fatalf("content length %d, want 5 (RESPONSE and DATA arrived together)", rec.cl)
		}
		if rec.headers["Content-Type"] != "text/plain" {
			t.Fatalf("headers %v", rec.headers)
		}
	}
}

func TestServeEnvironEndToEnd(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	r := get("/env")
	r.Path = []byte("/env/caf%C3%A9/x%2Fy%zz")
	r.Target = []byte("/env/caf%C3%A9/x%2Fy%zz?q=1")
	r.Query = []byte("q=1")
	rec := e.serve(r)
	body := rec.body.String()
	for _, want := range []string{
		"PATH_INFO=/env/caf\xc3\xa9/x/y%zz\n", "QUERY_STRING=q=1\n", "REQUEST_METHOD=GET\n",
		"SERVER_NAME=example.com\n", "SERVER_PORT=80\n", "HTTP_HOST=example.com\n",
		"RAW_URI=/env/caf%C3%A9/x%2Fy%zz?q=1\n", "REMOTE_PORT=5555\n", "wsgi.url_scheme=http\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("environ lacks %q:\n%s", want, body)
		}
	}
}

func TestQueueFull503(t *testing.T) {
	e := newEnv(t, 1, 1, 0)
	held, err := e.pool.Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := e.serve(get("/"))
	// errpage's page: the status, no internal detail ("busy", "worker").
	if rec.status != 503 || rec.headers["Retry-After"] != "1" || rec.body.String() != "503 Service Unavailable\n" {
		t.Fatalf("got %d %v %q", rec.status, rec.headers, rec.body.String())
	}
	held.Close()
	if rec := e.serve(get("/")); rec.status != 200 {
		t.Fatalf("after release: %d", rec.status)
	}
}

func TestQueueWaitsThenServes(t *testing.T) {
	e := newEnv(t, 1, 1, 5)
	held, err := e.pool.Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *recorder)
	go func() { done <- e.serve(get("/")) }()
	// Let the request queue (it cannot finish while the slot is held).
	select {
	case rec := <-done:
		t.Fatalf("served while the only slot was held: %d", rec.status)
	case <-time.After(50 * time.Millisecond):
	}
	held.Close()
	if rec := <-done; rec.status != 200 {
		t.Fatalf("status %d", rec.status)
	}
}

func TestWorkerDeath(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	rec := e.serve(get("/die"))
	if rec.status != 502 || rec.aborted {
		t.Fatalf("die before response: %d aborted=%v", rec.status, rec.aborted)
	}
	// The worker is replaced; the next request works (perhaps after a
	// queue wait while it restarts).
	waitServes(t, e)
	rec = e.serve(get("/die-mid"))
	if rec.status != 200 || !rec.aborted || rec.body.String() != "partial" {
		t.Fatalf("die mid-response: %d aborted=%v body %q", rec.status, rec.aborted, rec.body.String())
	}
	waitServes(t, e)
}

func waitServes(t *testing.T, e *env) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec := e.serve(get("/"))
		if rec.status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no worker back: %d", rec.status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWorkerReset(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	rec := e.serve(get("/reset-mid"))
	if rec.status != 200 || !rec.aborted || rec.body.String() != "partial" {
		t.Fatalf("got %d aborted=%v body %q", rec.status, rec.aborted, rec.body.String())
	}
}

func TestStreaming(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	rec := e.serve(get("/chunks"))
	if rec.body.String() != "one two three" || rec.aborted {
		t.Fatalf("body %q aborted=%v", rec.body.String(), rec.aborted)
	}
	// More than a window: the worker must wait for credit, which is only
	// returned after a flush.
	rec = e.serve(get("/big?1048576"))
	if rec.n != 1<<20 || rec.aborted || rec.flushes == 0 || rec.cl != -1 {
		t.Fatalf("%d bytes aborted=%v flushes=%d cl=%d", rec.n, rec.aborted, rec.flushes, rec.cl)
	}
}

func TestResponseValidation(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	tests := []struct {
		scenario string
		status   int
		check    func(*recorder) error
	}{
		{"int-status", 201, nil},
		{"bad-status", 500, nil},
		{"bad-header-name", 500, nil},
		{"bad-header-value", 500, nil},
		{"non-latin1", 500, nil},
		{"hop-by-hop", 200, func(r *recorder) error {
			if _, ok := r.headers["Connection"]; ok || r.headers["X-Ok"] != "yes" {
				return fmt.Errorf("headers %v", r.headers)
			}
			return nil
		}},
		{"content-length", 200, func(r *recorder) error {
			if r.cl != 4 || r.body.String() != "body" {
				return fmt.Errorf("cl %d body %q", r.cl, r.body.String())
			}
			return nil
		}},
		{"bytes-headers", 200, func(r *recorder) error {
			if r.headers["X-Bytes"] != "caf\xe9" || r.headers["X-Str"] != "caf\xe9" {
				return fmt.Errorf("headers %q", r.headers)
			}
			return nil
		}},
		{"undecodable", 502, nil},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			rec := e.serve(get("/respond?" + tt.scenario))
			if rec.status != tt.status {
				t.Fatalf("status %d, want %d (body %q)", rec.status, tt.status, rec.body.String())
			}
			if tt.check != nil {
				if err := tt.check(rec); err != nil {
					t.Fatal(err)
				}
			}
			waitServes(t, e)
		})
	}
}

func TestSendFile(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	path := filepath.Join(t.TempDir(), "f.txt")
	content := strings.Repeat("file content ", 1000)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	rec := e.serve(get("/sendfile?" + path))
	if rec.status != 200 || rec.body.String() != content {
		t.Fatalf("status %d, %d bytes", rec.status, rec.body.Len())
	}
}

// patternReader yields n deterministic bytes in reads of varying size.
type patternReader struct {
	n, off int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	m := min(int64(len(b)), p.n-p.off, 1+p.off%70000)
	for i := range b[:m] {
		b[i] = byte((p.off + int64(i)) * 7)
	}
	p.off += m
	return int(m), nil
}

func crcOf(n int64) uint32 {
	c := crc32.NewIEEE()
	io.Copy(c, &patternReader{n: n})
	return c.Sum32()
}

func TestEchoBodies(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	tests := []struct {
		name    string
		n       int64
		chunked bool
	}{
		{"empty", 0, false},
		{"small inline", 1000, false},
		{"inline limit", inlineBody, false},
		{"large", 5 << 20, false},
		{"chunked", 3<<20 + 17, true},
		{"chunked empty", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get("/echo")
			r.Method = []byte("POST")
			r.Body = &patternReader{n: tt.n}
			r.ContentLength = tt.n
			if tt.chunked {
				r.ContentLength = -1
			}
			rec := &recorder{cl: -1, discard: true}
			e.d.Serve(rec, r)
			if rec.status != 200 || rec.aborted || rec.n != tt.n || rec.crc != crcOf(tt.n) {
				t.Fatalf("status %d aborted %v: %d bytes (want %d), crc match %v",
					rec.status, rec.aborted, rec.n, tt.n, rec.crc == crcOf(tt.n))
			}
		})
	}
}

// TestLargeTransferMemoryBounded streams 64 MiB up and back and checks the
// Go side allocated far less than that: flow control keeps it bounded.
func TestLargeTransferMemoryBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 128 MiB")
	}
	e := newEnv(t, 1, 1, 10)
	const n = 64 << 20
	r := get("/echo")
	r.Method = []byte("POST")
	r.Body = &patternReader{n: n}
	r.ContentLength = n
	rec := &recorder{cl: -1, discard: true}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e.d.Serve(rec, r)
	runtime.ReadMemStats(&after)
	if rec.n != n || rec.crc != crcOf(n) {
		t.Fatalf("echoed %d bytes", rec.n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Fatalf("allocated %d MiB moving 64 MiB each way", alloc>>20)
	}
	if rec.maxWrite > 1<<20 {
		t.Fatalf("a single write of %d bytes", rec.maxWrite)
	}
}

func TestClientFailureResets(t *testing.T) {
	e := newEnv(t, 1, 1, 10)
	rec := &recorder{cl: -1, discard: true, failAfter: 1 << 20}
	e.d.Serve(rec, get("/big?104857600"))
	if !rec.aborted {
		t.Fatal("response not aborted")
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.out.String(), "[fake] reset stream") {
		if time.Now().After(deadline) {
			t.Fatalf("the worker saw no RESET; output:\n%s", e.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The only slot is free again once the worker ended the stream.
	waitServes(t, e)
}

func TestStreamClientGone(t *testing.T) {
	e := newEnv(t, 1, 1, 10)
	r := get("/stream-wait")
	// The client is gone: the engine cancels the context once watched.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := false
	r.Ctx = ctx
	r.Watch = func() { asked = true; cancel() }
	rec := e.serve(r)
	// "first" may or may not have arrived with RESPONSE: either way the
	// stream is reset once the response is streaming.
	if b := rec.body.String(); !asked || !rec.aborted || (b != "" && b != "first") {
		t.Fatalf("asked %v aborted %v body %q", asked, rec.aborted, rec.body.String())
	}
	waitServes(t, e)
	// A plain response never asks for the watch.
	r = get("/")
	r.Watch = func() { t.Error("Watch called for a plain response") }
	e.serve(r)
}

func TestRequestBodyClientGone(t *testing.T) {
	e := newEnv(t, 1, 1, 10)
	pr, pw := io.Pipe()
	r := get("/echo")
	r.Method = []byte("POST")
	r.Body = pr
	r.ContentLength = -1
	done := make(chan *recorder)
	go func() { done <- e.serve(r) }()
	pw.Write([]byte("some"))
	pw.CloseWithError(errors.New("connection reset"))
	rec := <-done
	if !rec.aborted && rec.status != 500 {
		t.Fatalf("status %d aborted %v", rec.status, rec.aborted)
	}
	waitServes(t, e)
}

func BenchmarkServeHello(b *testing.B) {
	e := newEnv(b, 1, 4, 100)
	r := get("/")
	w := &nopWriter{}
	e.d.Serve(w, r)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.d.Serve(w, r)
		if w.status != 200 {
			b.Fatal(w.status)
		}
	}
}

// nopWriter is an allocation-free ResponseWriter for the benchmark.
type nopWriter struct{ status int }

func (w *nopWriter) WriteHeader(status int, _ []byte, _ []exchange.Header, _ int64) error {
	w.status = status
	return nil
}
func (w *nopWriter) Write(p []byte) (int, error)                    { return len(p), nil }
func (w *nopWriter) SendFile(*os.File, int64, int64) (int64, error) { return 0, nil }
func (w *nopWriter) Flush() error                                   { return nil }
func (w *nopWriter) Abort()                                         {}

func BenchmarkServeHelloParallel(b *testing.B) {
	e := newEnv(b, 2, 8, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := get("/")
		w := &nopWriter{}
		for pb.Next() {
			e.d.Serve(w, r)
			if w.status != 200 {
				b.Fatal(w.status)
			}
		}
	})
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
