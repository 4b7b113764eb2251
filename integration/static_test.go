package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// staticFixture is a served directory with a secret file beside it that
// traversal and symlinks try to reach.
type staticFixture struct {
	dir  string
	css  []byte
	big  []byte
	mod  time.Time
	gzip []byte
}

func newStaticFixture(t *testing.T) *staticFixture {
	t.Helper()
	base := t.TempDir()
	fx := &staticFixture{
		dir: filepath.Join(base, "public"),
		css: bytes.Repeat([]byte("body { color: #123456; }\n"), 600), // 15 KB
		big: make([]byte, 3<<20),                                     // beyond the in-memory cache: sendfile
		mod: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
	}
	for i := range fx.big {
		fx.big[i] = byte(i*13 + i>>10)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(fx.css)
	zw.Close()
	fx.gzip = gz.Bytes()
	files := map[string][]byte{
		"css/app.css":              fx.css,
		"css/app.css.gz":           fx.gzip,
		"css/app.3f2a1b9c8d7e.css": fx.css,
		"js/index-BkD3f9aZ.js":     []byte("console.log(1)\n"),
		"big.bin":                  fx.big,
		"fonts/x.woff2":            []byte("wOF2"),
		".env":                     []byte("SECRET=1\n"),
		".git/config":              []byte("[core]\n"),
		".well-known/security.txt": []byte("Contact: mailto:x@example.com\n"),
		"../secret.txt":            []byte("top secret\n"),
		"../secretdir/inner.txt":   []byte("top secret\n"),
		"dir/index.html":           []byte("<p>index</p>\n"),
	}
	for name, data := range files {
		p := filepath.Join(fx.dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fx.mod, fx.mod); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"inside.css":     "css/app.css",
		"escape.txt":     "../secret.txt",
		"escape-abs.txt": filepath.Join(base, "secret.txt"),
		"escdir":         "../secretdir",
	} {
		if err := os.Symlink(target, filepath.Join(fx.dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	return fx
}

// startStatic runs the static test app with --static /static=fx.dir.
func startStatic(t *testing.T, fx *staticFixture, extra ...string) *Krait {
	t.Helper()
	args := append([]string{"app:application", "--chdir", testdataDir("static"), "--static", "/static=" + fx.dir}, extra...)
	return startKrait(t, nil, args...)
}

// rawGet sends one request with exactly target and header lines on a new
// connection and reads the response (method decides whether a body follows).
func rawGet(t *testing.T, k *Krait, method, target string, headers ...string) rawResponse {
	t.Helper()
	c := dial(t, k.Addr())
	setDeadline(c)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: localhost\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	resps, err := readResponses(bufio.NewReader(c), 1, method)
	if err != nil || len(resps) != 1 {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return resps[0]
}

func TestStaticServesFilesFromGo(t *testing.T) {
	fx := newStaticFixture(t)
	empty := t.TempDir()
	k := startStatic(t, fx, "--static", "/empty/="+empty)
	// krait says what it serves, and warns about an empty directory (a
	// collectstatic not run).
	k.MustWaitLog(regexp.MustCompile(`msg="serving static files" prefix=/static dir=` + regexp.QuoteMeta(fx.dir) + ` cache_control="public, max-age=3600"`))
	k.MustWaitLog(regexp.MustCompile(`level=WARN msg="static directory is empty" prefix=/empty dir=` + regexp.QuoteMeta(empty)))
	if strings.Contains(k.Log(), `msg="static directory is empty" prefix=/static`) {
		t.Errorf("a warning about a directory that has files")
	}
	if r := rawGet(t, k, "GET", "/empty/x"); r.Status != 404 || strings.HasPrefix(string(r.Body), "app:") {
		t.Errorf("GET /empty/x: %d %q, want 404 from the static handler", r.Status, r.Body)
	}

	r := rawGet(t, k, "GET", "/static/css/app.css")
	lm := fx.mod.Format(http.TimeFormat)
	want := map[string]string{
		"Content-Type":           "text/css; charset=utf-8",
		"Content-Length":         fmt.Sprint(len(fx.css)),
		"Last-Modified":          lm,
		"Cache-Control":          "public, max-age=3600",
		"Accept-Ranges":          "bytes",
		"Vary":                   "Accept-Encoding",
		"X-Content-Type-Options": "nosniff",
		"Content-Encoding":       "",
	}
	if r.Status != 200 || !bytes.Equal(r.Body, fx.css) {
		t.Fatalf("GET /static/css/app.css: %d, %d bytes; want 200, %d", r.Status, len(r.Body), len(fx.css))
	}
	for k, v := range want {
		if got := r.Header.Get(k); got != v {
			t.Errorf("GET /static/css/app.css: %s = %q, want %q", k, got, v)
		}
	}
	etag := r.Header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]+-[0-9a-f]+"$`).MatchString(etag) {
		t.Errorf("ETag %q is not a strong tag", etag)
	}

	// The app still gets everything else, the static handler the rest of /static.
	for _, tc := range []struct {
		target string
		status int
		body   string
	}{
		{"/", 200, "app:/"},
		{"/staticfoo/x", 200, "app:/staticfoo/x"},
		{"/static/missing.css", 404, "404 Not Found\n"},
		{"/static/css/", 404, "404 Not Found\n"},
		{"/static/dir", 404, "404 Not Found\n"},  // a directory: no listing
		{"/static/dir/", 404, "404 Not Found\n"}, // and no index.html
		{"/static", 404, "404 Not Found\n"},
		{"/static/inside.css", 200, string(fx.css)}, // a symlink inside the root
		{"/static/.well-known/security.txt", 200, "Contact: mailto:x@example.com\n"},
		{"/static/fonts/x.woff2?v=2", 200, "wOF2"},
	} {
		r := rawGet(t, k, "GET", tc.target)
		if r.Status != tc.status || string(r.Body) != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.target, r.Status, r.Body, tc.status, tc.body)
		}
	}
	if r := rawGet(t, k, "GET", "/static/fonts/x.woff2"); r.Header.Get("Content-Type") != "font/woff2" {
		t.Errorf("woff2 Content-Type %q", r.Header.Get("Content-Type"))
	}

	// HEAD: the same fields, no body.
	h := rawGet(t, k, "HEAD", "/static/css/app.css")
	if h.Status != 200 || len(h.Body) != 0 || h.Header.Get("Content-Length") != fmt.Sprint(len(fx.css)) || h.Header.Get("ETag") != etag {
		t.Errorf("HEAD: %d, %d body bytes, Content-Length %q, ETag %q", h.Status, len(h.Body), h.Header.Get("Content-Length"), h.Header.Get("ETag"))
	}
	// Methods: 405 with Allow, OPTIONS 204 with Allow.
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		r := rawGet(t, k, m, "/static/css/app.css", "Content-Length: 0")
		if r.Status != 405 || r.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Errorf("%s: %d, Allow %q; want 405, GET, HEAD, OPTIONS", m, r.Status, r.Header.Get("Allow"))
		}
	}
	if r := rawGet(t, k, "OPTIONS", "/static/css/app.css"); r.Status != 204 || r.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("OPTIONS: %d, Allow %q", r.Status, r.Header.Get("Allow"))
	}
}

