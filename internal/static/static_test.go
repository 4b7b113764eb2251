package static

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

// recorder is a fake exchange.ResponseWriter that keeps what the handler
// wrote. Like the engine, it counts but does not keep body bytes of HEAD
// requests and 304 responses.
type recorder struct {
	head      bool
	status    int
	header    http.Header
	declared  int64
	body      bytes.Buffer
	written   int64
	writes    int
	sendfiles int
	aborted   bool
	headers   int
}

func (rec *recorder) WriteHeader(status int, _ []byte, hs []exchange.Header, n int64) error {
	rec.headers++
	if rec.headers > 1 {
		return fmt.Errorf("WriteHeader called twice")
	}
	rec.status, rec.declared = status, n
	rec.header = http.Header{}
	for _, h := range hs {
		rec.header.Add(string(h.Name), string(h.Value))
	}
	return nil
}

func (rec *recorder) keep() bool { return !rec.head && rec.status != 304 && rec.status != 204 }

func (rec *recorder) Write(p []byte) (int, error) {
	rec.writes++
	rec.written += int64(len(p))
	if rec.keep() {
		rec.body.Write(p)
	}
	return len(p), nil
}

func (rec *recorder) SendFile(f *os.File, off, n int64) (int64, error) {
	rec.sendfiles++
	rec.written += n
	if !rec.keep() {
		return n, nil
	}
	m, err := io.Copy(&rec.body, io.NewSectionReader(f, off, n))
	return m, err
}

func (rec *recorder) Flush() error { return nil }
func (rec *recorder) Abort()       { rec.aborted = true }

// req builds a request for path with header lines "Name: value".
func req(method, path string, headers ...string) *exchange.Request {
	r := &exchange.Request{Method: []byte(method), Target: []byte(path), Path: []byte(path), ProtoMajor: 1, ProtoMinor: 1}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		r.Path, r.Query = []byte(path[:i]), []byte(path[i+1:])
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		r.Headers = append(r.Headers, exchange.Header{Name: []byte(name), Value: []byte(strings.TrimSpace(value))})
	}
	return r
}

func serve(t testing.TB, h *Handler, r *exchange.Request) *recorder {
	t.Helper()
	rec := &recorder{head: string(r.Method) == "HEAD"}
	h.Serve(rec, r)
	if rec.headers != 1 {
		t.Fatalf("%s %s: WriteHeader called %d times", r.Method, r.Path, rec.headers)
	}
	if !rec.head && rec.declared >= 0 && rec.written != rec.declared && rec.status != 304 && rec.status != 204 {
		t.Fatalf("%s %s: declared %d body bytes, wrote %d", r.Method, r.Path, rec.declared, rec.written)
	}
	return rec
}

// fixedTime is the mtime of the fixture files.
var fixedTime = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fixedTime, fixedTime); err != nil {
		t.Fatal(err)
	}
}

func gz(t testing.TB, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	zw.Close()
	return b.Bytes()
}

// fixture lays out a served directory and, beside it, a secret file that
// symlinks try to reach.
type fixture struct {
	dir, outside string
	css, big     []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	base := t.TempDir()
	fx := &fixture{dir: filepath.Join(base, "public"), outside: filepath.Join(base, "secret")}
	fx.css = bytes.Repeat([]byte("body { color: red; }\n"), 700) // 14.7 KB
	fx.big = make([]byte, 600<<10)                               // beyond DefaultCacheFileMax
	for i := range fx.big {
		fx.big[i] = byte(i * 7 % 251)
	}
	writeFile(t, filepath.Join(fx.dir, "css", "app.css"), fx.css)
	writeFile(t, filepath.Join(fx.dir, "css", "app.css.gz"), gz(t, fx.css))
	writeFile(t, filepath.Join(fx.dir, "css", "app.css.br"), []byte("fake brotli"))
	writeFile(t, filepath.Join(fx.dir, "css", "app.3f2a1b9c8d7e.css"), fx.css)
	writeFile(t, filepath.Join(fx.dir, "hello.txt"), []byte("hello\n"))
	writeFile(t, filepath.Join(fx.dir, "empty.txt"), nil)
	writeFile(t, filepath.Join(fx.dir, "big.bin"), fx.big)
	writeFile(t, filepath.Join(fx.dir, "a b", "é.txt"), []byte("accent\n"))
	writeFile(t, filepath.Join(fx.dir, ".env"), []byte("SECRET=1\n"))
	writeFile(t, filepath.Join(fx.dir, ".git", "config"), []byte("[core]\n"))
	writeFile(t, filepath.Join(fx.dir, ".well-known", "security.txt"), []byte("Contact: x\n"))
	writeFile(t, filepath.Join(fx.dir, "sub", ".well-known", "x.txt"), []byte("no\n"))
	writeFile(t, fx.outside, []byte("top secret\n"))
	writeFile(t, filepath.Join(filepath.Dir(fx.dir), "secretdir", "s.txt"), []byte("top secret\n"))
	must(t, os.Symlink("../hello.txt", filepath.Join(fx.dir, "css", "link.txt"))) // inside: served
	must(t, os.Symlink(fx.outside, filepath.Join(fx.dir, "escape-abs.txt")))      // outside, absolute
	must(t, os.Symlink("../secret", filepath.Join(fx.dir, "escape-rel.txt")))     // outside, relative
	must(t, os.Symlink("../secretdir", filepath.Join(fx.dir, "escdir")))          // a directory outside
	must(t, syscall.Mkfifo(filepath.Join(fx.dir, "fifo"), 0o644))                 // would block an open
	return fx
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func newHandler(t testing.TB, cfg Config) *Handler {
	t.Helper()
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string
		st   pathStatus
	}{
		{"/a.css", "a.css", pathOK},
		{"/css/app.css", "css/app.css", pathOK},
		{"/a%20b/%C3%A9.txt", "a b/é.txt", pathOK},
		{"/a+b", "a+b", pathOK}, // '+' is not a space in paths
		{"/.well-known/acme-challenge/tok", ".well-known/acme-challenge/tok", pathOK},
		{"/%2Ewell-known/x", ".well-known/x", pathOK},
		{"", "", pathNotFound},
		{"/", "", pathNotFound},
		{"/css/", "", pathNotFound},
		{"//etc/passwd", "", pathNotFound},
		{"/css//app.css", "", pathNotFound},
		{"/..", "", pathNotFound},
		{"/../secret", "", pathNotFound},
		{"/css/../../secret", "", pathNotFound},
		{"/%2e%2e/secret", "", pathNotFound},
		{"/%2E%2E/secret", "", pathNotFound},
		{"/.%2e/secret", "", pathNotFound},
		{"/./a.css", "", pathNotFound},
		{"/..%2Fsecret", "", pathNotFound},
		{"/css%2Fapp.css", "", pathNotFound},
		{"/css%2fapp.css", "", pathNotFound},
		{"/..\\secret", "", pathNotFound},
		{"/..%5Csecret", "", pathNotFound},
		{"/a.css%00.txt", "", pathNotFound},
		{"/a%0a", "", pathNotFound},
		{"/a%7F", "", pathNotFound},
		{"/.env", "", pathNotFound},
		{"/%2Eenv", "", pathNotFound},
		{"/.git/config", "", pathNotFound},
		{"/sub/.well-known/x.txt", "", pathNotFound},
		{"/.well-known/.hidden", "", pathNotFound},
		{"/a%zz", "", pathBad},
		{"/a%4", "", pathBad},
		{"/a%", "", pathBad},
	} {
		got, st := cleanPath(nil, []byte(tc.raw))
		if st != tc.st || st == pathOK && string(got) != tc.want {
			t.Errorf("cleanPath(%q) = %q, %d; want %q, %d", tc.raw, got, st, tc.want, tc.st)
		}
	}
}

