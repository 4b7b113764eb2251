package dispatch

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/h1"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/worker/workertest"
)

// newASGIEnv starts fake ASGI workers (workertest, EnvInterface=asgi).
func newASGIEnv(t testing.TB, capacity int, cfg Config) *env {
	t.Helper()
	out := &syncBuffer{}
	log := discardLog()
	p, err := supervisor.Start(context.Background(), supervisor.Config{
		Worker: workertest.Settings(1, workertest.EnvMode+"=ready", workertest.EnvCapacity+"="+strconv.Itoa(capacity),
			workertest.EnvInterface+"=asgi"),
		Workers: 1, Log: log, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = 10
	}
	cfg.Log = log
	return &env{pool: p, d: New(p, cfg), out: out}
}

// serveH1 serves the dispatcher with krait's HTTP/1.1 engine on a free
// loopback port and returns its address.
func serveH1(t testing.TB, e *env) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h1.New(e.d, h1.Config{Log: discardLog()})
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return l.Addr().String()
}

// waitOutput waits until the workers printed want.
func waitOutput(t testing.TB, e *env, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker never printed %q; output:\n%s", want, e.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestASGIScope(t *testing.T) {
	e := newASGIEnv(t, 4, Config{})
	r := get("/sc%6Fpe?x=%20y")
	r.Path = []byte("/sc%6Fpe")
	r.Headers = append(r.Headers, exchangeHeader("X-Dup", "1"), exchangeHeader("x-dup", "2"))
	rec := e.serve(r)
	if rec.status != 200 {
		t.Fatalf("status %d body %q", rec.status, rec.body.String())
	}
	body := rec.body.String()
	for _, want := range []string{
		`type="http"`, `method="GET"`, `http_version="1.1"`, `scheme="http"`,
		`path="/scope"`, `raw_path=b"/sc%6Fpe"`, `query_string=b"x=%20y"`, `root_path=""`,
		`headers=[(b"host", b"example.com"), (b"x-dup", b"1"), (b"x-dup", b"2")]`,
		`client=("127.0.0.1", 5555)`, `server=("127.0.0.1", 8000)`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scope lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, "subprotocols") {
		t.Errorf("http scope with subprotocols:\n%s", body)
	}
	// Non-UTF-8 path bytes fall back to latin-1; unix sockets have no
	// client or server address.
	r = get("/scope")
	r.Path = []byte("/scope/caf%C3%A9/%FF")
	r.Scheme, r.RemoteAddr, r.RemotePort, r.LocalAddr, r.LocalPort = "https", "", 0, "", 0
	body = e.serve(r).body.String()
	for _, want := range []string{`path="/scope/café/ÿ"`, `scheme="https"`, `client=None`, `server=None`} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scope lacks %s:\n%s", want, body)
		}
	}
}

func TestASGIHTTPOverEngine(t *testing.T) {
	e := newASGIEnv(t, 4, Config{})
	addr := serveH1(t, e)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)

	// Trailers on a chunked response.
	_, _ = io.WriteString(c, "GET /trailers HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("body %q trailers %v header %v", b, resp.Trailer, resp.Header)
	}

	// Early hints: a 103 before the 200.
	_, _ = io.WriteString(c, "GET /early-hint HTTP/1.1\r\nHost: x\r\n\r\n")
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 103 Early Hints\r\n" {
		t.Fatalf("first line %q", line)
	}
	var hint string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
		hint += l
	}
	if !strings.Contains(hint, "link: </s.css>; rel=preload") {
		t.Fatalf("103 fields %q", hint)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}

	// WSGI-style routes still work on an ASGI worker (2-tuple RESPONSE).
	_, _ = io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if string(b) != "hello" {
		t.Fatalf("echo %q", b)
	}

	// A large streamed body while the connection is being watched.
	big := bytes.Repeat([]byte("z"), 1<<20)
	go func() {
		_, _ = io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n")
		_, _ = c.Write(big)
		_, _ = io.WriteString(c, "\r\n0\r\n\r\n")
	}()
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if !bytes.Equal(b, big) {
		t.Fatalf("echo of 1 MiB: got %d bytes", len(b))
	}
}

// TestASGIDisconnect: a client that leaves while the app has not answered
// yet makes krait reset the stream at once (the app's http.disconnect).
func TestASGIDisconnect(t *testing.T) {
	e := newASGIEnv(t, 1, Config{})
	addr := serveH1(t, e)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "GET /asgi-wait HTTP/1.1\r\nHost: x\r\n\r\n")
	// Wait until the request reached the app, then leave.
	deadline := time.Now().Add(30 * time.Second)
	for !inFlight(e) {
		if time.Now().After(deadline) {
			t.Fatal("request never reached the worker")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	waitOutput(t, e, "[fake] http.disconnect stream")
	waitServes(t, e) // the only slot is free again
}

// inFlight reports whether a request holds the env's only slot: a request
// with a zero queue then gets 503.
func inFlight(e *env) bool {
	d := New(e.pool, Config{MaxQueue: 0, Log: discardLog()})
	rec := &recorder{cl: -1}
	d.Serve(rec, get("/"))
	return rec.status == 503
}

func exchangeHeader(name, value string) exchange.Header {
	return exchange.Header{Name: []byte(name), Value: []byte(value)}
}

// TestWebSocketUpgradeToWSGI: a WSGI app answers an upgrade request itself.
func TestWebSocketUpgradeToWSGI(t *testing.T) {
	e := newEnv(t, 1, 2, 10)
	r := get("/")
	r.Headers = append(r.Headers, exchangeHeader("Upgrade", "websocket"), exchangeHeader("Connection", "Upgrade"),
		exchangeHeader("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), exchangeHeader("Sec-WebSocket-Version", "13"))
	if rec := e.serve(r); rec.status != 200 || rec.body.String() != "hello" {
		t.Fatalf("got %d %q", rec.status, rec.body.String())
	}
}