// TestStaticRefusesEscapes: traversal in every spelling, dotfiles and
// symlinks leading outside the root are 404 and never reach the app or
// the secret.
func TestStaticRefusesEscapes(t *testing.T) {
	fx := newStaticFixture(t)
	k := startStatic(t, fx)
	for _, target := range []string{
		"/static/.env",
		"/static/%2eenv",
		"/static/.git/config",
		"/static/css/../../secret.txt",
		"/static/%2e%2e/secret.txt",
		"/static/%2E%2E/secret.txt",
		"/static/css/%2e%2e/%2e%2e/secret.txt",
		"/static/..%2fsecret.txt",
		"/static/..%2Fsecret.txt",
		"/static/..%5csecret.txt",
		"/static/..\\secret.txt",
		"/static/css%2fapp.css",
		"/static/escape.txt",
		"/static/escape-abs.txt",
		"/static/escdir/inner.txt",
		"/static/secret.txt%00.css",
		"/static//etc/passwd",
	} {
		r := rawGet(t, k, "GET", target)
		if r.Status != 404 || strings.Contains(string(r.Body), "secret") || strings.HasPrefix(string(r.Body), "app:") {
			t.Errorf("GET %s: %d %q; want 404 from the static handler", target, r.Status, r.Body)
		}
	}
	if r := rawGet(t, k, "GET", "/static/bad%zzescape"); r.Status != 400 {
		t.Errorf("a malformed escape: %d, want 400", r.Status)
	}
}

