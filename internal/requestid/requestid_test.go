package requestid

import (
	"bufio"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

func hdrs(kv ...string) []exchange.Header {
	var hs []exchange.Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, exchange.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

func TestValid(t *testing.T) {
	for _, id := range []string{
		"a", "0123456789abcdef0123456789abcdef", "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
		"YWJj+/==", "Root=1-5759e988-bd862e3fe1be46a994272793", "svc.v1:req@host_~", strings.Repeat("x", MaxLen),
	} {
		if !Valid([]byte(id)) {
			t.Errorf("Valid(%q) = false", id)
		}
	}
	for _, id := range []string{
		"", strings.Repeat("x", MaxLen+1), "a b", "a\tb", `a"b`, "a'b", "<script>", "a&b", `a\b`,
		"a,b", "a;b", "a\x00", "a\x7f", "é", "a\r\nSet-Cookie: x",
	} {
		if Valid([]byte(id)) {
			t.Errorf("Valid(%q) = true", id)
		}
	}
}

var generated = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestAppendNewUnique(t *testing.T) {
	const n = 100_000
	seen := make(map[string]struct{}, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Four goroutines: ids from different pooled generators never collide either.
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [GeneratedLen]byte
			for i := 0; i < n/4; i++ {
				id := string(AppendNew(buf[:0]))
				mu.Lock()
				seen[id] = struct{}{}
				mu.Unlock()
				if i%1000 == 0 && !generated.MatchString(id) {
					t.Errorf("generated id %q", id)
				}
			}
		}()
	}
	wg.Wait()
	if len(seen) != n {
		t.Fatalf("%d distinct ids of %d", len(seen), n)
	}
}

// rec is an engine writer with the optional interfaces.
type rec struct {
	statuses []int
	headers  [][]exchange.Header
	hijacked int
	trailers int
}

func (r *rec) WriteHeader(status int, _ []byte, hs []exchange.Header, _ int64) error {
	r.statuses = append(r.statuses, status)
	cp := make([]exchange.Header, len(hs))
	for i, h := range hs {
		cp[i] = exchange.Header{Name: []byte(string(h.Name)), Value: []byte(string(h.Value))}
	}
	r.headers = append(r.headers, cp)
	return nil
}
func (r *rec) Write(p []byte) (int, error)                    { return len(p), nil }
func (r *rec) SendFile(*os.File, int64, int64) (int64, error) { return 0, nil }
func (r *rec) Flush() error                                   { return nil }
func (r *rec) Abort()                                         {}
func (r *rec) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r.hijacked++
	return nil, nil, nil
}
func (r *rec) WriteTrailers([]exchange.Header) error { r.trailers++; return nil }

type appFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f appFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

func values(hs []exchange.Header, name string) []string {
	var out []string
	for _, h := range hs {
		if strings.EqualFold(string(h.Name), name) {
			out = append(out, string(h.Value))
		}
	}
	return out
}

// serve runs one request with headers in through the middleware; the app
// answers 200 with appHeaders. It returns what the app saw and the
// response.
func serve(t *testing.T, m *Middleware, in []exchange.Header, appHeaders []exchange.Header) (seen []exchange.Header, fromReq string, resp *rec) {
	t.Helper()
	resp = &rec{}
	r := &exchange.Request{Headers: in}
	orig := in
	m.Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		seen = append([]exchange.Header(nil), r.Headers...)
		fromReq = string(FromRequest(r))
		_ = w.WriteHeader(103, nil, nil, -1)
		_ = w.WriteHeader(200, nil, appHeaders, 0)
	})).Serve(resp, r)
	if &r.Headers[0] != &orig[0] || len(r.Headers) != len(orig) {
		t.Error("Request.Headers not restored after the handler")
	}
	return seen, fromReq, resp
}

func TestMiddleware(t *testing.T) {
	m := New()
	for _, tc := range []struct {
		name string
		in   []exchange.Header
		keep string // the id kept; "" means a generated one
	}{
		{"pass through", hdrs("Host", "a", "X-Request-ID", "abc-123"), "abc-123"},
		{"any case", hdrs("x-request-id", "3f2504e0-4f89-41d3-9a0c-0305e82c3301", "Host", "a"), "3f2504e0-4f89-41d3-9a0c-0305e82c3301"},
		{"missing", hdrs("Host", "a", "Accept", "*/*"), ""},
		{"empty", hdrs("Host", "a", "X-Request-Id", ""), ""},
		{"bad bytes", hdrs("Host", "a", "X-Request-Id", "<script>alert(1)</script>"), ""},
		{"too long", hdrs("X-Request-Id", strings.Repeat("a", MaxLen+1), "Host", "a"), ""},
		{"two: the first valid kept, once", hdrs("X-Request-Id", "bad id", "Host", "a", "X-Request-Id", "good", "X-Request-Id", "other"), "good"},
		{"two valid", hdrs("X-Request-Id", "one", "X-Request-Id", "two"), "one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]exchange.Header(nil), tc.in...)
			seen, fromReq, resp := serve(t, m, in, hdrs("Content-Type", "text/plain"))
			ids := values(seen, HeaderName)
			if len(ids) != 1 {
				t.Fatalf("the app saw X-Request-ID %q, want exactly one", ids)
			}
			id := ids[0]
			if tc.keep != "" && id != tc.keep {
				t.Errorf("the app saw %q, want %q kept", id, tc.keep)
			}
			if tc.keep == "" && !generated.MatchString(id) {
				t.Errorf("the app saw %q, want a generated id", id)
			}
			if fromReq != id {
				t.Errorf("FromRequest %q, headers %q", fromReq, id)
			}
			// Every other field is kept, in order.
			var others, want []string
			for _, h := range seen {
				if !strings.EqualFold(string(h.Name), HeaderName) {
					others = append(others, string(h.Name)+": "+string(h.Value))
				}
			}
			for _, h := range tc.in {
				if !strings.EqualFold(string(h.Name), HeaderName) {
					want = append(want, string(h.Name)+": "+string(h.Value))
				}
			}
			if strings.Join(others, "\n") != strings.Join(want, "\n") {
				t.Errorf("the app saw %q, want %q", others, want)
			}
			// The response: no id on the 103, exactly one on the 200.
			if len(resp.statuses) != 2 || len(values(resp.headers[0], HeaderName)) != 0 {
				t.Errorf("1xx headers %v", resp.headers)
			}
			if got := values(resp.headers[1], HeaderName); len(got) != 1 || got[0] != id {
				t.Errorf("response X-Request-ID %q, want [%q]", got, id)
			}
			if got := values(resp.headers[1], "Content-Type"); len(got) != 1 {
				t.Errorf("the app's own headers were lost: %v", resp.headers[1])
			}
			// The caller's slice is untouched.
			for i := range tc.in {
				if string(in[i].Name) != string(tc.in[i].Name) || string(in[i].Value) != string(tc.in[i].Value) {
					t.Errorf("request header %d changed: %q", i, in[i])
				}
			}
		})
	}
}