func TestServeStatusAndBody(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/static", Dir: fx.dir})
	for _, tc := range []struct {
		method, path string
		status       int
		body         string // checked when not empty
		allow        string
	}{
		{"GET", "/static/hello.txt", 200, "hello\n", ""},
		{"GET", "/static/hello.txt?v=3", 200, "hello\n", ""},
		{"GET", "/static/a%20b/%C3%A9.txt", 200, "accent\n", ""},
		{"GET", "/static/css/link.txt", 200, "hello\n", ""}, // symlink inside the root
		{"GET", "/static/.well-known/security.txt", 200, "Contact: x\n", ""},
		{"GET", "/static/empty.txt", 200, "", ""},
		{"GET", "/static/nope.txt", 404, "404 Not Found\n", ""},
		{"GET", "/static", 404, "", ""},
		{"GET", "/static/", 404, "", ""},
		{"GET", "/static/css", 404, "", ""}, // a directory: no listing, no index
		{"GET", "/static/css/", 404, "", ""},
		{"GET", "/static/escape-abs.txt", 404, "", ""},
		{"GET", "/static/escape-rel.txt", 404, "", ""},
		{"GET", "/static/escdir/s.txt", 404, "", ""},
		{"GET", "/static/fifo", 404, "", ""},
		{"GET", "/static/.env", 404, "", ""},
		{"GET", "/static/.git/config", 404, "", ""},
		{"GET", "/static/sub/.well-known/x.txt", 404, "", ""},
		{"GET", "/static/../secret", 404, "", ""},
		{"GET", "/static/%2e%2e/secret", 404, "", ""},
		{"GET", "/static/css/%2e%2e/%2e%2e/secret", 404, "", ""},
		{"GET", "/static/css%2Fapp.css", 404, "", ""},
		{"GET", "/static/..%5Csecret", 404, "", ""},
		{"GET", "/static/hello.txt%00", 404, "", ""},
		{"GET", "/static/hello%zz", 400, "400 Bad Request\n", ""},
		{"GET", "/other/hello.txt", 404, "", ""},
		{"HEAD", "/static/hello.txt", 200, "", ""},
		{"POST", "/static/hello.txt", 405, "405 Method Not Allowed\n", "GET, HEAD, OPTIONS"},
		{"PUT", "/static/hello.txt", 405, "", "GET, HEAD, OPTIONS"},
		{"DELETE", "/static/nope", 405, "", "GET, HEAD, OPTIONS"},
		{"OPTIONS", "/static/hello.txt", 204, "", "GET, HEAD, OPTIONS"},
	} {
		rec := serve(t, h, req(tc.method, tc.path))
		if rec.status != tc.status {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, rec.status, tc.status)
			continue
		}
		if tc.body != "" && rec.body.String() != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, rec.body.String(), tc.body)
		}
		if got := rec.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
}

func TestPrefixWithTrailingSlashAndRoot(t *testing.T) {
	fx := newFixture(t)
	for _, prefix := range []string{"/static/", "/"} {
		h := newHandler(t, Config{Prefix: prefix, Dir: fx.dir})
		p := strings.TrimSuffix(prefix, "/") + "/hello.txt"
		if rec := serve(t, h, req("GET", p)); rec.status != 200 || rec.body.String() != "hello\n" {
			t.Errorf("prefix %q: GET %s: %d %q", prefix, p, rec.status, rec.body.String())
		}
		p = strings.TrimSuffix(prefix, "/") + "/.well-known/security.txt"
		if rec := serve(t, h, req("GET", p)); rec.status != 200 {
			t.Errorf("prefix %q: GET %s: %d", prefix, p, rec.status)
		}
	}
}

