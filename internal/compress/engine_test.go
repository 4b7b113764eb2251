package compress_test

import (
	"bytes"
	stdgzip "compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"

	"github.com/krait-server/krait/internal/compress"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/h1"
)

type handlerFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f handlerFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

func page(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "<tr><td>%d</td><td>row %d</td><td>%d.%02d EUR</td></tr>\n", i, i, i*13%997, i%100)
	}
	return b.Bytes()[:n]
}

// startEngine serves h behind the compressor with krait's HTTP/1.1 engine
// on a free loopback port.
func startEngine(t *testing.T, h exchange.Handler) string {
	t.Helper()
	c, err := compress.New(compress.Defaults())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := h1.New(c.Wrap(h), h1.Config{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	return "http://" + l.Addr().String()
}

// client never decodes by itself (DisableCompression) and keeps one
// connection, so several requests share it.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true, MaxConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func get(t *testing.T, cl *http.Client, method, url, ae string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func decoder(t *testing.T, ce string, r io.Reader) io.Reader {
	t.Helper()
	switch ce {
	case "gzip":
		zr, err := stdgzip.NewReader(r)
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

// TestThroughEngine: compressed and plain responses on one keep-alive
// connection of the real HTTP/1.1 engine, as a client sees them.
func TestThroughEngine(t *testing.T) {
	body := page(20000)
	url := startEngine(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		hs := []exchange.Header{
			{Name: []byte("Content-Type"), Value: []byte("text/html; charset=utf-8")},
			{Name: []byte("Content-Length"), Value: []byte("20000")},
			{Name: []byte("ETag"), Value: []byte(`"rev7"`)},
		}
		if err := w.WriteHeader(200, nil, hs, 20000); err != nil {
			t.Error(err)
			return
		}
		_, _ = w.Write(body)
	}))
	cl := client(t)
	for _, tc := range []struct{ method, ae, wantCE string }{
		{"GET", "gzip, deflate, br, zstd", "zstd"},
		{"GET", "gzip, deflate, br", "br"},
		{"GET", "gzip", "gzip"},
		{"GET", "", ""},
		{"GET", "identity", ""},
		{"HEAD", "gzip", "gzip"},
		{"HEAD", "", ""},
		{"GET", "br;q=0, gzip;q=0.5, zstd;q=0.4", "gzip"},
	} {
		resp := get(t, cl, tc.method, url+"/", tc.ae)
		raw, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s %q: %v", tc.method, tc.ae, err)
		}
		what := fmt.Sprintf("%s with Accept-Encoding %q", tc.method, tc.ae)
		if got := resp.Header.Get("Content-Encoding"); got != tc.wantCE {
			t.Fatalf("%s: Content-Encoding %q, want %q", what, got, tc.wantCE)
		}
		if got := resp.Header.Values("Vary"); len(got) != 1 || got[0] != "Accept-Encoding" {
			t.Errorf("%s: Vary %q", what, got)
		}
		switch {
		case tc.method == "HEAD" && tc.wantCE != "":
			if len(raw) != 0 || resp.Header.Get("Content-Length") != "" || resp.Header.Get("ETag") != `W/"rev7"` {
				t.Errorf("%s: %d body bytes, Content-Length %q, ETag %q", what, len(raw), resp.Header.Get("Content-Length"), resp.Header.Get("ETag"))
			}
		case tc.method == "HEAD":
			if len(raw) != 0 || resp.Header.Get("Content-Length") != "20000" {
				t.Errorf("%s: %d body bytes, Content-Length %q", what, len(raw), resp.Header.Get("Content-Length"))
			}
		case tc.wantCE == "":
			if resp.ContentLength != 20000 || !bytes.Equal(raw, body) || resp.Header.Get("ETag") != `"rev7"` {
				t.Errorf("%s: length %d, %d bytes, ETag %q", what, resp.ContentLength, len(raw), resp.Header.Get("ETag"))
			}
		default:
			if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("%s: length %d, Transfer-Encoding %q; want chunked", what, resp.ContentLength, resp.TransferEncoding)
			}
			if resp.Header.Get("ETag") != `W/"rev7"` {
				t.Errorf("%s: ETag %q", what, resp.Header.Get("ETag"))
			}
			got, err := io.ReadAll(decoder(t, tc.wantCE, bytes.NewReader(raw)))
			if err != nil || !bytes.Equal(got, body) {
				t.Errorf("%s: decoded %d bytes (%v), want %d", what, len(got), err, len(body))
			}
			if len(raw) > len(body)/3 {
				t.Errorf("%s: %d bytes compressed to %d", what, len(body), len(raw))
			}
		}
	}
}

