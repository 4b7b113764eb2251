package compress

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/krait-server/krait/internal/exchange"
)

// streamReader returns a decoder reading the coding ce from r, as a client
// reads a response still arriving.
func streamReader(t *testing.T, ce string, r io.Reader) io.Reader {
	t.Helper()
	switch ce {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatalf("gzip header: %v", err)
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
	t.Fatalf("unknown coding %q", ce)
	return nil
}

// TestFlushStreams: after each Flush, what the engine got decodes to
// exactly what was written so far, before the response ends.
func TestFlushStreams(t *testing.T) {
	c := newC(t, nil)
	for _, ce := range []string{"zstd", "br", "gzip"} {
		t.Run(ce, func(t *testing.T) {
			events := []string{"data: one\n\n", "data: two\n\n", "data: three\n\n"}
			var fake *fakeRW
			var checked int
			f := &fakeRW{}
			fake = f
			h := c.Wrap(handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) {
				if err := w.WriteHeader(200, nil, hdrs("Content-Type", "text/event-stream"), -1); err != nil {
					t.Fatal(err)
				}
				var sofar string
				for _, e := range events {
					if _, err := io.WriteString(w, e); err != nil {
						t.Fatal(err)
					}
					if err := w.Flush(); err != nil {
						t.Fatal(err)
					}
					sofar += e
					// Decode what the engine has now, the stream unfinished.
					got := make([]byte, len(sofar))
					r := streamReader(t, ce, bytes.NewReader(bytes.Clone(fake.body.Bytes())))
					if _, err := io.ReadFull(r, got); err != nil || string(got) != sofar {
						t.Fatalf("after Flush: decoded %q, %v; want %q", got, err, sofar)
					}
					checked++
				}
			}))
			h.Serve(f, request("GET", ce))
			if checked != len(events) || f.flushes != len(events) {
				t.Fatalf("checked %d flushes, engine flushed %d times; want %d", checked, f.flushes, len(events))
			}
			if got := decode(t, ce, f.body.Bytes()); string(got) != strings.Join(events, "") {
				t.Fatalf("whole stream decoded to %q", got)
			}
		})
	}
}

func TestSendFile(t *testing.T) {
	c := newC(t, nil)
	data := text(100 << 10)
	path := filepath.Join(t.TempDir(), "page.html")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name         string
		ae           string
		ctype        string
		off, count   int64
		want         []byte
		wantCE       string
		wantEngineSF int // SendFile calls reaching the engine
	}{
		{"compressed range", "zstd", "text/html", 1000, 50000, data[1000:51000], "zstd", 0},
		{"compressed to EOF", "br", "text/html", 7, -1, data[7:], "br", 0},
		{"not accepted: sendfile", "", "text/html", 0, -1, data, "", 1},
		{"not compressible: sendfile", "gzip", "image/png", 0, -1, data, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer file.Close()
			var ae []string
			if tc.ae != "" {
				ae = []string{tc.ae}
			}
			var n int64
			f := serve(c, request("GET", ae...), func(w exchange.ResponseWriter) {
				if err := w.WriteHeader(200, nil, hdrs("Content-Type", tc.ctype), -1); err != nil {
					t.Fatal(err)
				}
				n, err = w.SendFile(file, tc.off, tc.count)
			})
			if err != nil || n != int64(len(tc.want)) {
				t.Fatalf("SendFile: %d, %v; want %d", n, err, len(tc.want))
			}
			if f.files != tc.wantEngineSF || f.get("Content-Encoding") != tc.wantCE {
				t.Fatalf("engine SendFile calls %d, Content-Encoding %q", f.files, f.get("Content-Encoding"))
			}
			got := f.body.Bytes()
			if tc.wantCE != "" {
				got = decode(t, tc.wantCE, got)
			}
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("body of %d bytes, want %d", len(got), len(tc.want))
			}
		})
	}

	t.Run("file shorter than count", func(t *testing.T) {
		file, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		var serr error
		f := serve(c, request("GET", "gzip"), func(w exchange.ResponseWriter) {
			_ = w.WriteHeader(200, nil, hdrs("Content-Type", "text/plain"), -1)
			_, serr = w.SendFile(file, int64(len(data))-10, 100)
			if serr != nil {
				w.Abort()
			}
		})
		if !errors.Is(serr, io.ErrUnexpectedEOF) || !f.aborted {
			t.Fatalf("SendFile past EOF: %v, aborted %v", serr, f.aborted)
		}
	})
}