func TestHeaders(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir, MaxAge: 90 * time.Second})
	lastMod := fixedTime.Format(http.TimeFormat)
	etag := func(size int, suffix string) string {
		return `"` + strconv.FormatInt(fixedTime.UnixNano(), 16) + "-" + strconv.FormatInt(int64(size), 16) + suffix + `"`
	}
	for _, tc := range []struct {
		path, method string
		want         map[string]string // "" means absent
	}{
		{"/s/hello.txt", "GET", map[string]string{
			"Content-Type": "text/plain; charset=utf-8", "Etag": etag(6, ""), "Last-Modified": lastMod,
			"Cache-Control": "public, max-age=90", "Accept-Ranges": "bytes", "Vary": "",
			"Content-Encoding": "", "X-Content-Type-Options": "nosniff", "Content-Length": "",
		}},
		{"/s/hello.txt", "HEAD", map[string]string{"Content-Type": "text/plain; charset=utf-8", "Etag": etag(6, "")}},
		{"/s/css/app.css", "GET", map[string]string{
			"Content-Type": "text/css; charset=utf-8", "Vary": "Accept-Encoding", "Content-Encoding": "",
			"Cache-Control": "public, max-age=90", "Etag": etag(len(fx.css), ""),
		}},
		{"/s/css/app.3f2a1b9c8d7e.css", "GET", map[string]string{
			"Cache-Control": "public, max-age=31536000, immutable", "Vary": "",
		}},
		{"/s/big.bin", "GET", map[string]string{"Content-Type": "application/octet-stream", "Etag": etag(len(fx.big), "")}},
	} {
		rec := serve(t, h, req(tc.method, tc.path))
		if rec.status != 200 {
			t.Fatalf("%s %s: %d", tc.method, tc.path, rec.status)
		}
		for k, v := range tc.want {
			if got := rec.header.Get(k); got != v {
				t.Errorf("%s %s: %s = %q, want %q", tc.method, tc.path, k, got, v)
			}
		}
	}
	// The length goes to the engine, which writes Content-Length.
	if rec := serve(t, h, req("HEAD", "/s/big.bin")); rec.declared != int64(len(fx.big)) || rec.sendfiles != 0 || rec.writes != 0 {
		t.Errorf("HEAD big.bin: declared %d, %d sendfiles, %d writes; want %d, 0, 0", rec.declared, rec.sendfiles, rec.writes, len(fx.big))
	}
	if rec := serve(t, h, req("HEAD", "/s/hello.txt")); rec.declared != 6 {
		t.Errorf("HEAD hello.txt declared %d, want 6", rec.declared)
	}
}

func TestMaxAge(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		maxAge time.Duration
		want   string
	}{
		{time.Hour, "public, max-age=3600"},
		{0, "no-cache"},
		{time.Second / 2, "no-cache"},
		{time.Hour * 24, "public, max-age=86400"},
	} {
		h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir, MaxAge: tc.maxAge})
		if got := serve(t, h, req("GET", "/s/hello.txt")).header.Get("Cache-Control"); got != tc.want {
			t.Errorf("MaxAge %v: Cache-Control %q, want %q", tc.maxAge, got, tc.want)
		}
		if got := serve(t, h, req("GET", "/s/css/app.3f2a1b9c8d7e.css")).header.Get("Cache-Control"); got != "public, max-age=31536000, immutable" {
			t.Errorf("MaxAge %v: fingerprinted Cache-Control %q", tc.maxAge, got)
		}
	}
}

