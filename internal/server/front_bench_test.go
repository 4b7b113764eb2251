package server

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/codec"
	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/h1"
	"github.com/krait-server/krait/internal/wire"
)

// stubApp does the Go side of a dispatched hello-world request without a
// worker: it encodes the WSGI environ as dispatch does, decodes a canned
// RESPONSE and writes it.
type stubApp struct {
	frame, scratch []byte
	resp           []byte
	parser         codec.Parser
	body           []byte
}

func newStubApp() *stubApp {
	p := []byte{'(', 2, 0, 0, 0}
	p = wire.AppendStr(p, "200 OK")
	p = append(p, '[', 2, 0, 0, 0)
	for _, kv := range [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", "13"}} {
		p = append(p, '(', 2, 0, 0, 0)
		p = wire.AppendStr(wire.AppendStr(p, kv[0]), kv[1])
	}
	return &stubApp{resp: p, frame: make([]byte, 0, 4096), body: []byte("Hello, World!")}
}

func (a *stubApp) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	a.frame, a.scratch = codec.AppendEnviron(a.frame[:0], r, a.scratch)
	resp, err := a.parser.Response(a.resp)
	if err != nil {
		panic(err)
	}
	if err := w.WriteHeader(resp.Status, resp.Reason, resp.Headers, resp.ContentLength); err != nil {
		return
	}
	_, _ = w.Write(a.body)
}

// BenchmarkFrontDoor is the Go front's own CPU per hello-world request on
// the HTTP/1.1 engine, pipelined 16 deep so that syscalls are amortized:
// "bare" serves the stub app directly, "default" behind the middleware and
// router krait builds with its default settings (forwarded headers,
// request id, router, compression negotiation). The difference is what
// the front-door features cost every request.
func BenchmarkFrontDoor(b *testing.B) {
	const depth = 16
	req := []byte("GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")
	for _, tc := range []struct {
		name  string
		chain bool
	}{{"bare", false}, {"default", true}} {
		b.Run(tc.name, func(b *testing.B) {
			var h exchange.Handler = newStubApp()
			cfg := config.Default()
			if tc.chain {
				r, err := newRouter(h, nil, nil, nil, &cfg)
				if err != nil {
					b.Fatal(err)
				}
				h = r.Listener("127.0.0.1:8000")
			}
			srv := h1.New(h, h1.Config{HTTP: cfg.HTTP})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = srv.Serve(l) }()
			defer srv.Close()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			var batch []byte
			for range depth {
				batch = append(batch, req...)
			}
			// One response's length, to read exactly depth of them.
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
			one := make([]byte, 4096)
			n, err := c.Read(one)
			if err != nil {
				b.Fatal(err)
			}
			buf := make([]byte, depth*n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += depth {
				if _, err := c.Write(batch); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