func TestStaticConditionalAndCaching(t *testing.T) {
	fx := newStaticFixture(t)
	k := startStatic(t, fx, "--static-max-age", "120")
	etag := rawGet(t, k, "GET", "/static/css/app.css").Header.Get("ETag")
	lm := fx.mod.Format(http.TimeFormat)
	for _, tc := range []struct {
		method  string
		target  string
		headers []string
		status  int
	}{
		{"GET", "/static/css/app.css", []string{"If-None-Match: " + etag}, 304},
		{"HEAD", "/static/css/app.css", []string{"If-None-Match: W/" + etag}, 304},
		{"GET", "/static/css/app.css", []string{"If-Modified-Since: " + lm}, 304},
		{"GET", "/static/css/app.css", []string{`If-None-Match: "stale"`, "If-Modified-Since: " + lm}, 200},
		{"GET", "/static/css/app.css", []string{`If-Match: "stale"`}, 412},
		{"GET", "/static/css/app.css", []string{"If-Unmodified-Since: " + fx.mod.Add(-time.Hour).Format(http.TimeFormat)}, 412},
	} {
		r := rawGet(t, k, tc.method, tc.target, tc.headers...)
		if r.Status != tc.status {
			t.Errorf("%s %s %q: %d, want %d", tc.method, tc.target, tc.headers, r.Status, tc.status)
		}
		if tc.status == 304 && (len(r.Body) != 0 || r.Header.Get("ETag") != etag || r.Header.Get("Cache-Control") != "public, max-age=120" || r.Header.Get("Vary") != "Accept-Encoding") {
			t.Errorf("%q: 304 with %d body bytes, ETag %q, Cache-Control %q, Vary %q", tc.headers, len(r.Body), r.Header.Get("ETag"), r.Header.Get("Cache-Control"), r.Header.Get("Vary"))
		}
	}
	// Fingerprinted names are immutable for a year; --static-max-age for the rest.
	for target, cc := range map[string]string{
		"/static/css/app.3f2a1b9c8d7e.css": "public, max-age=31536000, immutable",
		"/static/js/index-BkD3f9aZ.js":     "public, max-age=31536000, immutable",
		"/static/css/app.css":              "public, max-age=120",
	} {
		if got := rawGet(t, k, "GET", target).Header.Get("Cache-Control"); got != cc {
			t.Errorf("GET %s: Cache-Control %q, want %q", target, got, cc)
		}
	}
	// Precompressed sidecar chosen by Accept-Encoding.
	r := rawGet(t, k, "GET", "/static/css/app.css", "Accept-Encoding: gzip, deflate, br, zstd")
	if r.Status != 200 || r.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(r.Body, fx.gzip) || r.Header.Get("Vary") != "Accept-Encoding" || r.Header.Get("ETag") == etag {
		t.Errorf("gzip: %d, Content-Encoding %q, %d bytes (want %d), Vary %q, ETag %q", r.Status, r.Header.Get("Content-Encoding"), len(r.Body), len(fx.gzip), r.Header.Get("Vary"), r.Header.Get("ETag"))
	}
	if r := rawGet(t, k, "GET", "/static/css/app.css", "Accept-Encoding: br"); r.Header.Get("Content-Encoding") != "" || !bytes.Equal(r.Body, fx.css) {
		t.Errorf("br without a .br sidecar: Content-Encoding %q", r.Header.Get("Content-Encoding"))
	}
}