func TestContentType(t *testing.T) {
	for name, want := range map[string]string{
		"a.js":          "text/javascript; charset=utf-8",
		"a.MJS":         "text/javascript; charset=utf-8",
		"a.css":         "text/css; charset=utf-8",
		"a.html":        "text/html; charset=utf-8",
		"a.svg":         "image/svg+xml",
		"a.woff2":       "font/woff2",
		"a.woff":        "font/woff",
		"a.wasm":        "application/wasm",
		"a.js.map":      "application/json",
		"a.json":        "application/json",
		"a.webp":        "image/webp",
		"a.avif":        "image/avif",
		"a.png":         "image/png",
		"a.ico":         "image/x-icon",
		"a.webmanifest": "application/manifest+json",
		"a.txt":         "text/plain; charset=utf-8",
		"README":        "application/octet-stream",
		"a.unknownext":  "application/octet-stream",
		"dir.d/file":    "application/octet-stream",
	} {
		if got := contentType(name); got != want {
			t.Errorf("contentType(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestFingerprinted(t *testing.T) {
	for name, want := range map[string]bool{
		"css/app.3f2a1b9c8d7e.css":          true, // Django ManifestStaticFilesStorage
		"admin/js/core.1a2b3c4d5e6f.js":     true,
		"main.4f3a9c2b1d0e7a6b5c4d.js":      true, // webpack [contenthash]
		"main.4f3a9c2b.chunk.js":            true, // CRA
		"assets/index-BkD3f9aZ.js":          true, // Vite 5
		"assets/index-Bk-3f9aZ.js":          true, // Rollup's alphabet has '-'
		"assets/vendor-DJd3Uk_q.css":        true,
		"assets/index-5f3a2b1c.js":          true, // Vite 4: hex
		"chunks/main-4f3a9c2b1d0e7a6b.js":   true, // Next.js
		"app.css":                           false,
		"jquery-3.7.1.min.js":               false,
		"report.20240101.pdf":               false, // a date, not a hash
		"chapter-section1.js":               false, // a word with a digit
		"my-Document.js":                    false,
		"deadbeef.js":                       false, // the first token is the name
		"logo.facade.svg":                   false, // hex letters without a digit
		"favicon.ico":                       false,
		"fonts/Inter-Regular.woff2":         false,
		"fonts/Inter-SemiBold-Italic.woff2": false,
		"robots.txt":                        false,
		"css/app.3f2a1b9c8d7e.css.gz":       true,
	} {
		if got := fingerprinted(name); got != want {
			t.Errorf("fingerprinted(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestAcceptEncoding(t *testing.T) {
	const all = 1<<codingBr | 1<<codingZstd | 1<<codingGzip
	for _, tc := range []struct {
		ae   []string
		have uint8
		want int
	}{
		{nil, all, codingIdentity}, // no field: plain bytes
		{[]string{""}, all, codingIdentity},
		{[]string{"gzip, deflate, br, zstd"}, all, codingBr},
		{[]string{"gzip, deflate, br, zstd"}, 1<<codingZstd | 1<<codingGzip, codingZstd},
		{[]string{"gzip"}, all, codingGzip},
		{[]string{"x-gzip"}, all, codingGzip},
		{[]string{"GZIP"}, all, codingGzip},
		{[]string{"gzip", "br"}, all, codingBr}, // two fields are one list
		{[]string{"br;q=0.5, gzip;q=0.8"}, all, codingGzip},
		{[]string{"br;q=0, gzip"}, all, codingGzip},
		{[]string{"br;q=0, gzip;q=0"}, all, codingIdentity},
		{[]string{"*"}, all, codingBr},
		{[]string{"*;q=0.5, gzip"}, all, codingGzip},
		{[]string{"*, br;q=0"}, 1 << codingBr, codingIdentity},
		{[]string{"gzip;q=0.5, identity"}, all, codingIdentity},
		{[]string{"gzip;q=1.0, identity;q=0.5"}, all, codingGzip},
		{[]string{"br"}, 1 << codingGzip, codingIdentity},
		{[]string{"br;q=bad, gzip"}, all, codingGzip},
		{[]string{"br;q=1.5, gzip"}, all, codingGzip},
		// A malformed weight drops the element (br then weighs as "*"),
		// unlike compress, where it counts as q=0.
		{[]string{"*;q=0.9, br;q=bad, gzip;q=0.5"}, all, codingBr},
		// OWS after "q=" is tolerated.
		{[]string{"gzip;q=0.8, br;q= 0.9"}, all, codingBr},
		{[]string{"br ; q=0.900 , gzip;q=0.899"}, all, codingBr},
		{[]string{"br", "identity;q=0"}, 0, codingIdentity}, // nothing else to send
	} {
		var hs []exchange.Header
		for _, v := range tc.ae {
			hs = append(hs, exchange.Header{Name: []byte("Accept-Encoding"), Value: []byte(v)})
		}
		ae := parseAcceptEncoding(hs)
		if got := ae.choose(tc.have); got != tc.want {
			t.Errorf("Accept-Encoding %q with %03b: chose %q, want %q", tc.ae, tc.have, codingName[got], codingName[tc.want])
		}
	}
}

func TestSidecars(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir})
	for _, tc := range []struct {
		ae       string
		encoding string
		body     []byte
	}{
		{"", "", fx.css},
		{"gzip, deflate", "gzip", gz(t, fx.css)},
		{"gzip, deflate, br, zstd", "br", []byte("fake brotli")},
		{"zstd", "", fx.css}, // no .zst sidecar
		{"identity", "", fx.css},
	} {
		var hs []string
		if tc.ae != "" {
			hs = append(hs, "Accept-Encoding: "+tc.ae)
		}
		rec := serve(t, h, req("GET", "/s/css/app.css", hs...))
		if rec.status != 200 || rec.header.Get("Content-Encoding") != tc.encoding || !bytes.Equal(rec.body.Bytes(), tc.body) {
			t.Errorf("Accept-Encoding %q: %d, Content-Encoding %q, %d body bytes; want 200, %q, %d", tc.ae, rec.status, rec.header.Get("Content-Encoding"), rec.body.Len(), tc.encoding, len(tc.body))
		}
		if rec.header.Get("Vary") != "Accept-Encoding" || rec.header.Get("Content-Type") != "text/css; charset=utf-8" {
			t.Errorf("Accept-Encoding %q: Vary %q, Content-Type %q", tc.ae, rec.header.Get("Vary"), rec.header.Get("Content-Type"))
		}
	}
	// Each representation has its own validator.
	plainTag := serve(t, h, req("GET", "/s/css/app.css")).header.Get("ETag")
	gzTag := serve(t, h, req("GET", "/s/css/app.css", "Accept-Encoding: gzip")).header.Get("ETag")
	if plainTag == gzTag || !strings.HasSuffix(gzTag, `-gz"`) {
		t.Errorf("ETags of the plain and gzip representations: %s and %s", plainTag, gzTag)
	}
	// The gzip validator does not match the plain representation.
	if rec := serve(t, h, req("GET", "/s/css/app.css", "If-None-Match: "+gzTag)); rec.status != 200 {
		t.Errorf("plain with the gzip ETag: %d, want 200", rec.status)
	}
	if rec := serve(t, h, req("GET", "/s/css/app.css", "Accept-Encoding: gzip", "If-None-Match: "+gzTag)); rec.status != 304 || rec.header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("gzip with its ETag: %d, Vary %q; want 304 with Vary", rec.status, rec.header.Get("Vary"))
	}
	// A sidecar requested by its own name is a file like any other.
	if rec := serve(t, h, req("GET", "/s/css/app.css.gz")); rec.status != 200 || rec.header.Get("Content-Type") != "application/gzip" || rec.header.Get("Content-Encoding") != "" {
		t.Errorf("GET app.css.gz: %d %q %q", rec.status, rec.header.Get("Content-Type"), rec.header.Get("Content-Encoding"))
	}
}

func TestConditional(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir, MaxAge: time.Hour})
	first := serve(t, h, req("GET", "/s/hello.txt"))
	tag, lm := first.header.Get("ETag"), first.header.Get("Last-Modified")
	before := fixedTime.Add(-time.Hour).Format(http.TimeFormat)
	after := fixedTime.Add(time.Hour).Format(http.TimeFormat)
	sameSecond := fixedTime.Truncate(time.Second).Format(time.RFC850) // an obsolete date format, same instant
	for _, tc := range []struct {
		method  string
		headers []string
		status  int
	}{
		{"GET", []string{"If-None-Match: " + tag}, 304},
		{"HEAD", []string{"If-None-Match: " + tag}, 304},
		{"GET", []string{"If-None-Match: W/" + tag}, 304}, // weak comparison
		{"GET", []string{`If-None-Match: "x", ` + tag}, 304},
		{"GET", []string{`If-None-Match: "x"`, "If-None-Match: " + tag}, 304},
		{"GET", []string{`If-None-Match: "a,b", ` + tag}, 304}, // a comma inside a tag
		{"GET", []string{"If-None-Match: *"}, 304},
		{"GET", []string{`If-None-Match: "other"`}, 200},
		{"GET", []string{"If-Modified-Since: " + lm}, 304},
		{"GET", []string{"If-Modified-Since: " + sameSecond}, 304},
		{"GET", []string{"If-Modified-Since: " + after}, 304},
		{"GET", []string{"If-Modified-Since: " + before}, 200},
		{"GET", []string{"If-Modified-Since: yesterday"}, 200},
		// If-None-Match takes precedence over If-Modified-Since.
		{"GET", []string{`If-None-Match: "other"`, "If-Modified-Since: " + lm}, 200},
		{"GET", []string{"If-None-Match: " + tag, "If-Modified-Since: " + before}, 304},
		{"GET", []string{"If-Match: " + tag}, 200},
		{"GET", []string{"If-Match: *"}, 200},
		{"GET", []string{`If-Match: "other"`}, 412},
		{"GET", []string{"If-Match: W/" + tag}, 412}, // strong comparison
		{"GET", []string{"If-Unmodified-Since: " + before}, 412},
		{"GET", []string{"If-Unmodified-Since: " + lm}, 200},
		{"GET", []string{"If-Unmodified-Since: " + after}, 200},
		// If-Match takes precedence over If-Unmodified-Since.
		{"GET", []string{"If-Match: " + tag, "If-Unmodified-Since: " + before}, 200},
		{"GET", []string{`If-Match: "other"`, "If-None-Match: " + tag}, 412},
	} {
		rec := serve(t, h, req(tc.method, "/s/hello.txt", tc.headers...))
		if rec.status != tc.status {
			t.Errorf("%s %q: %d, want %d", tc.method, tc.headers, rec.status, tc.status)
			continue
		}
		if tc.status == 304 {
			want := map[string]string{"ETag": tag, "Last-Modified": lm, "Cache-Control": "public, max-age=3600", "Content-Type": "", "Accept-Ranges": ""}
			for k, v := range want {
				if got := rec.header.Get(k); got != v {
					t.Errorf("%q: 304 has %s %q, want %q", tc.headers, k, got, v)
				}
			}
			if rec.written != 0 {
				t.Errorf("%q: 304 with %d body bytes", tc.headers, rec.written)
			}
		}
	}
}

func TestRanges(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir})
	for _, path := range []string{"/s/css/app.css", "/s/big.bin"} { // memory and sendfile
		full := fx.css
		if strings.HasSuffix(path, "big.bin") {
			full = fx.big
		}
		size := int64(len(full))
		tag := serve(t, h, req("GET", path)).header.Get("ETag")
		lm := fixedTime.Format(http.TimeFormat)
		for _, tc := range []struct {
			method  string
			headers []string
			status  int
			cr      string     // Content-Range
			parts   [][2]int64 // for multipart: start, end inclusive
		}{
			{"GET", []string{"Range: bytes=0-99"}, 206, fmt.Sprintf("bytes 0-99/%d", size), nil},
			{"GET", []string{"Range: bytes=100-"}, 206, fmt.Sprintf("bytes 100-%d/%d", size-1, size), nil},
			{"GET", []string{"Range: bytes=-10"}, 206, fmt.Sprintf("bytes %d-%d/%d", size-10, size-1, size), nil},
			{"GET", []string{"Range: bytes=-999999999"}, 206, fmt.Sprintf("bytes 0-%d/%d", size-1, size), nil},
			{"GET", []string{"Range: bytes=10-999999999"}, 206, fmt.Sprintf("bytes 10-%d/%d", size-1, size), nil},
			{"GET", []string{"Range: bytes=5-5"}, 206, fmt.Sprintf("bytes 5-5/%d", size), nil},
			{"GET", []string{"Range: bytes=0-1,10-19,-5"}, 206, "", [][2]int64{{0, 1}, {10, 19}, {size - 5, size - 1}}},
			{"GET", []string{"Range: bytes=10-19, 0-1"}, 206, "", [][2]int64{{10, 19}, {0, 1}}},                       // the order asked
			{"GET", []string{fmt.Sprintf("Range: bytes=0-1,%d-", size)}, 206, fmt.Sprintf("bytes 0-1/%d", size), nil}, // the unsatisfiable one dropped
			{"GET", []string{fmt.Sprintf("Range: bytes=%d-", size)}, 416, fmt.Sprintf("bytes */%d", size), nil},
			{"GET", []string{"Range: bytes=-0"}, 416, fmt.Sprintf("bytes */%d", size), nil},
			{"GET", []string{"Range: bytes=9-3"}, 200, "", nil}, // invalid: ignored
			{"GET", []string{"Range: bytes=a-b"}, 200, "", nil},
			{"GET", []string{"Range: items=0-1"}, 200, "", nil}, // another unit
			{"GET", []string{"Range: bytes=0-1", "Range: bytes=2-3"}, 200, "", nil},
			{"GET", []string{"Range: bytes=" + strings.Repeat("0-1,", 17) + "0-1"}, 200, "", nil},
			{"GET", []string{fmt.Sprintf("Range: bytes=0-%d,0-%d", size-1, size-1)}, 200, "", nil}, // amplification
			{"HEAD", []string{"Range: bytes=0-99"}, 200, "", nil},                                  // ranges are for GET only
			{"GET", []string{"Range: bytes=0-99", "If-Range: " + tag}, 206, fmt.Sprintf("bytes 0-99/%d", size), nil},
			{"GET", []string{"Range: bytes=0-99", "If-Range: " + lm}, 206, fmt.Sprintf("bytes 0-99/%d", size), nil},
			{"GET", []string{"Range: bytes=0-99", `If-Range: "stale"`}, 200, "", nil},
			{"GET", []string{"Range: bytes=0-99", "If-Range: W/" + tag}, 200, "", nil},
			{"GET", []string{"Range: bytes=0-99", "If-Range: " + fixedTime.Add(time.Hour).Format(http.TimeFormat)}, 200, "", nil},
			{"GET", []string{"Range: bytes=0-99", "If-None-Match: " + tag}, 304, "", nil},
		} {
			rec := serve(t, h, req(tc.method, path, tc.headers...))
			name := fmt.Sprintf("%s %s %q", tc.method, path, tc.headers)
			if rec.status != tc.status {
				t.Errorf("%s: %d, want %d", name, rec.status, tc.status)
				continue
			}
			if got := rec.header.Get("Content-Range"); got != tc.cr {
				t.Errorf("%s: Content-Range %q, want %q", name, got, tc.cr)
			}
			switch {
			case tc.status == 200 && tc.method == "GET":
				if !bytes.Equal(rec.body.Bytes(), full) {
					t.Errorf("%s: 200 body of %d bytes, want the whole %d", name, rec.body.Len(), size)
				}
			case tc.status == 206 && tc.parts == nil:
				var a, b int64
				fmt.Sscanf(tc.cr, "bytes %d-%d/", &a, &b)
				if !bytes.Equal(rec.body.Bytes(), full[a:b+1]) {
					t.Errorf("%s: wrong part bytes", name)
				}
			case tc.status == 206:
				mt, params, err := mime.ParseMediaType(rec.header.Get("Content-Type"))
				if err != nil || mt != "multipart/byteranges" {
					t.Errorf("%s: Content-Type %q", name, rec.header.Get("Content-Type"))
					continue
				}
				mr := multipart.NewReader(bytes.NewReader(rec.body.Bytes()), params["boundary"])
				for i, want := range tc.parts {
					p, err := mr.NextPart()
					if err != nil {
						t.Fatalf("%s: part %d: %v", name, i, err)
					}
					got, _ := io.ReadAll(p)
					wantCR := fmt.Sprintf("bytes %d-%d/%d", want[0], want[1], size)
					if !bytes.Equal(got, full[want[0]:want[1]+1]) || p.Header.Get("Content-Range") != wantCR || p.Header.Get("Content-Type") == "" {
						t.Errorf("%s: part %d: %d bytes, Content-Range %q (want %q), Content-Type %q", name, i, len(got), p.Header.Get("Content-Range"), wantCR, p.Header.Get("Content-Type"))
					}
				}
				if _, err := mr.NextPart(); err != io.EOF {
					t.Errorf("%s: more parts than %d: %v", name, len(tc.parts), err)
				}
			}
		}
	}
	// An empty file has nothing to select: ranges are ignored.
	if rec := serve(t, h, req("GET", "/s/empty.txt", "Range: bytes=-5")); rec.status != 200 {
		t.Errorf("empty file with a range: %d, want 200", rec.status)
	}
}

