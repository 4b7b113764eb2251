package integration

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Tests of response compression (internal/compress) through the real
// binary; the app is python/tests/apps/compress_wsgi.py.

func startCompress(t *testing.T, extra ...string) (*Krait, string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"compress_wsgi:application", "--chdir", filepath.Join(repoRoot, "python", "tests", "apps"),
		"--env", "KRAIT_TEST_DIR=" + dir}
	return startKrait(t, nil, append(args, extra...)...), dir
}

func decodeBody(t *testing.T, ce string, r io.Reader) io.Reader {
	t.Helper()
	switch ce {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		return zr
	case "br":
		return brotli.NewReader(r)
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(zr.Close)
		return zr
	}
	t.Fatalf("Content-Encoding %q", ce)
	return nil
}

// wantPage is compress_wsgi.PAGE.
func wantPage() []byte {
	var b bytes.Buffer
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "<tr><td>%d</td><td>row %d</td></tr>\n", i, i)
	}
	return b.Bytes()[:20000]
}

// TestCompressResponses: what a WSGI app answers is compressed by
// Accept-Encoding when eligible, and left alone when not.
func TestCompressResponses(t *testing.T) {
	k, dir := startCompress(t)
	page := wantPage()
	if err := os.WriteFile(filepath.Join(dir, "page.html"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, ae string
		wantCE           string
		wantVary         bool
	}{
		{"GET", "/page", "gzip, deflate, br, zstd", "zstd", true},
		{"GET", "/page", "gzip, deflate, br", "br", true},
		{"GET", "/page", "gzip", "gzip", true},
		{"GET", "/page", "", "", true},
		{"GET", "/chunks", "gzip", "gzip", true},
		{"GET", "/file", "br", "br", true},
		{"GET", "/file", "", "", true},
		{"HEAD", "/page", "gzip", "gzip", true},
		{"GET", "/small", "gzip", "", false},
		{"GET", "/png", "gzip", "", false},
		{"GET", "/encoded", "br", "gzip", false}, // the app's own coding, untouched
	} {
		req := mustRequest(t, tc.method, k.URL(tc.path), nil)
		if tc.ae != "" {
			req.Header.Set("Accept-Encoding", tc.ae)
		}
		resp, raw := k.Do(req)
		what := tc.method + " " + tc.path + " Accept-Encoding " + tc.ae
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != tc.wantCE {
			t.Fatalf("%s: %d, Content-Encoding %q, want %q", what, resp.StatusCode, resp.Header.Get("Content-Encoding"), tc.wantCE)
		}
		if got := resp.Header.Get("Vary") == "Accept-Encoding"; got != tc.wantVary {
			t.Errorf("%s: Vary %q", what, resp.Header.Values("Vary"))
		}
		switch {
		case tc.method == "HEAD":
			if raw != "" || resp.Header.Get("Content-Length") != "" || resp.Header.Get("ETag") != `W/"rev1"` {
				t.Errorf("%s: body %d bytes, Content-Length %q, ETag %q", what, len(raw), resp.Header.Get("Content-Length"), resp.Header.Get("ETag"))
			}
		case tc.path == "/page" || tc.path == "/chunks" || tc.path == "/file":
			got := []byte(raw)
			if tc.wantCE != "" {
				if resp.ContentLength != -1 || len(raw) > len(page)/3 {
					t.Errorf("%s: Content-Length %d, %d bytes on the wire", what, resp.ContentLength, len(raw))
				}
				var err error
				if got, err = io.ReadAll(decodeBody(t, tc.wantCE, bytes.NewReader(got))); err != nil {
					t.Fatalf("%s: decoding: %v", what, err)
				}
			}
			if !bytes.Equal(got, page) {
				t.Errorf("%s: body of %d bytes is not the page", what, len(got))
			}
		}
	}
}

// TestCompressStreaming: a streamed WSGI response is compressed and still
// streamed: the client decodes the first event while the app waits.
func TestCompressStreaming(t *testing.T) {
	k, dir := startCompress(t)
	for _, ce := range []string{"zstd", "br", "gzip"} {
		t.Run(ce, func(t *testing.T) {
			release := filepath.Join(dir, "release-"+ce)
			// Free the app also when the test fails before releasing it.
			defer func() { _ = os.WriteFile(release, nil, 0o644) }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", k.URL("/stream?"+ce), nil)
			req.Header.Set("Accept-Encoding", ce)
			resp, err := k.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != ce {
				t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			r := decodeBody(t, ce, resp.Body)
			first := make([]byte, len("data: first\n\n"))
			if _, err := io.ReadFull(r, first); err != nil || string(first) != "data: first\n\n" {
				t.Fatalf("first event: %q, %v", first, err)
			}
			if err := os.WriteFile(release, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			rest, err := io.ReadAll(r)
			if err != nil || string(rest) != "data: second\n\n" {
				t.Fatalf("rest: %q, %v", rest, err)
			}
		})
	}
}

// TestCompressAccessLogAndStatic: compression sits on the app route only,
// inside the access log. The log counts the compressed bytes sent, and a
// --static file is never compressed by it (static keeps its ranges and
// strong ETag) even when the client asks for gzip.
func TestCompressAccessLogAndStatic(t *testing.T) {
	staticDir := t.TempDir()
	page := wantPage()
	if err := os.WriteFile(filepath.Join(staticDir, "page.html"), page, 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(t.TempDir(), "access.log")
	k, _ := startCompress(t, "--static", "/s="+staticDir, "--access-logfile", logPath)

	req := mustRequest(t, "GET", k.URL("/page?logged"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, raw := k.Do(req)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || len(raw) >= len(page)/3 {
		t.Fatalf("GET /page: %d, Content-Encoding %q, %d bytes", resp.StatusCode, resp.Header.Get("Content-Encoding"), len(raw))
	}
	m := waitFileMatch(t, logPath, regexp.MustCompile(`"GET /page\?logged HTTP/1.1" 200 (\d+) `), readyTimeout)
	if string(m[1]) != strconv.Itoa(len(raw)) {
		t.Errorf("access log counts %s bytes for /page, %d were sent compressed", m[1], len(raw))
	}

	req = mustRequest(t, "GET", k.URL("/s/page.html"), nil)
	req.Header.Set("Accept-Encoding", "gzip, br, zstd")
	resp, raw = k.Do(req)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || raw != string(page) ||
		resp.Header.Get("Accept-Ranges") != "bytes" || etag == "" || strings.HasPrefix(etag, "W/") {
		t.Errorf("GET /s/page.html: %d, Content-Encoding %q, %d bytes, Accept-Ranges %q, ETag %q: want the file as is, with ranges and a strong ETag",
			resp.StatusCode, resp.Header.Get("Content-Encoding"), len(raw), resp.Header.Get("Accept-Ranges"), etag)
	}
}

// gzipLevelByte is the XFL byte of a gzip stream's header: 2 for level 9,
// 4 for level 1, 0 otherwise (RFC 1952; klauspost/compress writes it so).
func gzipLevelByte(t *testing.T, k *Krait) byte {
	t.Helper()
	req := mustRequest(t, "GET", k.URL("/page"), nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, raw := k.Do(req)
	if resp.Header.Get("Content-Encoding") != "gzip" || len(raw) < 10 {
		t.Fatalf("GET /page: Content-Encoding %q, %d bytes", resp.Header.Get("Content-Encoding"), len(raw))
	}
	return raw[8]
}

// TestCompressFlags: every --compress* flag changes what is compressed.
func TestCompressFlags(t *testing.T) {
	type get struct {
		path, ae, wantCE string
	}
	for _, tc := range []struct {
		args []string
		gets []get
	}{
		// off: nothing compressed, no Vary either.
		{[]string{"--compress", "off"}, []get{{"/page", "gzip, br, zstd", ""}, {"/chunks", "gzip", ""}}},
		// only gzip: a zstd-only client gets identity; preference order.
		{[]string{"--compress", "gzip"}, []get{{"/page", "zstd", ""}, {"/page", "zstd, br, gzip", "gzip"}}},
		{[]string{"--compress", "gzip,br"}, []get{{"/page", "zstd, br, gzip", "gzip"}, {"/page", "br", "br"}}},
		// min size above the 20,000-byte page; streamed responses still
		// compressed (/chunks is a list: the adapter gives it a length).
		{[]string{"--compress-min-size", "20001"}, []get{{"/page", "gzip", ""}, {"/chunks", "gzip", ""}, {"/stream?ms", "gzip", "gzip"}}},
		{[]string{"--compress-min-size", "20000"}, []get{{"/page", "gzip", "gzip"}}},
		// types: JSON only, then PNG too.
		{[]string{"--compress-types", "application/json"}, []get{{"/page", "gzip", ""}, {"/chunks", "gzip", "gzip"}}},
		{[]string{"--compress-types", "image/*"}, []get{{"/png", "gzip", "gzip"}, {"/chunks", "gzip", ""}}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			k, dir := startCompress(t, tc.args...)
			for _, g := range tc.gets {
				req := mustRequest(t, "GET", k.URL(g.path), nil)
				req.Header.Set("Accept-Encoding", g.ae)
				var resp *http.Response
				var raw string
				if name, ok := strings.CutPrefix(g.path, "/stream?"); ok {
					// Released once the head is here, so the response
					// is streamed, not gathered by the adapter.
					release := filepath.Join(dir, "release-"+name)
					defer func() { _ = os.WriteFile(release, nil, 0o644) }()
					var err error
					if resp, err = k.Client().Do(req); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(release, nil, 0o644); err != nil {
						t.Fatal(err)
					}
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil {
						t.Fatal(err)
					}
					raw = string(b)
				} else {
					resp, raw = k.Do(req)
				}
				if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != g.wantCE {
					t.Errorf("GET %s, Accept-Encoding %s: %d, Content-Encoding %q, want %q", g.path, g.ae, resp.StatusCode, resp.Header.Get("Content-Encoding"), g.wantCE)
					continue
				}
				if g.wantCE == "" && g.path == "/page" && raw != string(wantPage()) {
					t.Errorf("GET %s: %d bytes, not the page", g.path, len(raw))
				}
				if tc.args[1] == "off" && resp.Header.Get("Vary") != "" {
					t.Errorf("--compress off, GET %s: Vary %q", g.path, resp.Header.Get("Vary"))
				}
			}
		})
	}
	t.Run("levels", func(t *testing.T) {
		for _, tc := range []struct {
			level string
			xfl   byte
		}{{"", 0}, {"1", 4}, {"9", 2}} {
			var args []string
			if tc.level != "" {
				args = []string{"--compress-gzip-level", tc.level}
			}
			if got := gzipLevelByte(t, func() *Krait { k, _ := startCompress(t, args...); return k }()); got != tc.xfl {
				t.Errorf("--compress-gzip-level %q: gzip XFL %d, want %d", tc.level, got, tc.xfl)
			}
		}
	})
	t.Run("brotli and zstd levels", func(t *testing.T) {
		// The densest levels make a smaller page than the fastest: the
		// flags reach the encoders.
		size := func(ce string, args ...string) int {
			k, _ := startCompress(t, args...)
			req := mustRequest(t, "GET", k.URL("/page"), nil)
			req.Header.Set("Accept-Encoding", ce)
			resp, raw := k.Do(req)
			if resp.Header.Get("Content-Encoding") != ce {
				t.Fatalf("%v: Content-Encoding %q, want %s", args, resp.Header.Get("Content-Encoding"), ce)
			}
			got, err := io.ReadAll(decodeBody(t, ce, strings.NewReader(raw)))
			if err != nil || !bytes.Equal(got, wantPage()) {
				t.Fatalf("%v: decoding %s: %v", args, ce, err)
			}
			return len(raw)
		}
		if fast, dense := size("br", "--compress-brotli-level", "0"), size("br", "--compress-brotli-level", "11"); dense >= fast {
			t.Errorf("brotli: level 11 gave %d bytes, level 0 %d", dense, fast)
		}
		if fast, dense := size("zstd", "--compress-zstd-level", "1"), size("zstd", "--compress-zstd-level", "19"); dense >= fast {
			t.Errorf("zstd: level 19 gave %d bytes, level 1 %d", dense, fast)
		}
	})
}

// TestCompressFlagErrors: bad values exit 2 with a message naming the flag.
func TestCompressFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		reason string
	}{
		{[]string{"--compress", "deflate"}, `unknown coding "deflate"`},
		{[]string{"--compress", "gzip,gzip"}, "listed twice"},
		{[]string{"--compress-min-size", "-1"}, "negative"},
		{[]string{"--compress-types", "text"}, "want type/subtype"},
		{[]string{"--compress-gzip-level", "0"}, "out of range 1..9"},
		{[]string{"--compress-brotli-level", "12"}, "out of range 0..11"},
		{[]string{"--compress-zstd-level", "23"}, "out of range 1..22"},
	} {
		code, _, stderr := runKrait(t, readyTimeout, append([]string{"serve", "compress_wsgi:application"}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.args[0]+": ") || !strings.Contains(stderr, tc.reason) {
			t.Errorf("%v: exit %d, stderr %q: want 2 and a message naming %s: %s", tc.args, code, stderr, tc.args[0], tc.reason)
		}
	}
}

// TestCompressOverTLS: the TLS engine (HTTP/2 and HTTP/1.1) compresses
// the same way, streaming included.
func TestCompressOverTLS(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k, _ := startCompress(t, "--certfile", cert, "--keyfile", key)
	for _, h2 := range []bool{true, false} {
		c := tlsClient(t, pki.pool, h2)
		for _, ce := range []string{"zstd", "br", "gzip"} {
			req := mustRequest(t, "GET", "https://"+k.Addr()+"/page", nil)
			req.Header.Set("Accept-Encoding", ce)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.Header.Get("Content-Encoding") != ce || resp.Header.Get("Vary") != "Accept-Encoding" {
				t.Fatalf("%s %s: Content-Encoding %q, Vary %q, %v", resp.Proto, ce, resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"), err)
			}
			got, err := io.ReadAll(decodeBody(t, ce, bytes.NewReader(raw)))
			if err != nil || !bytes.Equal(got, wantPage()) || len(raw) > len(got)/3 {
				t.Errorf("%s %s: %d bytes on the wire decode to %d bytes (%v), want the page", resp.Proto, ce, len(raw), len(got), err)
			}
		}
	}
}
