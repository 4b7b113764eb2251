package route

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/h1"
)

// fakeWriter records a response; it is a base writer (no Unwrap).
type fakeWriter struct {
	status  int
	headers []exchange.Header
	body    []byte
}

func (w *fakeWriter) WriteHeader(status int, _ []byte, h []exchange.Header, _ int64) error {
	w.status, w.headers = status, h
	return nil
}
func (w *fakeWriter) Write(p []byte) (int, error)                    { w.body = append(w.body, p...); return len(p), nil }
func (w *fakeWriter) SendFile(*os.File, int64, int64) (int64, error) { return 0, nil }
func (w *fakeWriter) Flush() error                                   { return nil }
func (w *fakeWriter) Abort()                                         {}

// hijackWriter is a base writer that can be hijacked and write trailers,
// as the h1 engine's is.
type hijackWriter struct {
	fakeWriter
	hijacked int
	trailers int
}

func (w *hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked++
	return nil, nil, nil
}

func (w *hijackWriter) WriteTrailers([]exchange.Header) error { w.trailers++; return nil }

// named is a handler that records its name in the request's trace.
type named struct {
	name  string
	trace *[]string
}

func (h named) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	*h.trace = append(*h.trace, h.name)
	_ = w.WriteHeader(200, nil, nil, 0)
}

// tag is a handler whose identity the tests compare, allocation-free.
type tag struct{ id *int }

func (h tag) Serve(w exchange.ResponseWriter, r *exchange.Request) { *h.id++ }

type handlerFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f handlerFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

func req(host, path string) *exchange.Request {
	r := &exchange.Request{Method: []byte("GET"), Target: []byte(path), ProtoMajor: 1, ProtoMinor: 1}
	if host != "" {
		r.Host = []byte(host)
	}
	if path != "" {
		r.Path = []byte(path)
		if i := strings.IndexByte(path, '?'); i >= 0 {
			r.Path, r.Query = r.Path[:i], r.Path[i+1:]
		}
	}
	return r
}

// serveName builds a router whose route i answers with name i, serves r
// on listener (via Listener, or Serve when listener is "-"), and returns
// the name of the route that served it, or "404".
func serveName(t *testing.T, routes []Route, names []string, listener string, r *exchange.Request) string {
	t.Helper()
	var trace []string
	for i := range routes {
		routes[i].Handler = named{name: names[i], trace: &trace}
		if routes[i].Kind == "" {
			routes[i].Kind = KindApp
		}
	}
	rt, err := New(routes)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var h exchange.Handler = rt
	if listener != "-" {
		h = rt.Listener(listener)
	}
	w := &fakeWriter{}
	h.Serve(w, r)
	switch {
	case len(trace) == 1:
		return trace[0]
	case len(trace) > 1:
		t.Fatalf("%d handlers served one request: %v", len(trace), trace)
	}
	if w.status != 404 || string(w.body) != "404 Not Found\n" {
		t.Fatalf("no route served the request, and the router answered %d %q, want 404", w.status, w.body)
	}
	return "404"
}

