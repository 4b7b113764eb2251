package compress

import (
	"bufio"
	"bytes"
	stdgzip "compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/krait-server/krait/internal/exchange"
)

// fakeRW is an engine writer that records everything.
type fakeRW struct {
	interim  []int
	status   int
	headers  []exchange.Header // deep copies
	length   int64
	body     bytes.Buffer
	writes   int
	files    int // SendFile calls
	flushes  int
	flushedN []int // len(body) at each Flush
	aborted  bool
	trailers []exchange.Header
	atEnd    int // len(body) when the trailers came
}

func (f *fakeRW) WriteHeader(status int, _ []byte, hs []exchange.Header, cl int64) error {
	if status < 200 {
		f.interim = append(f.interim, status)
		return nil
	}
	if f.status != 0 {
		return errors.New("fake: header already written")
	}
	f.status, f.length = status, cl
	for _, h := range hs {
		f.headers = append(f.headers, exchange.Header{Name: bytes.Clone(h.Name), Value: bytes.Clone(h.Value)})
	}
	return nil
}

func (f *fakeRW) Write(p []byte) (int, error) {
	if f.status == 0 {
		f.status = 200
	}
	f.writes++
	return f.body.Write(p)
}

func (f *fakeRW) SendFile(file *os.File, off, count int64) (int64, error) {
	f.files++
	if count < 0 {
		fi, _ := file.Stat()
		count = fi.Size() - off
	}
	n, err := io.Copy(&f.body, io.NewSectionReader(file, off, count))
	return n, err
}

func (f *fakeRW) Flush() error {
	f.flushes++
	f.flushedN = append(f.flushedN, f.body.Len())
	return nil
}
func (f *fakeRW) Abort() { f.aborted = true }

func (f *fakeRW) WriteTrailers(fs []exchange.Header) error {
	f.trailers, f.atEnd = fs, f.body.Len()
	return nil
}

// get returns the values of the named field, joined by "|".
func (f *fakeRW) get(name string) string {
	var vs []string
	for _, h := range f.headers {
		if strings.EqualFold(string(h.Name), name) {
			vs = append(vs, string(h.Value))
		}
	}
	return strings.Join(vs, "|")
}

func (f *fakeRW) has(name string) bool {
	for _, h := range f.headers {
		if strings.EqualFold(string(h.Name), name) {
			return true
		}
	}
	return false
}

// hijackRW is an engine writer that can be hijacked.
type hijackRW struct {
	fakeRW
	hijacked int
}

func (h *hijackRW) Hijack() (net.Conn, *bufio.ReadWriter, error) { h.hijacked++; return nil, nil, nil }

type handlerFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f handlerFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

func hdrs(kv ...string) []exchange.Header {
	var hs []exchange.Header
	for i := 0; i < len(kv); i += 2 {
		hs = append(hs, exchange.Header{Name: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

func request(method string, ae ...string) *exchange.Request {
	r := &exchange.Request{Method: []byte(method), Target: []byte("/"), Path: []byte("/"), ProtoMajor: 1, ProtoMinor: 1, ContentLength: 0}
	r.Headers = hdrs("Host", "example.com")
	for _, v := range ae {
		r.Headers = append(r.Headers, exchange.Header{Name: []byte("Accept-Encoding"), Value: []byte(v)})
	}
	return r
}

func newC(t testing.TB, mod func(*Config)) *Compressor {
	t.Helper()
	cfg := Defaults()
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// text returns n bytes of compressible text.
func text(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "<li class=\"item\" id=\"row-%d\">Item number %d of the list, price %d.%02d</li>\n", i, i, i*7%1000, i%100)
	}
	return b.Bytes()[:n]
}

func decode(t testing.TB, ce string, data []byte) []byte {
	t.Helper()
	var r io.Reader
	switch ce {
	case "gzip":
		// The standard library's reader: interoperability, not just a
		// round trip through one library.
		zr, err := stdgzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(data))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		r = zr
	default:
		t.Fatalf("unknown coding %q", ce)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", ce, err)
	}
	return out
}

// serve runs one request through c with app and returns the engine's view.
func serve(c *Compressor, r *exchange.Request, app func(w exchange.ResponseWriter)) *fakeRW {
	f := &fakeRW{}
	c.Wrap(handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) { app(w) })).Serve(f, r)
	return f
}