// TestStreamingThroughEngine: a streamed, compressed response reaches the
// client event by event: the client decodes the first event while the
// handler is still waiting to write the second.
func TestStreamingThroughEngine(t *testing.T) {
	next := make(chan struct{})
	url := startEngine(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		hs := []exchange.Header{{Name: []byte("Content-Type"), Value: []byte("text/event-stream")}}
		if err := w.WriteHeader(200, nil, hs, -1); err != nil {
			t.Error(err)
			return
		}
		_, _ = io.WriteString(w, "data: first\n\n")
		_ = w.Flush()
		select {
		case <-next:
		case <-time.After(15 * time.Second):
			t.Error("the client never decoded the first event")
			return
		}
		_, _ = io.WriteString(w, "data: second\n\n")
	}))
	for _, ce := range []string{"zstd", "br", "gzip"} {
		t.Run(ce, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", url+"/events", nil)
			req.Header.Set("Accept-Encoding", ce)
			resp, err := client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Header.Get("Content-Encoding") != ce {
				t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
			}
			r := decoder(t, ce, resp.Body)
			first := make([]byte, len("data: first\n\n"))
			if _, err := io.ReadFull(r, first); err != nil || string(first) != "data: first\n\n" {
				t.Fatalf("first event: %q, %v", first, err)
			}
			select {
			case next <- struct{}{}:
			case <-ctx.Done():
				t.Fatal("the handler stopped waiting for the client")
			}
			rest, err := io.ReadAll(r)
			if err != nil || string(rest) != "data: second\n\n" {
				t.Fatalf("rest: %q, %v", rest, err)
			}
		})
	}
}

// TestTrailersAndAbortThroughEngine: trailers follow a complete compressed
// stream; an aborted compressed response is cut, not ended cleanly.
func TestTrailersAndAbortThroughEngine(t *testing.T) {
	body := page(9000)
	url := startEngine(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		hs := []exchange.Header{
			{Name: []byte("Content-Type"), Value: []byte("application/json")},
			{Name: []byte("Trailer"), Value: []byte("X-Checksum")},
		}
		if err := w.WriteHeader(200, nil, hs, -1); err != nil {
			t.Error(err)
			return
		}
		_, _ = w.Write(body)
		if strings.HasSuffix(string(r.Path), "/abort") {
			_ = w.Flush()
			w.Abort()
			return
		}
		if err := exchange.WriteTrailers(w, []exchange.Header{{Name: []byte("X-Checksum"), Value: []byte("abc")}}); err != nil {
			t.Error(err)
		}
	}))
	cl := client(t)
	resp := get(t, cl, "GET", url+"/trailers", "gzip")
	got, err := io.ReadAll(decoder(t, "gzip", resp.Body))
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("decoded %d bytes, %v", len(got), err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Trailer.Get("X-Checksum") != "abc" {
		t.Fatalf("trailers %v", resp.Trailer)
	}

	resp = get(t, cl, "GET", url+"/abort", "gzip")
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("an aborted response read cleanly (%d bytes)", len(raw))
	}
	if _, err := io.ReadAll(decoder(t, "gzip", bytes.NewReader(raw))); err == nil {
		t.Fatal("the bytes of an aborted response decode as a complete stream")
	}
}
