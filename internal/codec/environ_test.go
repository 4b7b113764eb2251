package codec

import (
	"bytes"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/version"
	"github.com/krait-server/krait/internal/wire"
)

func hdrs(kv ...string) []exchange.Header {
	var hs []exchange.Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, exchange.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

func decodeEnviron(t *testing.T, b []byte) map[string]string {
	t.Helper()
	v, err := wire.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range v.(wire.Dict) {
		k, _ := wire.Latin1(nil, []byte(kv[0].(string)))
		val, _ := wire.Latin1(nil, []byte(kv[1].(string)))
		if _, dup := m[string(k)]; dup {
			t.Fatalf("duplicate key %q", k)
		}
		m[string(k)] = string(val)
	}
	return m
}

func TestEnviron(t *testing.T) {
	base := func() *exchange.Request {
		return &exchange.Request{
			Method: []byte("GET"), Target: []byte("/"), Path: []byte("/"),
			ProtoMajor: 1, ProtoMinor: 1, Scheme: "http",
			RemoteAddr: "10.0.0.1", RemotePort: 1234, LocalAddr: "10.0.0.2", LocalPort: 8080,
		}
	}
	tests := []struct {
		name   string
		modify func(r *exchange.Request)
		want   map[string]string // entries that must be present
		absent []string
	}{
		{"defaults", func(r *exchange.Request) {}, map[string]string{
			"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/", "QUERY_STRING": "",
			"SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "10.0.0.2", "SERVER_PORT": "8080",
			"REMOTE_ADDR": "10.0.0.1", "REMOTE_PORT": "1234", "RAW_URI": "/", "REQUEST_URI": "/",
			"wsgi.url_scheme": "http", "SERVER_SOFTWARE": "krait/" + version.String(),
		}, []string{"CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_HOST"}},
		{"path decoding", func(r *exchange.Request) {
			r.Target = []byte("/a%20b/%E9t%C3%A9/%2F/%zz/%4?q=%20")
			r.Path = []byte("/a%20b/%E9t%C3%A9/%2F/%zz/%4")
			r.Query = []byte("q=%20")
		}, map[string]string{
			"PATH_INFO": "/a b/\xe9t\xc3\xa9///%zz/%4", "QUERY_STRING": "q=%20",
			"RAW_URI": "/a%20b/%E9t%C3%A9/%2F/%zz/%4?q=%20",
		}, nil},
		{"absolute form", func(r *exchange.Request) {
			r.Target = []byte("http://h.example/x?y")
			r.Path = []byte("http://h.example/x")
		}, map[string]string{"PATH_INFO": "/x"}, nil},
		{"host and port", func(r *exchange.Request) {
			r.Host = []byte("example.com:8443")
			r.Scheme = "https"
			r.Headers = hdrs("Host", "example.com:8443")
		}, map[string]string{"SERVER_NAME": "example.com", "SERVER_PORT": "8443", "HTTP_HOST": "example.com:8443", "wsgi.url_scheme": "https"}, nil},
		{"host default port", func(r *exchange.Request) {
			r.Host = []byte("example.com")
			r.Scheme = "https"
		}, map[string]string{"SERVER_NAME": "example.com", "SERVER_PORT": "443"}, nil},
		{"ipv6 host", func(r *exchange.Request) {
			r.Host = []byte("[::1]:9000")
		}, map[string]string{"SERVER_NAME": "[::1]", "SERVER_PORT": "9000"}, nil},
		{"ipv6 local", func(r *exchange.Request) {
			r.LocalAddr = "::1"
			r.RemoteAddr = "::2"
		}, map[string]string{"SERVER_NAME": "[::1]", "SERVER_PORT": "8080", "REMOTE_ADDR": "::2"}, nil},
		{"unix socket", func(r *exchange.Request) {
			r.LocalAddr, r.LocalPort, r.RemoteAddr, r.RemotePort = "", 0, "", 0
		}, map[string]string{"SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "", "REMOTE_PORT": ""}, nil},
		{"http/1.0", func(r *exchange.Request) { r.ProtoMinor = 0 }, map[string]string{"SERVER_PROTOCOL": "HTTP/1.0"}, nil},
		{"headers", func(r *exchange.Request) {
			r.Method = []byte("POST")
			r.ContentLength = 12
			r.Headers = hdrs(
				"Content-Type", "application/json",
				"Content-Length", "12",
				"X-Forwarded-For", "1.1.1.1",
				"Accept", "a",
				"x-forwarded-for", "2.2.2.2",
				"X_Spoof", "nope",
				"Cookie", "a=1",
				"cookie", "b=2",
				"X-Latin", "caf\xe9",
			)
		}, map[string]string{
			"CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12",
			"HTTP_X_FORWARDED_FOR": "1.1.1.1, 2.2.2.2", "HTTP_ACCEPT": "a",
			"HTTP_COOKIE": "a=1; b=2", "HTTP_X_LATIN": "caf\xe9",
		}, []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH", "HTTP_X_SPOOF"}},
		{"chunked body", func(r *exchange.Request) {
			r.ContentLength = -1
			r.Headers = hdrs("Transfer-Encoding", "chunked")
		}, map[string]string{"HTTP_TRANSFER_ENCODING": "chunked"}, []string{"CONTENT_LENGTH"}},
		{"zero content length", func(r *exchange.Request) {
			r.Headers = hdrs("Content-Length", "0")
		}, map[string]string{"CONTENT_LENGTH": "0"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.modify(r)
			b, _ := AppendEnviron(nil, r, nil)
			got := decodeEnviron(t, b)
			for k, v := range tt.want {
				if gv, ok := got[k]; !ok || gv != v {
					t.Errorf("%s = %q (present %v), want %q", k, gv, ok, v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present: %q", k, got[k])
				}
			}
			if t.Failed() {
				t.Logf("environ: %v", got)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	var ps Parser
	// ("404 Not Found", [("X-A", "1"), ("Content-Length", "3")])
	p := []byte{'(', 2, 0, 0, 0}
	p = append(p, 'u', 13, 0, 0, 0)
	p = append(p, "404 Not Found"...)
	p = append(p, '[', 2, 0, 0, 0)
	for _, kv := range [][2]string{{"X-A", "1"}, {"Content-Length", "3"}} {
		p = append(p, '(', 2, 0, 0, 0)
		p = wire.AppendStr(wire.AppendStr(p, kv[0]), kv[1])
	}
	resp, err := ps.Response(p)
	if err != nil || resp.Status != 404 || string(resp.Reason) != "Not Found" || resp.ContentLength != 3 || len(resp.Headers) != 2 || !bytes.Equal(resp.Headers[0].Value, []byte("1")) {
		t.Fatalf("got %+v %v", resp, err)
	}
	for _, bad := range []string{"", "20", "2000", "abc", "099 x", "200\tOK", "200 O\rK"} {
		if _, _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
	for _, good := range []string{"200", "200 OK", "599 ", "999 Custom Thing"} {
		if _, _, err := ParseStatus([]byte(good)); err != nil {
			t.Errorf("ParseStatus(%q): %v", good, err)
		}
	}
}

func TestEnvironAllocs(t *testing.T) {
	r := &exchange.Request{
		Method: []byte("GET"), Target: []byte("/x%20y?a=b"), Path: []byte("/x%20y"), Query: []byte("a=b"),
		ProtoMajor: 1, ProtoMinor: 1, Scheme: "http", Host: []byte("h:1"),
		Headers:    hdrs("Host", "h:1", "Accept", "*/*", "Accept", "x", "User-Agent", "bench"),
		RemoteAddr: "127.0.0.1", RemotePort: 1, LocalAddr: "127.0.0.1", LocalPort: 2,
	}
	buf := make([]byte, 0, 4096)
	scratch := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		buf, scratch = AppendEnviron(buf[:0], r, scratch)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per environ", allocs)
	}
}

func FuzzParseResponse(f *testing.F) {
	p := []byte{'(', 2, 0, 0, 0, 'u', 6, 0, 0, 0}
	p = append(p, "200 OK"...)
	p = append(p, '[', 1, 0, 0, 0, '(', 2, 0, 0, 0)
	p = wire.AppendStr(wire.AppendStr(p, "Content-Length"), "12")
	f.Add(p)
	f.Add([]byte{')', 2, 'i', 200, 0, 0, 0, '[', 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, p []byte) {
		var ps Parser
		resp, err := ps.Response(p)
		if err != nil {
			return
		}
		if resp.Status < 100 || resp.Status > 999 {
			t.Fatalf("status %d accepted", resp.Status)
		}
		for _, h := range resp.Headers {
			// Only an ASGI 3-tuple keeps its Trailer field.
			dec := wire.NewDecoder(p)
			_, items, _ := dec.Seq()
			trailerOK := httpx.EqualFold(h.Name, "Trailer") && items == 3
			if !httpx.ValidToken(h.Name) || !httpx.SafeValue(h.Value) || httpx.HopByHop(h.Name) && !trailerOK {
				t.Fatalf("header %q: %q accepted", h.Name, h.Value)
			}
		}
	})
}

// BenchmarkEnvironAndResponse measures the Go-side codec work of one
// request: building the environ and parsing a typical RESPONSE.
func BenchmarkEnvironAndResponse(b *testing.B) {
	r := &exchange.Request{
		Method: []byte("GET"), Target: []byte("/hello?x=1"), Path: []byte("/hello"), Query: []byte("x=1"),
		ProtoMajor: 1, ProtoMinor: 1, Scheme: "http", Host: []byte("localhost:8000"),
		Headers:    hdrs("Host", "localhost:8000", "User-Agent", "wrk", "Accept", "*/*", "Accept-Encoding", "gzip"),
		RemoteAddr: "127.0.0.1", RemotePort: 40000, LocalAddr: "127.0.0.1", LocalPort: 8000,
	}
	p := []byte{'(', 2, 0, 0, 0, 'u', 6, 0, 0, 0}
	p = append(p, "200 OK"...)
	p = append(p, '[', 2, 0, 0, 0)
	for _, kv := range [][2]string{{"Content-Type", "text/plain"}, {"Content-Length", "13"}} {
		p = append(p, '(', 2, 0, 0, 0)
		p = wire.AppendStr(wire.AppendStr(p, kv[0]), kv[1])
	}
	var ps Parser
	var scratch []byte
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, scratch = AppendEnviron(buf[:0], r, scratch)
		if _, err := ps.Response(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnvironHello is the environ of a hello-world benchmark request
// as the app sees it behind krait's default middleware (wrk's Host, and
// the X-Request-ID the request id middleware adds).
func BenchmarkEnvironHello(b *testing.B) {
	r := &exchange.Request{
		Method: []byte("GET"), Target: []byte("/"), Path: []byte("/"),
		ProtoMajor: 1, ProtoMinor: 1, Scheme: "http", Host: []byte("127.0.0.1:8000"),
		Headers:    hdrs("Host", "127.0.0.1:8000", "X-Request-ID", "0123456789abcdef0123456789abcdef"),
		RemoteAddr: "127.0.0.1", RemotePort: 40000, LocalAddr: "127.0.0.1", LocalPort: 8000,
	}
	var scratch []byte
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf, scratch = AppendEnviron(buf[:0], r, scratch)
	}
}