func TestStaticRanges(t *testing.T) {
	fx := newStaticFixture(t)
	k := startStatic(t, fx)
	for _, tc := range []struct {
		target string
		full   []byte
	}{
		{"/static/css/app.css", fx.css}, // from memory
		{"/static/big.bin", fx.big},     // sendfile
	} {
		size := len(tc.full)
		r := rawGet(t, k, "GET", tc.target, "Range: bytes=100-199")
		if r.Status != 206 || r.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", size) || !bytes.Equal(r.Body, tc.full[100:200]) {
			t.Errorf("%s bytes=100-199: %d %q, %d bytes", tc.target, r.Status, r.Header.Get("Content-Range"), len(r.Body))
		}
		r = rawGet(t, k, "GET", tc.target, "Range: bytes=-5")
		if r.Status != 206 || !bytes.Equal(r.Body, tc.full[size-5:]) {
			t.Errorf("%s bytes=-5: %d, %q", tc.target, r.Status, r.Body)
		}
		r = rawGet(t, k, "GET", tc.target, fmt.Sprintf("Range: bytes=%d-", size))
		if r.Status != 416 || r.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
			t.Errorf("%s unsatisfiable: %d %q", tc.target, r.Status, r.Header.Get("Content-Range"))
		}
		r = rawGet(t, k, "GET", tc.target, "Range: bytes=0-9,1000-1009")
		mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if r.Status != 206 || err != nil || mt != "multipart/byteranges" {
			t.Errorf("%s two ranges: %d, Content-Type %q", tc.target, r.Status, r.Header.Get("Content-Type"))
			continue
		}
		mr := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"])
		for _, want := range [][2]int{{0, 10}, {1000, 1010}} {
			p, err := mr.NextPart()
			if err != nil {
				t.Fatalf("%s: %v", tc.target, err)
			}
			got, _ := io.ReadAll(p)
			if !bytes.Equal(got, tc.full[want[0]:want[1]]) || p.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", want[0], want[1]-1, size) {
				t.Errorf("%s part %v: %d bytes, %q", tc.target, want, len(got), p.Header.Get("Content-Range"))
			}
		}
		if _, err := mr.NextPart(); err != io.EOF {
			t.Errorf("%s: a third part: %v", tc.target, err)
		}
		// A whole large file, through sendfile.
		if r := rawGet(t, k, "GET", tc.target); r.Status != 200 || !bytes.Equal(r.Body, tc.full) {
			t.Errorf("%s whole: %d, %d bytes of %d", tc.target, r.Status, len(r.Body), size)
		}
	}
}

// TestStaticKeepAlive: many static requests and app requests pipelined on
// one connection are answered in order.
func TestStaticKeepAlive(t *testing.T) {
	fx := newStaticFixture(t)
	k := startStatic(t, fx)
	c := dial(t, k.Addr())
	setDeadline(c)
	var req strings.Builder
	targets := []string{"/static/css/app.css", "/", "/static/missing", "/static/css/app.css", "/app"}
	for _, tg := range targets {
		fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", tg)
	}
	if _, err := io.WriteString(c, req.String()); err != nil {
		t.Fatal(err)
	}
	resps, err := readResponses(bufio.NewReader(c), len(targets), "GET")
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := []int{200, 200, 404, 200, 200}
	for i, r := range resps {
		if r.Status != wantStatus[i] {
			t.Errorf("response %d (%s): %d, want %d", i, targets[i], r.Status, wantStatus[i])
		}
	}
	if !bytes.Equal(resps[0].Body, fx.css) || string(resps[1].Body) != "app:/" || string(resps[4].Body) != "app:/app" {
		t.Errorf("bodies out of order: %d bytes, %q, %q", len(resps[0].Body), resps[1].Body, resps[4].Body)
	}
}

func TestStaticFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--static", "static=" + dir}, "--static: prefix \"static\" must start with '/'"},
		{[]string{"--static", "/static=" + filepath.Join(dir, "nope")}, "--static: directory "},
		{[]string{"--static", "/static"}, "--static: \"/static\" is not URL_PREFIX=DIR"},
		{[]string{"--static-max-age", "-5"}, "--static-max-age"},
	} {
		code, _, stderr := runKrait(t, 30*time.Second, append([]string{"serve", "app:application"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.msg) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.msg)
		}
	}
}

// TestStaticWithoutPython: static files are answered while the only
// worker (one thread) is busy with a request it holds, so they never wait
// for, nor go through, Python.
func TestStaticWithoutPython(t *testing.T) {
	fx := newStaticFixture(t)
	testDir := t.TempDir()
	k := startStatic(t, fx, "-w", "1", "--threads", "1", "--env", "KRAIT_TEST_DIR="+testDir)
	held := make(chan rawResponse, 1)
	go func() {
		c := dial(t, k.Addr())
		setDeadline(c)
		io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resps, _ := readResponses(bufio.NewReader(c), 1, "GET")
		var r rawResponse
		if len(resps) == 1 {
			r = resps[0]
		}
		held <- r
	}()
	waitFile(t, filepath.Join(testDir, "held"), ioTimeout)
	for i := range 20 {
		r := rawGet(t, k, "GET", "/static/css/app.css")
		if r.Status != 200 || !bytes.Equal(r.Body, fx.css) {
			t.Fatalf("static request %d while the worker is held: %d, %d bytes", i, r.Status, len(r.Body))
		}
	}
	if err := os.WriteFile(filepath.Join(testDir, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-held:
		if r.Status != 200 || string(r.Body) != "app:/hold" {
			t.Errorf("the held request: %d %q", r.Status, r.Body)
		}
	case <-time.After(ioTimeout):
		t.Fatal("the held request did not finish after its release")
	}
}