// TestSendFileForLargeFiles: small files come from memory in one Write,
// large ones with SendFile.
func TestSendFileForLargeFiles(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir})
	small := serve(t, h, req("GET", "/s/css/app.css"))
	big := serve(t, h, req("GET", "/s/big.bin"))
	if small.writes != 1 || small.sendfiles != 0 {
		t.Errorf("small file: %d writes, %d sendfiles; want 1, 0", small.writes, small.sendfiles)
	}
	if big.writes != 0 || big.sendfiles != 1 || !bytes.Equal(big.body.Bytes(), fx.big) {
		t.Errorf("big file: %d writes, %d sendfiles, %d bytes; want 0, 1, %d", big.writes, big.sendfiles, big.body.Len(), len(fx.big))
	}
	// With no memory budget, every file goes with SendFile.
	h = newHandler(t, Config{Prefix: "/s", Dir: fx.dir, CacheBytes: -1})
	if rec := serve(t, h, req("GET", "/s/css/app.css")); rec.writes != 0 || rec.sendfiles != 1 || !bytes.Equal(rec.body.Bytes(), fx.css) {
		t.Errorf("no memory cache: %d writes, %d sendfiles", rec.writes, rec.sendfiles)
	}
}

// TestCacheSeesChanges: after the recheck interval a changed, removed or
// newly compressed file is served as it is on disk.
func TestCacheSeesChanges(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Nanosecond})
	p := filepath.Join(fx.dir, "hello.txt")
	first := serve(t, h, req("GET", "/s/hello.txt"))

	writeFile(t, p, []byte("changed!\n"))
	mod := fixedTime.Add(time.Minute)
	must(t, os.Chtimes(p, mod, mod))
	rec := serve(t, h, req("GET", "/s/hello.txt"))
	if rec.body.String() != "changed!\n" || rec.header.Get("ETag") == first.header.Get("ETag") || rec.header.Get("Last-Modified") != mod.Format(http.TimeFormat) {
		t.Errorf("after a change: %q, ETag %s (was %s), Last-Modified %s", rec.body.String(), rec.header.Get("ETag"), first.header.Get("ETag"), rec.header.Get("Last-Modified"))
	}
	// The old validator no longer matches.
	if rec := serve(t, h, req("GET", "/s/hello.txt", "If-None-Match: "+first.header.Get("ETag"))); rec.status != 200 {
		t.Errorf("old ETag after a change: %d, want 200", rec.status)
	}

	// Same size and mtime, another inode (an atomic rename of a new file).
	tmp := filepath.Join(fx.dir, "new.tmp")
	writeFile(t, tmp, []byte("CHANGED!\n"))
	must(t, os.Chtimes(tmp, mod, mod))
	must(t, os.Rename(tmp, p))
	if rec := serve(t, h, req("GET", "/s/hello.txt")); rec.body.String() != "CHANGED!\n" {
		t.Errorf("after a rename over it: %q", rec.body.String())
	}

	// A sidecar appears: Vary and the encoded body follow.
	writeFile(t, p+".gz", gz(t, []byte("CHANGED!\n")))
	if rec := serve(t, h, req("GET", "/s/hello.txt", "Accept-Encoding: gzip")); rec.header.Get("Content-Encoding") != "gzip" || rec.header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("after adding hello.txt.gz: Content-Encoding %q, Vary %q", rec.header.Get("Content-Encoding"), rec.header.Get("Vary"))
	}

	must(t, os.Remove(p))
	if rec := serve(t, h, req("GET", "/s/hello.txt")); rec.status != 404 {
		t.Errorf("after removal: %d, want 404", rec.status)
	}

	// A large file (sendfile path) replaced between the cache's check and
	// the open is re-read, never sent under stale validators.
	h = newHandler(t, Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Hour})
	serve(t, h, req("GET", "/s/big.bin"))
	bigger := append(append([]byte{}, fx.big...), "tail"...)
	writeFile(t, filepath.Join(fx.dir, "big.bin"), bigger)
	rec = serve(t, h, req("GET", "/s/big.bin"))
	if !bytes.Equal(rec.body.Bytes(), bigger) || rec.declared != int64(len(bigger)) {
		t.Errorf("big file changed under the cache: %d bytes declared %d, want %d", rec.body.Len(), rec.declared, len(bigger))
	}
}