func TestMatch(t *testing.T) {
	type rt struct {
		name     string
		listener string
		host     string
		prefix   string
	}
	for _, tc := range []struct {
		name     string
		routes   []rt
		listener string // "-" = Router.Serve
		host     string
		path     string
		want     string
	}{
		// Prefixes and their segment boundaries.
		{"root matches all", []rt{{"a", "", "", "/"}}, "-", "h", "/anything/at/all", "a"},
		{"root matches asterisk", []rt{{"a", "", "", "/"}}, "-", "h", "*", "a"},
		{"root matches CONNECT (no path)", []rt{{"a", "", "", "/"}}, "-", "h:443", "", "a"},
		{"prefix exact", []rt{{"s", "", "", "/static"}}, "-", "", "/static", "s"},
		{"prefix subpath", []rt{{"s", "", "", "/static"}}, "-", "", "/static/x/y", "s"},
		{"prefix trailing slash path", []rt{{"s", "", "", "/static"}}, "-", "", "/static/", "s"},
		{"prefix is not a byte prefix", []rt{{"s", "", "", "/static"}}, "-", "", "/staticfoo", "404"},
		{"prefix shorter path", []rt{{"s", "", "", "/static"}}, "-", "", "/stat", "404"},
		{"prefix with query", []rt{{"s", "", "", "/static"}}, "-", "", "/static?x=/", "s"},
		{"slash prefix needs the slash", []rt{{"s", "", "", "/static/"}}, "-", "", "/static", "404"},
		{"slash prefix below", []rt{{"s", "", "", "/static/"}}, "-", "", "/static/a", "s"},
		{"case-sensitive path", []rt{{"s", "", "", "/static"}}, "-", "", "/Static", "404"},
		{"asterisk is no path", []rt{{"s", "", "", "/static"}}, "-", "", "*", "404"},
		{"no path (CONNECT)", []rt{{"s", "", "", "/static"}}, "-", "h:443", "", "404"},
		// Raw paths: nothing is decoded or normalized.
		{"encoded slash is no separator", []rt{{"s", "", "", "/static"}}, "-", "", "/static%2Fx", "404"},
		{"encoded prefix does not match", []rt{{"s", "", "", "/static"}, {"a", "", "", "/"}}, "-", "", "/%73tatic/x", "a"},
		{"double slash is not collapsed", []rt{{"x", "", "", "/x"}, {"a", "", "", "/"}}, "-", "", "//x", "a"},
		{"dot segments are not resolved", []rt{{"s", "", "", "/static"}, {"a", "", "", "/"}}, "-", "", "/static/../app", "s"},
		// Longest prefix wins, whatever the order.
		{"longest prefix", []rt{{"a", "", "", "/"}, {"s", "", "", "/static"}, {"i", "", "", "/static/img"}}, "-", "", "/static/img/1.png", "i"},
		{"longest prefix, other order", []rt{{"i", "", "", "/static/img"}, {"s", "", "", "/static"}, {"a", "", "", "/"}}, "-", "", "/static/x", "s"},
		{"slash prefix beats bare", []rt{{"s", "", "", "/static"}, {"t", "", "", "/static/"}}, "-", "", "/static/x", "t"},
		// Hosts.
		{"exact host", []rt{{"e", "", "example.com", "/"}}, "-", "example.com", "/", "e"},
		{"host case-insensitive", []rt{{"e", "", "Example.COM", "/"}}, "-", "EXAMPLE.com", "/", "e"},
		{"host port ignored", []rt{{"e", "", "example.com", "/"}}, "-", "example.com:8080", "/", "e"},
		{"host trailing dot", []rt{{"e", "", "example.com", "/"}}, "-", "example.com.:80", "/", "e"},
		{"route trailing dot", []rt{{"e", "", "example.com.", "/"}}, "-", "example.com", "/", "e"},
		{"other host", []rt{{"e", "", "example.com", "/"}}, "-", "example.org", "/", "404"},
		{"host suffix is not the host", []rt{{"e", "", "example.com", "/"}}, "-", "www.example.com", "/", "404"},
		{"no Host header", []rt{{"e", "", "example.com", "/"}}, "-", "", "/", "404"},
		{"no Host header, any-host route", []rt{{"e", "", "example.com", "/"}, {"a", "", "", "/"}}, "-", "", "/", "a"},
		{"ipv4 literal", []rt{{"e", "", "127.0.0.1", "/"}}, "-", "127.0.0.1:8000", "/", "e"},
		{"ipv6 literal", []rt{{"e", "", "[::1]", "/"}}, "-", "[::1]:8000", "/", "e"},
		{"ipv6 literal no port", []rt{{"e", "", "[::1]", "/"}}, "-", "[::1]", "/", "e"},
		{"wildcard one label", []rt{{"w", "", "*.example.com", "/"}}, "-", "www.example.com", "/", "w"},
		{"wildcard two labels", []rt{{"w", "", "*.example.com", "/"}}, "-", "a.b.Example.com:1", "/", "w"},
		{"wildcard not the apex", []rt{{"w", "", "*.example.com", "/"}}, "-", "example.com", "/", "404"},
		{"wildcard not a bare dot", []rt{{"w", "", "*.example.com", "/"}}, "-", ".example.com", "/", "404"},
		{"wildcard label boundary", []rt{{"w", "", "*.example.com", "/"}}, "-", "badexample.com", "/", "404"},
		// Precedence: listener, then host, then prefix; ties by order.
		{"exact host beats wildcard", []rt{{"w", "", "*.example.com", "/"}, {"e", "", "www.example.com", "/"}}, "-", "www.example.com", "/", "e"},
		{"longer wildcard beats shorter", []rt{{"w", "", "*.example.com", "/"}, {"v", "", "*.b.example.com", "/"}}, "-", "a.b.example.com", "/", "v"},
		{"wildcard beats no host", []rt{{"a", "", "", "/"}, {"w", "", "*.example.com", "/"}}, "-", "x.example.com", "/", "w"},
		{"host beats longer prefix", []rt{{"s", "", "", "/static"}, {"e", "", "example.com", "/"}}, "-", "example.com", "/static/x", "e"},
		{"prefix decides among same host", []rt{{"e", "", "example.com", "/"}, {"s", "", "example.com", "/static"}}, "-", "example.com", "/static/x", "s"},
		{"host mismatch falls back", []rt{{"e", "", "example.com", "/static"}, {"a", "", "", "/"}}, "-", "example.org", "/static/x", "a"},
		{"slash prefix is longer but does not match", []rt{{"x", "", "", "/x"}, {"y", "", "", "/x/"}, {"a", "", "", "/"}}, "-", "", "/x", "x"},
		{"listener beats host", []rt{{"e", "", "example.com", "/static"}, {"l", "pub", "", "/"}}, "pub", "example.com", "/static/x", "l"},
		{"listener route elsewhere", []rt{{"l", "pub", "", "/"}, {"a", "", "", "/"}}, "admin", "h", "/", "a"},
		{"listener route only", []rt{{"l", "pub", "", "/"}}, "admin", "h", "/", "404"},
		{"unnamed listener ignores listener routes", []rt{{"l", "pub", "", "/"}}, "-", "h", "/", "404"},
		{"listener then prefix", []rt{{"l", "pub", "", "/"}, {"m", "pub", "", "/api"}, {"a", "", "", "/api/v1"}}, "pub", "", "/api/v1/x", "m"},
		// No routes at all.
		{"empty table", nil, "-", "h", "/", "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes := make([]Route, len(tc.routes))
			names := make([]string, len(tc.routes))
			for i, r := range tc.routes {
				routes[i] = Route{Listener: r.listener, Host: r.host, Prefix: r.prefix}
				names[i] = r.name
			}
			if got := serveName(t, routes, names, tc.listener, req(tc.host, tc.path)); got != tc.want {
				t.Errorf("host %q path %q on listener %q: served by %q, want %q", tc.host, tc.path, tc.listener, got, tc.want)
			}
		})
	}
}

