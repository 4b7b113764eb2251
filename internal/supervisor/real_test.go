package supervisor_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/dispatch"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/worker"
	"github.com/krait-server/krait/python"
)

// These tests boot the real Python adapter (python/krait_worker).

const tinyApp = `
def application(environ, start_response):
    body = environ["wsgi.input"].read()
    out = ("%s %s %s|" % (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ["QUERY_STRING"])).encode("latin-1") + body
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Path", environ["PATH_INFO"])])
    return [out]
`

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func realConfig(t *testing.T, app string) supervisor.Config {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not on PATH")
	}
	adapter, err := python.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tinyapp.py"), []byte(app), 0o644); err != nil {
		t.Fatal(err)
	}
	wc := config.Default().Worker
	wc.Python, wc.App, wc.Interface, wc.Threads, wc.Chdir = py, "tinyapp:application", "wsgi", 2, dir
	wc.BootTimeout = 60 * time.Second
	return supervisor.Config{
		Worker: wc, Workers: 1, AdapterDir: adapter,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Output: &lockedBuffer{},
	}
}

type response struct {
	status  int
	headers map[string]string
	cl      int64
	body    bytes.Buffer
	aborted bool
}

func (r *response) WriteHeader(status int, _ []byte, hs []exchange.Header, cl int64) error {
	r.status, r.cl = status, cl
	r.headers = map[string]string{}
	for _, h := range hs {
		r.headers[string(h.Name)] = string(h.Value)
	}
	return nil
}
func (r *response) Write(p []byte) (int, error) { return r.body.Write(p) }
func (r *response) SendFile(f *os.File, off, n int64) (int64, error) {
	return io.Copy(&r.body, io.NewSectionReader(f, off, n))
}
func (r *response) Flush() error { return nil }
func (r *response) Abort()       { r.aborted = true }

func TestRealWorkerRequest(t *testing.T) {
	cfg := realConfig(t, tinyApp)
	p, err := supervisor.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	d := dispatch.New(p, dispatch.Config{MaxQueue: 10, Log: cfg.Log})
	body := strings.Repeat("b", 300000) // beyond the inline limit and a window
	r := &exchange.Request{
		Method: []byte("POST"), Target: []byte("/caf%C3%A9?x=1"), Path: []byte("/caf%C3%A9"), Query: []byte("x=1"),
		ProtoMajor: 1, ProtoMinor: 1, Host: []byte("localhost:8000"),
		Headers:       []exchange.Header{{Name: []byte("Host"), Value: []byte("localhost:8000")}},
		ContentLength: int64(len(body)), Body: strings.NewReader(body), Scheme: "http",
		RemoteAddr: "127.0.0.1", RemotePort: 40000, Watch: func() {},
	}
	for i := 0; i < 3; i++ {
		r.Body = strings.NewReader(body)
		rec := &response{}
		d.Serve(rec, r)
		want := "POST /caf\xc3\xa9 x=1|" + body
		if rec.status != 200 || rec.aborted || rec.body.String() != want {
			t.Fatalf("status %d aborted %v body %.60q", rec.status, rec.aborted, rec.body.String())
		}
		if rec.headers["X-Path"] != "/caf\xc3\xa9" {
			t.Fatalf("headers %q", rec.headers)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestRealWorkerBootFailure(t *testing.T) {
	cfg := realConfig(t, "def application(:\n    pass\n")
	_, err := supervisor.Start(context.Background(), cfg)
	var be *worker.BootError
	if !errors.As(err, &be) || !strings.Contains(be.Message, "SyntaxError") {
		t.Fatalf("err = %v, want a BootError with SyntaxError", err)
	}
}