func TestVaryMerge(t *testing.T) {
	c := newC(t, nil)
	for _, tc := range []struct {
		name string
		ae   string
		vary []string // the app's Vary fields
		want string   // all Vary values, "|" between fields
	}{
		{"none", "gzip", nil, "Accept-Encoding"},
		{"one other", "gzip", []string{"Cookie"}, "Cookie, Accept-Encoding"},
		{"other, not compressed", "", []string{"Cookie, Accept-Language"}, "Cookie, Accept-Language, Accept-Encoding"},
		{"already there", "gzip", []string{"cookie, accept-encoding"}, "cookie, accept-encoding"},
		{"in a second field", "br", []string{"Cookie", "Accept-Encoding"}, "Cookie|Accept-Encoding"},
		{"star", "gzip", []string{"*"}, "*"},
		{"empty", "gzip", []string{""}, "Accept-Encoding"},
		{"two others", "gzip", []string{"Cookie", "Origin"}, "Cookie, Accept-Encoding|Origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs := hdrs("Content-Type", "text/plain")
			for _, v := range tc.vary {
				hs = append(hs, hdrs("Vary", v)...)
			}
			var ae []string
			if tc.ae != "" {
				ae = []string{tc.ae}
			}
			f := serve(c, request("GET", ae...), respond(200, hs, -1, []byte("x")))
			if got := f.get("Vary"); got != tc.want {
				t.Errorf("Vary %q, want %q", got, tc.want)
			}
			if wantCE := tc.ae; f.get("Content-Encoding") != wantCE {
				t.Errorf("Content-Encoding %q, want %q", f.get("Content-Encoding"), wantCE)
			}
		})
	}
}

// TestValidatorsAndRanges: compressing weakens a strong ETag and drops
// Accept-Ranges; not compressing leaves both.
func TestValidatorsAndRanges(t *testing.T) {
	c := newC(t, nil)
	for _, tc := range []struct {
		name, ae, etag string
		wantETag       string
		wantRanges     bool
	}{
		{"strong, compressed", "gzip", `"v1"`, `W/"v1"`, false},
		{"weak, compressed", "gzip", `W/"v1"`, `W/"v1"`, false},
		{"strong, not compressed", "identity", `"v1"`, `"v1"`, true},
		{"strong, absent Accept-Encoding", "", `"v1"`, `"v1"`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ae []string
			if tc.ae != "" {
				ae = []string{tc.ae}
			}
			body := text(3000)
			hs := hdrs("ETag", tc.etag, "Content-Type", "text/css", "Accept-Ranges", "bytes", "Content-Length", "3000")
			f := serve(c, request("GET", ae...), respond(200, hs, 3000, body))
			if got := f.get("ETag"); got != tc.wantETag {
				t.Errorf("ETag %q, want %q", got, tc.wantETag)
			}
			if f.has("Accept-Ranges") != tc.wantRanges {
				t.Errorf("Accept-Ranges present %v, want %v", f.has("Accept-Ranges"), tc.wantRanges)
			}
		})
	}
}

