package accesslog

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

type sink struct{ body bytes.Buffer }

func (s *sink) WriteHeader(int, []byte, []exchange.Header, int64) error { return nil }
func (s *sink) Write(p []byte) (int, error)                             { return s.body.Write(p) }
func (s *sink) SendFile(*os.File, int64, int64) (int64, error)          { return 0, nil }
func (s *sink) Flush() error                                            { return nil }
func (s *sink) Abort()                                                  {}

type appFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f appFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

func TestCombinedFormat(t *testing.T) {
	for _, tc := range []struct {
		name   string
		req    exchange.Request
		status int
		body   string
		want   string
	}{
		{
			name: "full",
			req: exchange.Request{Method: []byte("GET"), Target: []byte("/a?b=1"), ProtoMajor: 1, ProtoMinor: 1,
				RemoteAddr: "10.0.0.1", Headers: []exchange.Header{
					{Name: []byte("User-Agent"), Value: []byte("curl/8")},
					{Name: []byte("REFERER"), Value: []byte("http://x/")},
					{Name: []byte("x-request-id"), Value: []byte("0123abcd")}}},
			status: 200, body: "hello",
			want: `10.0.0.1 - - [24/Nov/2026:15:04:05 +0000] "GET /a?b=1 HTTP/1.1" 200 5 "http://x/" "curl/8" "0123abcd"` + "\n",
		},
		{
			name: "escaped, empty body, unix peer",
			req: exchange.Request{Method: []byte("POST"), Target: []byte("/\"x\x01"), ProtoMajor: 1, ProtoMinor: 0,
				Headers: []exchange.Header{{Name: []byte("user-agent"), Value: []byte("a\"b")}}},
			status: 204,
			want:   `- - - [24/Nov/2026:15:04:05 +0000] "POST /\x22x\x01 HTTP/1.0" 204 - "-" "a\x22b" "-"` + "\n",
		},
		{
			name:   "no answer",
			req:    exchange.Request{Method: []byte("GET"), Target: []byte("/"), ProtoMajor: 1, ProtoMinor: 1, RemoteAddr: "::1"},
			status: 0,
			want:   `::1 - - [24/Nov/2026:15:04:05 +0000] "GET / HTTP/1.1" 499 - "-" "-" "-"` + "\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			l := New(&out)
			l.now = func() time.Time { return time.Date(2026, 11, 24, 15, 4, 5, 0, time.UTC) }
			h := l.Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
				if tc.status != 0 {
					_ = w.WriteHeader(100, nil, nil, -1)
					_ = w.WriteHeader(tc.status, nil, nil, int64(len(tc.body)))
					_, _ = w.Write([]byte(tc.body))
				}
			}))
			h.Serve(&sink{}, &tc.req)
			if out.String() != tc.want {
				t.Fatalf("got  %q\nwant %q", out.String(), tc.want)
			}
		})
	}
}

// engine is a sink with the optional interfaces of krait's HTTP/1.1 engine.
type engine struct {
	sink
	hijacked bool
	trailers []exchange.Header
}

func (e *engine) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	e.hijacked = true
	return nil, nil, nil
}

func (e *engine) WriteTrailers(f []exchange.Header) error { e.trailers = f; return nil }

func (e *engine) SendFile(_ *os.File, _, count int64) (int64, error) { return count, nil }

// TestRecorderKeepsCapabilities: behind the access log, the handler still
// reaches the engine's Hijacker and TrailerWriter, and the line records
// what happened (101 for a hijack, bytes of SendFile, the implicit 200 of
// trailers written first).
func TestRecorderKeepsCapabilities(t *testing.T) {
	for _, tc := range []struct {
		name  string
		serve func(t *testing.T, w exchange.ResponseWriter, e *engine)
		want  string
	}{
		{"hijack", func(t *testing.T, w exchange.ResponseWriter, e *engine) {
			if !exchange.CanHijack(w) {
				t.Fatal("CanHijack is false behind the access log")
			}
			if _, _, err := exchange.Hijack(w); err != nil || !e.hijacked {
				t.Fatalf("hijack: %v, engine hijacked %v", err, e.hijacked)
			}
		}, `" 101 - "`},
		{"trailers", func(t *testing.T, w exchange.ResponseWriter, e *engine) {
			_ = w.WriteHeader(200, nil, nil, -1)
			_, _ = w.Write([]byte("body"))
			f := []exchange.Header{{Name: []byte("X-Sum"), Value: []byte("1")}}
			if err := exchange.WriteTrailers(w, f); err != nil || len(e.trailers) != 1 {
				t.Fatalf("trailers: %v, engine got %v", err, e.trailers)
			}
		}, `" 200 4 "`},
		{"trailers only", func(t *testing.T, w exchange.ResponseWriter, e *engine) {
			if err := exchange.WriteTrailers(w, nil); err != nil {
				t.Fatal(err)
			}
		}, `" 200 - "`},
		{"sendfile", func(t *testing.T, w exchange.ResponseWriter, e *engine) {
			_ = w.WriteHeader(200, nil, nil, 1234)
			if n, err := w.SendFile(nil, 0, 1234); n != 1234 || err != nil {
				t.Fatalf("SendFile: %d %v", n, err)
			}
		}, `" 200 1234 "`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			e := &engine{}
			h := New(&out).Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) { tc.serve(t, w, e) }))
			h.Serve(e, &exchange.Request{Method: []byte("GET"), Target: []byte("/"), ProtoMajor: 1, ProtoMinor: 1})
			if !strings.Contains(out.String(), tc.want) {
				t.Errorf("line %q lacks %q", out.String(), tc.want)
			}
		})
	}
}

// TestRecorderWithoutEngineSupport: behind the access log, an engine
// without the optional interfaces is still reported as lacking them.
func TestRecorderWithoutEngineSupport(t *testing.T) {
	var out bytes.Buffer
	h := New(&out).Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if exchange.CanHijack(w) || exchange.CanWriteTrailers(w) {
			t.Error("the recorder claims capabilities the engine lacks")
		}
		if _, _, err := exchange.Hijack(w); !errors.Is(err, exchange.ErrNotSupported) {
			t.Errorf("Hijack: %v", err)
		}
		_ = w.WriteHeader(404, nil, nil, 0)
	}))
	h.Serve(&sink{}, &exchange.Request{Method: []byte("GET"), Target: []byte("/"), ProtoMajor: 1, ProtoMinor: 1})
	if !strings.Contains(out.String(), `" 404 - "`) {
		t.Errorf("line %q", out.String())
	}
}