func TestNotFoundResponse(t *testing.T) {
	rt, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	w := &fakeWriter{}
	rt.Serve(w, req("h", "/x"))
	if w.status != 404 || string(w.body) != "404 Not Found\n" {
		t.Fatalf("got %d %q", w.status, w.body)
	}
	// errpage's page; the engine adds Content-Length from the length passed.
	var ct string
	for _, h := range w.headers {
		if strings.EqualFold(string(h.Name), "content-type") {
			ct = string(h.Value)
		}
	}
	if ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

// TestMiddlewareOrder: global middleware wraps everything (the 404 too),
// route middleware wraps the route's handler; both outermost first.
func TestMiddlewareOrder(t *testing.T) {
	var trace []string
	mw := func(name string) Middleware {
		return func(next exchange.Handler) exchange.Handler {
			return handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
				trace = append(trace, name+">")
				next.Serve(w, r)
				trace = append(trace, "<"+name)
			})
		}
	}
	rt, err := New([]Route{
		{Kind: KindApp, Prefix: "/app", Handler: named{"app", &trace}, Middleware: []Middleware{mw("r1"), mw("r2")}},
		{Kind: "other", Prefix: "/plain", Handler: named{"plain", &trace}},
	}, mw("g1"), mw("g2"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ path, want string }{
		{"/app/x", "g1> g2> r1> r2> app <r2 <r1 <g2 <g1"},
		{"/plain", "g1> g2> plain <g2 <g1"},
		{"/nothing", "g1> g2> <g2 <g1"}, // the router's 404, inside the global chain
	} {
		for _, h := range []exchange.Handler{rt, rt.Listener("x")} {
			trace = nil
			w := &fakeWriter{}
			h.Serve(w, req("", tc.path))
			if got := strings.Join(trace, " "); got != tc.want {
				t.Errorf("%s: trace %q, want %q", tc.path, got, tc.want)
			}
		}
	}
}