// TestInterim: 1xx responses pass unchanged; the final one decides.
func TestInterim(t *testing.T) {
	c := newC(t, nil)
	f := serve(c, request("GET", "gzip"), func(w exchange.ResponseWriter) {
		if err := w.WriteHeader(103, nil, hdrs("Link", "</a.css>; rel=preload"), -1); err != nil {
			t.Fatal(err)
		}
		respond(200, hdrs("Content-Type", "text/html"), -1, []byte("hello"))(w)
	})
	if len(f.interim) != 1 || f.interim[0] != 103 || f.get("Content-Encoding") != "gzip" {
		t.Fatalf("interim %v, Content-Encoding %q", f.interim, f.get("Content-Encoding"))
	}
	if string(decode(t, "gzip", f.body.Bytes())) != "hello" {
		t.Fatal("body")
	}
}

// TestImplicitHeader: a body written without WriteHeader passes through
// (the engine sends 200 without Content-Type: nothing to compress).
func TestImplicitHeader(t *testing.T) {
	c := newC(t, nil)
	f := serve(c, request("GET", "gzip"), func(w exchange.ResponseWriter) { _, _ = w.Write(text(5000)) })
	if f.body.Len() != 5000 || f.has("Content-Encoding") {
		t.Fatalf("%d bytes, Content-Encoding %q", f.body.Len(), f.get("Content-Encoding"))
	}
}

// TestUnwrapAndHijack: behind the compressor the engine's Hijacker stays
// reachable through the exchange helpers.
func TestUnwrapAndHijack(t *testing.T) {
	c := newC(t, nil)
	base := &hijackRW{}
	var inner exchange.ResponseWriter
	c.Wrap(handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) {
		inner = w
		if _, ok := w.(*writer); !ok {
			t.Fatalf("the handler got %T, not the compressing writer", w)
		}
		if exchange.Base(w) != exchange.ResponseWriter(base) {
			t.Fatalf("Base is %T", exchange.Base(w))
		}
		if !exchange.CanHijack(w) {
			t.Fatal("CanHijack is false behind the compressor")
		}
		if _, _, err := exchange.Hijack(w); err != nil {
			t.Fatal(err)
		}
		if !exchange.CanWriteTrailers(w) {
			t.Fatal("CanWriteTrailers is false behind the compressor")
		}
	})).Serve(base, request("GET", "gzip"))
	if base.hijacked != 1 || base.status != 0 || base.body.Len() != 0 {
		t.Fatalf("engine hijacked %d times, status %d, %d body bytes", base.hijacked, base.status, base.body.Len())
	}
	if inner == nil {
		t.Fatal("handler not run")
	}

	// A plain engine writer: nothing to hijack.
	c.Wrap(handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) {
		if exchange.CanHijack(w) {
			t.Error("CanHijack is true over a writer without Hijack")
		}
		if _, _, err := exchange.Hijack(w); !errors.Is(err, exchange.ErrNotSupported) {
			t.Errorf("Hijack: %v", err)
		}
	})).Serve(&fakeRW{}, request("GET", "gzip"))
}

// TestTrailers: the compressed stream ends before the trailers, and nothing
// follows them.
func TestTrailers(t *testing.T) {
	c := newC(t, nil)
	body := text(5000)
	f := serve(c, request("GET", "br"), func(w exchange.ResponseWriter) {
		respond(200, hdrs("Content-Type", "application/json"), -1, body)(w)
		if err := exchange.WriteTrailers(w, hdrs("Grpc-Status", "0")); err != nil {
			t.Fatal(err)
		}
	})
	if len(f.trailers) != 1 || f.atEnd != f.body.Len() {
		t.Fatalf("trailers %q after %d of %d bytes", f.trailers, f.atEnd, f.body.Len())
	}
	if got := decode(t, "br", f.body.Bytes()); !bytes.Equal(got, body) {
		t.Fatal("the stream before the trailers does not decode to the body")
	}
	if f.aborted {
		t.Fatal("aborted")
	}
}