// TestCacheSeesInPlaceRewrite: a file rewritten in place (same inode) with
// the same size and its mtime set back, as cp -p or rsync -t do, is seen
// after the recheck: by its ctime, which no one can set back. Held in
// memory or sent with sendfile alike, the new bytes are served, never the
// old ones.
func TestCacheSeesInPlaceRewrite(t *testing.T) {
	fx := newFixture(t)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"memory", Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Nanosecond}},
		{"sendfile", Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Nanosecond, CacheBytes: -1}},
		// Within the recheck interval only the sendfile path looks (fstat
		// of the file it opened).
		{"sendfile-within-recheck", Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Hour, CacheBytes: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(fx.dir, "hello.txt")
			writeFile(t, p, []byte("before\n"))
			h := newHandler(t, tc.cfg)
			first := serve(t, h, req("GET", "/s/hello.txt"))
			if first.body.String() != "before\n" {
				t.Fatalf("first: %q", first.body.String())
			}
			fi0, err := os.Stat(p)
			must(t, err)
			// In place: O_TRUNC keeps the inode.
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			must(t, err)
			_, err = f.Write([]byte("AFTER!\n"))
			must(t, err)
			must(t, f.Close())
			must(t, os.Chtimes(p, fi0.ModTime(), fi0.ModTime()))
			fi1, err := os.Stat(p)
			must(t, err)
			if inode(fi1) != inode(fi0) || fi1.Size() != fi0.Size() || !fi1.ModTime().Equal(fi0.ModTime()) {
				t.Fatalf("the rewrite changed inode, size or mtime: the test proves nothing")
			}
			rec := serve(t, h, req("GET", "/s/hello.txt"))
			if rec.status != 200 || rec.body.String() != "AFTER!\n" {
				t.Errorf("after an in-place rewrite keeping size and mtime: %d %q, want 200 %q", rec.status, rec.body.String(), "AFTER!\n")
			}
		})
	}
}