// TestPassesWriterThrough: the router hands the handler the very writer
// the engine gave it, so Hijack and WriteTrailers reach the engine's
// writer; and the request is not modified.
func TestPassesWriterThrough(t *testing.T) {
	base := &hijackWriter{}
	target := "//a/%2F/../b?q=%2F"
	r := req("Example.com:80", target)
	var seen exchange.ResponseWriter
	var seenReq *exchange.Request
	rt, err := New([]Route{{Kind: KindApp, Prefix: "/", Handler: handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		seen, seenReq = w, r
		if !exchange.CanHijack(w) || !exchange.CanWriteTrailers(w) {
			t.Errorf("capabilities lost: CanHijack %v, CanWriteTrailers %v", exchange.CanHijack(w), exchange.CanWriteTrailers(w))
		}
		if _, _, err := exchange.Hijack(w); err != nil {
			t.Errorf("Hijack: %v", err)
		}
		if err := exchange.WriteTrailers(w, nil); err != nil {
			t.Errorf("WriteTrailers: %v", err)
		}
	})}})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []exchange.Handler{rt, rt.Listener("l")} {
		base.hijacked, base.trailers, seen = 0, 0, nil
		h.Serve(base, r)
		if seen != exchange.ResponseWriter(base) {
			t.Errorf("the handler got %T %p, want the engine's writer %p unchanged", seen, seen, base)
		}
		if seenReq != r || string(r.Target) != target || string(r.Path) != "//a/%2F/../b" || string(r.Query) != "q=%2F" || string(r.Host) != "Example.com:80" {
			t.Errorf("request changed: %p %q %q %q %q", seenReq, r.Target, r.Path, r.Query, r.Host)
		}
		if base.hijacked != 1 || base.trailers != 1 {
			t.Errorf("Hijack reached the base writer %d times, WriteTrailers %d times; want 1 each", base.hijacked, base.trailers)
		}
	}
}

func TestValidation(t *testing.T) {
	h := named{"h", new([]string)}
	nilMW := func(exchange.Handler) exchange.Handler { return nil }
	for _, tc := range []struct {
		name   string
		routes []Route
		global []Middleware
		is     error  // errors.Is target, or nil
		substr string // in the message
	}{
		{"no handler", []Route{{Kind: KindApp, Prefix: "/"}}, nil, ErrNoHandler, "route 0 (app route prefix=\"/\"): no handler"},
		{"no kind", []Route{{Prefix: "/", Handler: h}}, nil, ErrKind, "empty"},
		{"bad kind", []Route{{Kind: "App", Prefix: "/", Handler: h}}, nil, ErrKind, `"App"`},
		{"empty prefix", []Route{{Kind: KindApp, Handler: h}}, nil, ErrPrefix, "must start with '/'"},
		{"relative prefix", []Route{{Kind: KindApp, Prefix: "static", Handler: h}}, nil, ErrPrefix, "must start with '/'"},
		{"prefix with query", []Route{{Kind: KindApp, Prefix: "/a?b", Handler: h}}, nil, ErrPrefix, "query"},
		{"prefix with fragment", []Route{{Kind: KindApp, Prefix: "/a#b", Handler: h}}, nil, ErrPrefix, "fragment"},
		{"prefix with percent", []Route{{Kind: KindApp, Prefix: "/a%2Fb", Handler: h}}, nil, ErrPrefix, "raw path"},
		{"prefix with space", []Route{{Kind: KindApp, Prefix: "/a b", Handler: h}}, nil, ErrPrefix, "whitespace"},
		{"prefix with empty segment", []Route{{Kind: KindApp, Prefix: "/a//b", Handler: h}}, nil, ErrPrefix, "segment"},
		{"prefix double slash", []Route{{Kind: KindApp, Prefix: "//", Handler: h}}, nil, ErrPrefix, "segment"},
		{"prefix dot dot", []Route{{Kind: KindApp, Prefix: "/a/../b", Handler: h}}, nil, ErrPrefix, "segment"},
		{"prefix dot", []Route{{Kind: KindApp, Prefix: "/./", Handler: h}}, nil, ErrPrefix, "segment"},
		{"host with port", []Route{{Kind: KindApp, Host: "example.com:80", Prefix: "/", Handler: h}}, nil, ErrHost, "no port"},
		{"ipv6 with port", []Route{{Kind: KindApp, Host: "[::1]:80", Prefix: "/", Handler: h}}, nil, ErrHost, "IPv6"},
		{"bad ipv6", []Route{{Kind: KindApp, Host: "[zz]", Prefix: "/", Handler: h}}, nil, ErrHost, "IPv6"},
		{"inner wildcard", []Route{{Kind: KindApp, Host: "a.*.com", Prefix: "/", Handler: h}}, nil, ErrHost, "first label"},
		{"bare wildcard", []Route{{Kind: KindApp, Host: "*", Prefix: "/", Handler: h}}, nil, ErrHost, "first label"},
		{"empty wildcard", []Route{{Kind: KindApp, Host: "*.", Prefix: "/", Handler: h}}, nil, ErrHost, "empty name"},
		{"empty label", []Route{{Kind: KindApp, Host: "a..com", Prefix: "/", Handler: h}}, nil, ErrHost, "empty label"},
		{"bad host char", []Route{{Kind: KindApp, Host: "a/b", Prefix: "/", Handler: h}}, nil, ErrHost, "invalid character"},
		{"duplicate", []Route{
			{Kind: KindApp, Prefix: "/", Handler: h},
			{Kind: KindApp, Host: "example.com", Prefix: "/x", Handler: h},
			{Kind: "other", Host: "EXAMPLE.com.", Prefix: "/x", Handler: h},
		}, nil, ErrDuplicate, "route 2 (other route host=\"EXAMPLE.com.\" prefix=\"/x\") duplicates route 1"},
		{"duplicate listener route", []Route{
			{Kind: KindApp, Listener: "l", Prefix: "/", Handler: h},
			{Kind: KindApp, Listener: "l", Prefix: "/", Handler: h},
		}, nil, ErrDuplicate, "route 1"},
		{"nil route middleware", []Route{{Kind: KindApp, Prefix: "/", Handler: h, Middleware: []Middleware{nil}}}, nil, nil, "middleware 0 is nil"},
		{"route middleware returns nil", []Route{{Kind: KindApp, Prefix: "/", Handler: h, Middleware: []Middleware{nilMW}}}, nil, nil, "middleware 0 returned a nil handler"},
		{"nil global middleware", nil, []Middleware{nil}, nil, "global middleware 0 is nil"},
		{"global middleware returns nil", nil, []Middleware{nilMW}, nil, "global middleware 0 returned a nil handler"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := New(tc.routes, tc.global...)
			if err == nil {
				t.Fatalf("New accepted the table: %v", rt.Routes())
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("error %q does not say %q", err, tc.substr)
			}
		})
	}
}