func TestAbortAndLengths(t *testing.T) {
	c := newC(t, nil)
	ct := hdrs("Content-Type", "text/plain", "Content-Length", "5000")
	body := text(5000)

	t.Run("abort drops the tail", func(t *testing.T) {
		f := serve(c, request("GET", "gzip"), func(w exchange.ResponseWriter) {
			respond(200, hdrs("Content-Type", "text/plain"), -1, body[:3000])(w)
			_ = w.Flush()
			w.Abort()
		})
		if !f.aborted {
			t.Fatal("not aborted")
		}
		if _, err := io.ReadAll(streamReader(t, "gzip", bytes.NewReader(f.body.Bytes()))); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("an aborted stream reads to %v, want io.ErrUnexpectedEOF (no tail)", err)
		}
	})
	t.Run("short body aborts", func(t *testing.T) {
		f := serve(c, request("GET", "zstd"), respond(200, ct, 5000, body[:4000]))
		if !f.aborted {
			t.Fatal("a compressed body short of its Content-Length was ended cleanly")
		}
	})
	t.Run("exact body ends cleanly", func(t *testing.T) {
		f := serve(c, request("GET", "zstd"), respond(200, ct, 5000, body))
		if f.aborted || !bytes.Equal(decode(t, "zstd", f.body.Bytes()), body) {
			t.Fatalf("aborted %v", f.aborted)
		}
	})
	t.Run("long body fails", func(t *testing.T) {
		var n int
		var err error
		f := serve(c, request("GET", "gzip"), func(w exchange.ResponseWriter) {
			_ = w.WriteHeader(200, nil, ct, 5000)
			n, err = w.Write(append(bytes.Clone(body), "extra"...))
		})
		if n != 5000 || !errors.Is(err, ErrBodyTooLong) {
			t.Fatalf("Write: %d, %v", n, err)
		}
		if got := decode(t, "gzip", f.body.Bytes()); !bytes.Equal(got, body) {
			t.Fatalf("decoded %d bytes", len(got))
		}
	})
}

// TestPooledWriterReuse: one Compressor serving many responses in turn,
// with every coding and outcome interleaved, never mixes them up.
func TestPooledWriterReuse(t *testing.T) {
	c := newC(t, nil)
	for i := 0; i < 60; i++ {
		ce := []string{"zstd", "br", "gzip", ""}[i%4]
		body := text(1500 + i*97)
		var ae []string
		if ce != "" {
			ae = []string{ce}
		}
		hs := hdrs("Content-Type", "text/html", "ETag", `"e"`)
		if i%3 == 0 {
			hs = append(hs, hdrs("Vary", "Cookie")...)
		}
		f := serve(c, request("GET", ae...), respond(200, hs, -1, body))
		if f.get("Content-Encoding") != ce {
			t.Fatalf("response %d: Content-Encoding %q, want %q", i, f.get("Content-Encoding"), ce)
		}
		got := f.body.Bytes()
		if ce != "" {
			got = decode(t, ce, got)
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("response %d: wrong body", i)
		}
	}
}