// TestCacheRecheckKeepsUnchanged: a recheck that finds the files as they
// were (ctime included) keeps the entry and its representations: no
// reload, no re-read of the contents, for a held file and for one sent
// with sendfile (whose per-request fstat must match too).
func TestCacheRecheckKeepsUnchanged(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Nanosecond})
	for _, path := range []string{"/s/css/app.css", "/s/big.bin"} {
		rel := []byte(strings.TrimPrefix(path, "/s/"))
		serve(t, h, req("GET", path))
		e := h.cache.get(rel)
		if e == nil {
			t.Fatalf("%s not cached", path)
		}
		r0 := e.reps[codingIdentity]
		for range 3 {
			time.Sleep(time.Millisecond) // past the recheck interval
			if rec := serve(t, h, req("GET", path)); rec.status != 200 {
				t.Fatalf("%s: %d", path, rec.status)
			}
		}
		if e2 := h.cache.get(rel); e2 != e || e2.reps[codingIdentity] != r0 {
			t.Errorf("%s: an unchanged file was reloaded at its recheck", path)
		}
	}
}

// TestCacheWithinRecheckServesCached: within the recheck interval the
// cache does not touch the disk (the point of it).
func TestCacheWithinRecheckServesCached(t *testing.T) {
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/s", Dir: fx.dir, Recheck: time.Hour})
	serve(t, h, req("GET", "/s/hello.txt"))
	must(t, os.Remove(filepath.Join(fx.dir, "hello.txt")))
	if rec := serve(t, h, req("GET", "/s/hello.txt")); rec.status != 200 || rec.body.String() != "hello\n" {
		t.Errorf("cached file within the recheck interval: %d %q", rec.status, rec.body.String())
	}
}