// respond writes one whole response.
func respond(status int, hs []exchange.Header, cl int64, body []byte) func(w exchange.ResponseWriter) {
	return func(w exchange.ResponseWriter) {
		if err := w.WriteHeader(status, nil, hs, cl); err != nil {
			panic(err)
		}
		if _, err := w.Write(body); err != nil {
			panic(err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	c := newC(t, nil)
	for _, ce := range []string{"zstd", "br", "gzip"} {
		for _, n := range []int{1024, 5000, 700 << 10} { // the last one spans several blocks and windows
			t.Run(fmt.Sprintf("%s/%d", ce, n), func(t *testing.T) {
				body := text(n)
				f := serve(c, request("GET", ce), func(w exchange.ResponseWriter) {
					hs := hdrs("Content-Type", "text/html; charset=utf-8", "Content-Length", fmt.Sprint(n), "X-App", "1")
					if err := w.WriteHeader(200, nil, hs, int64(n)); err != nil {
						t.Fatal(err)
					}
					for p := body; len(p) > 0; { // uneven pieces
						k := min(len(p), 3001)
						if m, err := w.Write(p[:k]); err != nil || m != k {
							t.Fatalf("Write: %d, %v", m, err)
						}
						p = p[k:]
					}
				})
				if f.get("Content-Encoding") != ce || f.has("Content-Length") || f.length != -1 {
					t.Fatalf("Content-Encoding %q, Content-Length field %v, length %d; want %s, none, -1",
						f.get("Content-Encoding"), f.has("Content-Length"), f.length, ce)
				}
				if f.get("Vary") != "Accept-Encoding" || f.get("X-App") != "1" {
					t.Errorf("Vary %q, X-App %q", f.get("Vary"), f.get("X-App"))
				}
				if f.aborted || f.flushes != 0 {
					t.Errorf("aborted %v, flushes %d", f.aborted, f.flushes)
				}
				if f.body.Len() >= n/2 {
					t.Errorf("%d bytes compressed to %d", n, f.body.Len())
				}
				if got := decode(t, ce, f.body.Bytes()); !bytes.Equal(got, body) {
					t.Fatalf("decoded %d bytes, want the %d written", len(got), n)
				}
				if n > 100<<10 && f.writes > n/outBufSize+4 {
					// The engine gets large writes (chunks), not one per encoder block.
					t.Errorf("%d engine writes for %d compressed bytes", f.writes, f.body.Len())
				}
			})
		}
	}
}

// TestRules: every reason not to compress, and the cases next to them that
// do compress.
func TestRules(t *testing.T) {
	c := newC(t, nil)
	html := "text/html"
	big := text(4000)
	for _, tc := range []struct {
		name    string
		method  string
		ae      []string
		status  int
		hs      []string
		cl      int64 // -2: len(body)
		body    []byte
		wantCE  string
		wantVar bool // Vary: Accept-Encoding added
	}{
		{"known length", "GET", []string{"gzip"}, 200, []string{"Content-Type", html}, -2, big, "gzip", true},
		{"unknown length, small", "GET", []string{"gzip"}, 200, []string{"Content-Type", html}, -1, []byte("hi"), "gzip", true},
		{"exactly min size", "GET", []string{"gzip"}, 200, []string{"Content-Type", html}, -2, big[:DefaultMinSize], "gzip", true},
		{"below min size", "GET", []string{"gzip"}, 200, []string{"Content-Type", html}, -2, big[:DefaultMinSize-1], "", false},
		{"empty", "GET", []string{"gzip"}, 200, []string{"Content-Type", html}, 0, nil, "", false},
		{"201 json", "POST", []string{"br"}, 201, []string{"Content-Type", "application/json"}, -2, big, "br", true},
		{"404 page", "GET", []string{"zstd"}, 404, []string{"Content-Type", html}, -2, big, "zstd", true},
		{"500 page", "GET", []string{"zstd"}, 500, []string{"Content-Type", html}, -1, big, "zstd", true},
		{"204", "GET", []string{"gzip"}, 204, []string{"Content-Type", html}, -1, nil, "", false},
		{"205", "GET", []string{"gzip"}, 205, []string{"Content-Type", html}, -1, nil, "", false},
		{"304", "GET", []string{"gzip"}, 304, []string{"Content-Type", html, "ETag", `"x"`}, -1, nil, "", false},
		{"206", "GET", []string{"gzip"}, 206, []string{"Content-Type", html, "Content-Range", "bytes 0-3999/9000"}, -2, big, "", false},
		{"200 with Content-Range", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "Content-Range", "bytes 0-3999/4000"}, -2, big, "", false},
		{"app encoded", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "Content-Encoding", "br"}, -2, big, "br", false},
		{"app identity coding", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "content-encoding", "identity"}, -2, big, "identity", false},
		{"no-transform", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "Cache-Control", "public, No-Transform"}, -2, big, "", false},
		{"cache-control without no-transform", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "Cache-Control", "public, max-age=60"}, -2, big, "gzip", true},
		{"content digest", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "Content-Digest", "sha-256=:x:"}, -2, big, "", false},
		{"repr digest", "GET", []string{"gzip"}, 200, []string{"Content-Type", html, "Repr-Digest", "sha-256=:x:"}, -2, big, "", false},
		{"png", "GET", []string{"gzip"}, 200, []string{"Content-Type", "image/png"}, -2, big, "", false},
		{"woff2", "GET", []string{"gzip"}, 200, []string{"Content-Type", "font/woff2"}, -2, big, "", false},
		{"octet-stream", "GET", []string{"gzip"}, 200, []string{"Content-Type", "application/octet-stream"}, -2, big, "", false},
		{"zip", "GET", []string{"gzip"}, 200, []string{"Content-Type", "application/zip"}, -2, big, "", false},
		{"no content type", "GET", []string{"gzip"}, 200, nil, -2, big, "", false},
		{"malformed content type", "GET", []string{"gzip"}, 200, []string{"Content-Type", "html"}, -2, big, "", false},
		{"type case and parameters", "GET", []string{"gzip"}, 200, []string{"Content-Type", " Text/HTML ; charset=UTF-8"}, -2, big, "gzip", true},
		{"structured suffix", "GET", []string{"gzip"}, 200, []string{"Content-Type", "application/ld+json"}, -2, big, "gzip", true},
		{"bare suffix is no subtype", "GET", []string{"gzip"}, 200, []string{"Content-Type", "application/+json"}, -2, big, "", false},
		{"svg", "GET", []string{"gzip"}, 200, []string{"Content-Type", "image/svg+xml"}, -2, big, "gzip", true},
		{"event stream", "GET", []string{"gzip"}, 200, []string{"Content-Type", "text/event-stream"}, -1, big, "gzip", true},
		{"no Accept-Encoding: Vary all the same", "GET", nil, 200, []string{"Content-Type", html}, -2, big, "", true},
		{"identity asked: Vary all the same", "GET", []string{"identity, gzip;q=0"}, 200, []string{"Content-Type", html}, -2, big, "", true},
		{"unsupported coding only", "GET", []string{"deflate"}, 200, []string{"Content-Type", html}, -2, big, "", true},
		{"HEAD known length", "HEAD", []string{"gzip"}, 200, []string{"Content-Type", html}, 5000, nil, "gzip", true},
		{"HEAD unknown length", "HEAD", []string{"gzip"}, 200, []string{"Content-Type", html}, -1, nil, "", true},
		{"HEAD small", "HEAD", []string{"gzip"}, 200, []string{"Content-Type", html}, 10, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := tc.cl
			hs := hdrs(tc.hs...)
			if cl == -2 {
				cl = int64(len(tc.body))
				hs = append(hs, exchange.Header{Name: []byte("Content-Length"), Value: []byte(fmt.Sprint(cl))})
			}
			f := serve(c, request(tc.method, tc.ae...), respond(tc.status, hs, cl, tc.body))
			if f.status != tc.status {
				t.Fatalf("status %d", f.status)
			}
			if got := f.get("Content-Encoding"); got != tc.wantCE {
				t.Errorf("Content-Encoding %q, want %q", got, tc.wantCE)
			}
			if got := f.get("Vary"); (got == "Accept-Encoding") != tc.wantVar {
				t.Errorf("Vary %q, want Accept-Encoding: %v", got, tc.wantVar)
			}
			appEncoded := false
			for _, h := range hs {
				appEncoded = appEncoded || strings.EqualFold(string(h.Name), "Content-Encoding")
			}
			compressed := tc.wantCE != "" && !appEncoded
			switch {
			case compressed:
				if f.length != -1 || f.has("Content-Length") {
					t.Errorf("compressed with length %d, Content-Length field %v", f.length, f.has("Content-Length"))
				}
				if tc.method != "HEAD" {
					if got := decode(t, tc.wantCE, f.body.Bytes()); !bytes.Equal(got, tc.body) {
						t.Errorf("decoded %q", got)
					}
				} else if f.body.Len() != 0 {
					t.Errorf("HEAD: %d body bytes", f.body.Len())
				}
			default:
				// Untouched but for Vary: the length and the bytes as written.
				if f.length != cl || !bytes.Equal(f.body.Bytes(), tc.body) {
					t.Errorf("passed through with length %d (want %d) and %d bytes (want %d)", f.length, cl, f.body.Len(), len(tc.body))
				}
				wantFields := len(hs)
				if tc.wantVar {
					wantFields++
				}
				if len(f.headers) != wantFields {
					t.Errorf("%d header fields, want %d: %q", len(f.headers), wantFields, f.headers)
				}
			}
		})
	}
}