// TestAppSetsItsOwn: an app that answers with its own X-Request-ID keeps
// it, and the response has one.
func TestAppSetsItsOwn(t *testing.T) {
	_, _, resp := serve(t, New(), hdrs("X-Request-ID", "abc"), hdrs("x-request-id", "app-chose"))
	if got := values(resp.headers[1], HeaderName); len(got) != 1 || got[0] != "app-chose" {
		t.Errorf("response X-Request-ID %q", got)
	}
}

// TestDistinctPerRequest: requests without an id get different ones, and
// the same Request reused (as the engine does) gets a fresh one each time.
func TestDistinctPerRequest(t *testing.T) {
	m := New()
	in := hdrs("Host", "a")
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		s, _, _ := serve(t, m, in, nil)
		seen[values(s, HeaderName)[0]] = true
	}
	if len(seen) != 100 {
		t.Errorf("%d distinct ids for 100 requests", len(seen))
	}
}

// TestWrapperKeepsCapabilities: behind the middleware the engine's
// Hijack and trailers stay reachable, and are not claimed when absent.
func TestWrapperKeepsCapabilities(t *testing.T) {
	e := &rec{}
	New().Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if _, ok := w.(exchange.Unwrapper); !ok {
			t.Error("the writer has no Unwrap")
		}
		if !exchange.CanHijack(w) || !exchange.CanWriteTrailers(w) {
			t.Error("capabilities hidden")
		}
		if _, _, err := exchange.Hijack(w); err != nil {
			t.Error(err)
		}
		if err := exchange.WriteTrailers(w, nil); err != nil {
			t.Error(err)
		}
	})).Serve(e, &exchange.Request{})
	if e.hijacked != 1 || e.trailers != 1 {
		t.Errorf("hijacked %d, trailers %d", e.hijacked, e.trailers)
	}
	New().Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if exchange.CanHijack(w) || exchange.CanWriteTrailers(w) {
			t.Error("capabilities claimed that the engine lacks")
		}
	})).Serve(plain{}, &exchange.Request{})
}

type plain struct{}

func (plain) WriteHeader(int, []byte, []exchange.Header, int64) error { return nil }
func (plain) Write(p []byte) (int, error)                             { return len(p), nil }
func (plain) SendFile(*os.File, int64, int64) (int64, error)          { return 0, nil }
func (plain) Flush() error                                            { return nil }
func (plain) Abort()                                                  {}

func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	m := New()
	h := m.Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, nil, nil, 0)
	}))
	var buf [GeneratedLen]byte
	for name, in := range map[string][]exchange.Header{
		"generated":    hdrs("Host", "a", "Accept", "*/*", "User-Agent", "x"),
		"pass through": hdrs("Host", "a", "X-Request-ID", "abc"),
		"replaced":     hdrs("Host", "a", "X-Request-ID", "a b"),
	} {
		r := &exchange.Request{Headers: in}
		f := func() { h.Serve(plain{}, r) }
		f()
		if n := testing.AllocsPerRun(500, f); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", name, n)
		}
	}
	if n := testing.AllocsPerRun(500, func() { AppendNew(buf[:0]) }); n != 0 {
		t.Errorf("AppendNew: %v allocations, want 0", n)
	}
}

func BenchmarkAppendNew(b *testing.B) {
	var buf [GeneratedLen]byte
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf [GeneratedLen]byte
		for pb.Next() {
			AppendNew(buf[:0])
		}
	})
	_ = buf
}

func BenchmarkMiddleware(b *testing.B) {
	h := New().Wrap(appFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, nil, nil, 0)
	}))
	r := &exchange.Request{Headers: hdrs("Host", "a", "Accept", "*/*", "User-Agent", "x")}
	b.ReportAllocs()
	for b.Loop() {
		h.Serve(plain{}, r)
	}
}