// TestNotDuplicates: routes that differ in any matching field are not
// duplicates, even when one shadows part of the other.
func TestNotDuplicates(t *testing.T) {
	h := named{"h", new([]string)}
	_, err := New([]Route{
		{Kind: KindApp, Prefix: "/", Handler: h},
		{Kind: KindApp, Prefix: "/x", Handler: h},
		{Kind: KindApp, Prefix: "/x/", Handler: h},
		{Kind: KindApp, Host: "example.com", Prefix: "/x", Handler: h},
		{Kind: KindApp, Host: "*.example.com", Prefix: "/x", Handler: h},
		{Kind: KindApp, Listener: "a", Prefix: "/x", Handler: h},
		{Kind: KindApp, Listener: "b", Prefix: "/x", Handler: h},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRoutesOrder(t *testing.T) {
	h := named{"h", new([]string)}
	rt, err := New([]Route{
		{Kind: "a", Prefix: "/", Handler: h},
		{Kind: "b", Prefix: "/x", Handler: h},
		{Kind: "c", Host: "*.example.com", Prefix: "/", Handler: h},
		{Kind: "d", Host: "example.com", Prefix: "/", Handler: h},
		{Kind: "e", Listener: "l", Prefix: "/", Handler: h},
	})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, r := range rt.Routes() {
		kinds = append(kinds, r.Kind)
	}
	if got := strings.Join(kinds, ""); got != "edcba" {
		t.Errorf("routes tried in order %q, want %q", got, "edcba")
	}
}

// TestServeAllocs: matching and serving through the router allocates
// nothing, for a routed request and for a 404, so the engine's keep-alive
// hot path stays allocation-free.
func TestServeAllocs(t *testing.T) {
	var hits int
	h := tag{&hits}
	routes := []Route{
		{Kind: KindApp, Prefix: "/", Handler: h},
		{Kind: "static", Prefix: "/static", Handler: h},
		{Kind: "static", Host: "*.example.com", Prefix: "/assets/", Handler: h},
		{Kind: "proxy", Host: "api.example.com", Prefix: "/v1", Handler: h},
		{Kind: "proxy", Listener: "admin", Prefix: "/admin", Handler: h},
	}
	rt, err := New(routes)
	if err != nil {
		t.Fatal(err)
	}
	noRoot, err := New(routes[1:])
	if err != nil {
		t.Fatal(err)
	}
	admin := rt.Listener("admin")
	w := &fakeWriter{body: make([]byte, 0, 64)}
	reqs := []*exchange.Request{
		req("Api.Example.com:8443", "/v1/users?id=3"),
		req("cdn.example.com", "/assets/app.js"),
		req("localhost:8000", "/static/x.css"),
		req("localhost:8000", "/hello?x=1"),
		req("", "*"),
	}
	for _, tc := range []struct {
		name string
		h    exchange.Handler
		r    *exchange.Request
	}{
		{"routed", rt, reqs[0]},
		{"wildcard", rt, reqs[1]},
		{"prefix", rt, reqs[2]},
		{"root", rt, reqs[3]},
		{"listener", admin, req("h", "/admin/x")},
		{"404", noRoot, reqs[3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits
			avg := testing.AllocsPerRun(1000, func() {
				w.body = w.body[:0]
				tc.h.Serve(w, tc.r)
			})
			if avg != 0 && !raceEnabled {
				t.Errorf("%.2f allocations per request, want 0", avg)
			}
			if tc.name == "404" && (hits != before || w.status != 404) {
				t.Errorf("want 404 answered by the router, got status %d, %d handler calls", w.status, hits-before)
			}
			if tc.name != "404" && hits-before != 1001 { // AllocsPerRun runs once more to warm up
				t.Errorf("handler ran %d times, want 1001", hits-before)
			}
		})
	}
}

// helloApp answers a small fixed body, as the h1 engine's own hot-path
// test does.
type helloApp struct{}

var (
	helloBody    = []byte("Hello, World!")
	helloHeaders = []exchange.Header{
		{Name: []byte("Content-Type"), Value: []byte("text/plain")},
		{Name: []byte("Content-Length"), Value: []byte("13")},
	}
)

func (helloApp) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	if w.WriteHeader(200, nil, helloHeaders, int64(len(helloBody))) == nil {
		_, _ = w.Write(helloBody)
	}
}

// TestEngineHotPathAllocs: a keep-alive request served by the real h1
// engine through a router with several routes still allocates nothing.
func TestEngineHotPathAllocs(t *testing.T) {
	rt, err := New([]Route{
		{Kind: KindApp, Prefix: "/", Handler: helloApp{}},
		{Kind: "static", Prefix: "/static", Handler: helloApp{}},
		{Kind: "proxy", Host: "*.example.com", Prefix: "/api", Handler: helloApp{}},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h1.New(rt.Listener("127.0.0.1:0"), h1.Config{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c, err := net.DialTimeout("tcp4", l.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	request := []byte("GET /hello?x=1 HTTP/1.1\r\nHost: www.example.com:8000\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")

	// The first response tells the length of all (Date has a fixed width).
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "Hello, World!" || br.Buffered() != 0 {
		t.Fatalf("first response %d %q (%d bytes left)", resp.StatusCode, body, br.Buffered())
	}
	buf := make([]byte, 4096)
	n := -1
	roundTrip := func() {
		if _, err := c.Write(request); err != nil {
			t.Fatal(err)
		}
		if n < 0 {
			// Read one response by its end: the header block, then 13 bytes.
			got := 0
			for {
				m, err := c.Read(buf[got:])
				if err != nil {
					t.Fatal(err)
				}
				got += m
				if i := bytes.Index(buf[:got], []byte("\r\n\r\n")); i >= 0 && got >= i+4+len(helloBody) {
					n = got
					break
				}
			}
			return
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		roundTrip() // warm up buffers, the Date cache, header slices
	}
	if !bytes.HasSuffix(buf[:n], helloBody) {
		t.Fatalf("response %q", buf[:n])
	}
	if avg := testing.AllocsPerRun(2000, roundTrip); avg != 0 && !raceEnabled {
		t.Fatalf("%.2f allocations per request through the router, want 0", avg)
	}
}