func TestConfig(t *testing.T) {
	if _, err := New(Defaults()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"unknown coding", func(c *Config) { c.Codings = []string{"gzip", "deflate"} }, `unknown coding "deflate"`},
		{"duplicate coding", func(c *Config) { c.Codings = []string{"br", "br"} }, `"br" listed twice`},
		{"negative size", func(c *Config) { c.MinSize = -1 }, "negative"},
		{"gzip level", func(c *Config) { c.GzipLevel = 0 }, "gzip level 0"},
		{"brotli level", func(c *Config) { c.BrotliLevel = 12 }, "brotli level 12"},
		{"zstd level", func(c *Config) { c.ZstdLevel = 23 }, "zstd level 23"},
		{"type without slash", func(c *Config) { c.Types = []string{"json"} }, `"json"`},
		{"wildcard type", func(c *Config) { c.Types = []string{"*/*"} }, `"*/*"`},
		{"inner star", func(c *Config) { c.Types = []string{"text/x*"} }, `"text/x*"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Defaults()
			tc.mod(&cfg)
			_, err := New(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %s", err, tc.want)
			}
		})
	}
	// A disabled coding's level is not checked; no codings means no wrapper.
	cfg := Defaults()
	cfg.Codings, cfg.GzipLevel = []string{"br"}, 0
	if _, err := New(cfg); err != nil {
		t.Fatalf("level of a disabled coding: %v", err)
	}
	cfg.Codings = nil
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := handlerFunc(func(exchange.ResponseWriter, *exchange.Request) {})
	if _, wrapped := c.Wrap(h).(*handler); wrapped {
		t.Fatal("with no codings Wrap still wraps")
	}
	// Custom types and order.
	c = newC(t, func(cfg *Config) {
		cfg.Types, cfg.Codings, cfg.MinSize = []string{"application/x-custom"}, []string{"gzip", "zstd"}, 0
	})
	f := serve(c, request("GET", "zstd, gzip"), respond(200, hdrs("Content-Type", "application/x-custom"), 1, []byte("x")))
	if f.get("Content-Encoding") != "gzip" {
		t.Fatalf("custom config: Content-Encoding %q", f.get("Content-Encoding"))
	}
	f = serve(c, request("GET", "gzip"), respond(200, hdrs("Content-Type", "text/html"), -1, []byte("x")))
	if f.has("Content-Encoding") || f.has("Vary") {
		t.Fatal("text/html compressed though not configured")
	}
}

// nopRW is an engine writer that keeps nothing, for allocation counts.
type nopRW struct{}

func (nopRW) WriteHeader(int, []byte, []exchange.Header, int64) error { return nil }
func (nopRW) Write(p []byte) (int, error)                             { return len(p), nil }
func (nopRW) SendFile(*os.File, int64, int64) (int64, error)          { return 0, nil }
func (nopRW) Flush() error                                            { return nil }
func (nopRW) Abort()                                                  {}

func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	c := newC(t, nil)
	body := text(4000)
	for _, tc := range []struct {
		name  string
		ae    string
		ctype string
		max   float64
	}{
		{"not compressible", "gzip, br, zstd", "image/png", 0},
		{"eligible, identity (Vary added)", "identity", "text/html", 0},
		{"eligible, no Accept-Encoding", "", "text/html", 0},
		// The encoders are pooled: a compressed response allocates
		// only what the libraries do per stream (zstd: 2).
		{"gzip", "gzip", "text/html", 1},
		{"br", "br", "text/html", 1},
		{"zstd", "zstd", "text/html", 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ae []string
			if tc.ae != "" {
				ae = []string{tc.ae}
			}
			r := request("GET", ae...)
			hs := hdrs("Content-Type", tc.ctype, "Content-Length", "4000", "ETag", `"x"`, "Vary", "Cookie")
			h := c.Wrap(handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) {
				_ = w.WriteHeader(200, nil, hs, 4000)
				_, _ = w.Write(body)
			}))
			h.Serve(nopRW{}, r) // warm the pools
			if n := testing.AllocsPerRun(200, func() { h.Serve(nopRW{}, r) }); n > tc.max {
				t.Errorf("%v allocations per response, want at most %v", n, tc.max)
			}
		})
	}
}

func BenchmarkCompress(b *testing.B) {
	c := newC(b, nil)
	body := text(16 << 10)
	for _, ae := range []string{"", "gzip", "br", "zstd"} {
		name := ae
		if name == "" {
			name = "identity"
		}
		b.Run(name, func(b *testing.B) {
			var ael []string
			if ae != "" {
				ael = []string{ae}
			}
			r := request("GET", ael...)
			hs := hdrs("Content-Type", "text/html; charset=utf-8", "Content-Length", "16384")
			h := c.Wrap(handlerFunc(func(w exchange.ResponseWriter, _ *exchange.Request) {
				_ = w.WriteHeader(200, nil, hs, int64(len(body)))
				_, _ = w.Write(body)
			}))
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				h.Serve(nopRW{}, r)
			}
		})
	}
}