func TestCacheBounds(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		writeFile(t, filepath.Join(dir, fmt.Sprintf("f%02d.txt", i)), bytes.Repeat([]byte{'x'}, 1000))
	}
	h := newHandler(t, Config{Prefix: "/s", Dir: dir, CacheEntries: 8, CacheBytes: 5000})
	for round := range 3 {
		for i := range 20 {
			rec := serve(t, h, req("GET", fmt.Sprintf("/s/f%02d.txt", i)))
			if rec.status != 200 || rec.body.Len() != 1000 {
				t.Fatalf("round %d file %d: %d, %d bytes", round, i, rec.status, rec.body.Len())
			}
			h.cache.mu.RLock()
			n, held := len(h.cache.m), h.cache.held
			var sum int64
			for _, e := range h.cache.m {
				sum += e.held
			}
			h.cache.mu.RUnlock()
			if n > 8 || held > 5000 || held != sum {
				t.Fatalf("round %d file %d: %d entries holding %d bytes (sum %d); bounds 8 and 5000", round, i, n, held, sum)
			}
		}
	}
}

// discard is a ResponseWriter that allocates nothing.
type discard struct{ status int }

func (d *discard) WriteHeader(s int, _ []byte, _ []exchange.Header, _ int64) error {
	d.status = s
	return nil
}
func (*discard) Write(p []byte) (int, error)                    { return len(p), nil }
func (*discard) SendFile(*os.File, int64, int64) (int64, error) { return 0, nil }
func (*discard) Flush() error                                   { return nil }
func (*discard) Abort()                                         {}

func TestHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/static", Dir: fx.dir, Recheck: time.Hour})
	tag := serve(t, h, req("GET", "/static/css/app.css", "Accept-Encoding: gzip, deflate, br, zstd")).header.Get("ETag")
	lm := fixedTime.Format(http.TimeFormat)
	for _, tc := range []struct {
		r      *exchange.Request
		status int
	}{
		{req("GET", "/static/css/app.css"), 200},
		{req("GET", "/static/css/app.css", "Host: example.com", "User-Agent: wrk", "Accept: */*", "Accept-Encoding: gzip, deflate, br, zstd"), 200},
		{req("HEAD", "/static/css/app.css"), 200},
		{req("GET", "/static/css/app.css", "Accept-Encoding: gzip, deflate, br, zstd", "If-None-Match: "+tag, "If-Modified-Since: "+lm), 304},
		{req("GET", "/static/hello.txt", "If-Modified-Since: "+lm), 304},
		{req("GET", "/static/a%20b/%C3%A9.txt"), 200},
		{req("GET", "/static/.env"), 404},
		{req("POST", "/static/css/app.css"), 405},
	} {
		w := &discard{}
		h.Serve(w, tc.r) // warm the cache
		allocs := testing.AllocsPerRun(200, func() { h.Serve(w, tc.r) })
		if w.status != tc.status || allocs != 0 {
			t.Errorf("%s %s %d headers: status %d, %v allocations per request; want %d, 0", tc.r.Method, tc.r.Path, len(tc.r.Headers), w.status, allocs, tc.status)
		}
	}
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	writeFile(t, file, nil)
	for _, cfg := range []Config{
		{Prefix: "static", Dir: dir},
		{Prefix: "/s", Dir: dir, MaxAge: -time.Second},
		{Prefix: "/s", Dir: filepath.Join(dir, "missing")},
		{Prefix: "/s", Dir: file},
	} {
		if h, err := New(cfg); err == nil {
			h.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func BenchmarkServeCached(b *testing.B) {
	fx := newFixture(b)
	h := newHandler(b, Config{Prefix: "/static", Dir: fx.dir, Recheck: time.Hour})
	r := req("GET", "/static/css/app.css", "Host: localhost", "Accept-Encoding: gzip, deflate, br")
	w := &discard{}
	b.ReportAllocs()
	for b.Loop() {
		h.Serve(w, r)
	}
}

// TestConcurrentChanges serves one file from several goroutines while it
// is rewritten: every response must be one whole version of the file with
// the validators of that version (run with -race).
func TestConcurrentChanges(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.txt")
	version := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i%26)}, 1000+i%7) }
	writeFile(t, p, version(0))
	h := newHandler(t, Config{Prefix: "/s", Dir: dir, Recheck: time.Nanosecond, CacheEntries: 2})
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				rec := &recorder{}
				h.Serve(rec, req("GET", "/s/f.txt"))
				b := rec.body.Bytes()
				if rec.status != 200 || len(b) < 1000 || !bytes.Equal(b, bytes.Repeat(b[:1], len(b))) {
					errs <- fmt.Errorf("status %d, %d bytes, not one version", rec.status, len(b))
					return
				}
				// The ETag names the size that was sent.
				wantTag := "-" + strconv.FormatInt(int64(len(b)), 16) + `"`
				if !strings.HasSuffix(rec.header.Get("ETag"), wantTag) {
					errs <- fmt.Errorf("ETag %s for %d bytes", rec.header.Get("ETag"), len(b))
					return
				}
			}
		}()
	}
	for i := 1; i < 200; i++ {
		tmp := filepath.Join(dir, "tmp")
		if err := os.WriteFile(tmp, version(i), 0o644); err != nil {
			t.Fatal(err)
		}
		must(t, os.Rename(tmp, p)) // atomic, as deploys do
	}
	close(stop)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
