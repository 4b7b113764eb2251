package h2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/krait-server/krait/internal/exchange"
)

// handlerFunc adapts a function to exchange.Handler.
type handlerFunc func(w exchange.ResponseWriter, r *exchange.Request)

func (f handlerFunc) Serve(w exchange.ResponseWriter, r *exchange.Request) { f(w, r) }

// selfSigned returns a certificate for 127.0.0.1/localhost and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

type fixture struct {
	srv    *Server
	addr   string
	client *http.Client
}

// start serves h over TLS (tlsOn) or cleartext with h2c, and returns a
// client speaking HTTP/2 (h2) or HTTP/1.1.
func start(t *testing.T, h exchange.Handler, cfg Config, h2 bool) *fixture {
	t.Helper()
	cert, pool := selfSigned(t)
	if cfg.TLS != nil {
		cfg.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s, err := New(h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve returned %v after Shutdown, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	})
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: h2}
	var p http.Protocols
	switch {
	case cfg.TLS != nil && h2:
		p.SetHTTP2(true)
	case cfg.TLS == nil && h2:
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
	}
	tr.Protocols = &p
	t.Cleanup(tr.CloseIdleConnections)
	return &fixture{srv: s, addr: l.Addr().String(), client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (f *fixture) url(tlsOn bool, path string) string {
	if tlsOn {
		return "https://" + f.addr + path
	}
	return "http://" + f.addr + path
}

func headerMap(hs []exchange.Header) map[string][]string {
	m := map[string][]string{}
	for _, h := range hs {
		m[string(h.Name)] = append(m[string(h.Name)], string(h.Value))
	}
	return m
}

// TestRequestView checks the exchange.Request built from HTTP/2 over TLS,
// HTTP/1.1 over TLS and h2c: protocol version, target split, Host first,
// repeated fields in order, scheme, addresses.
func TestRequestView(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tls, h2 bool
		major   int
		scheme  string
	}{
		{"h2-tls", true, true, 2, "https"},
		{"h1-tls", true, false, 1, "https"},
		{"h2c", false, true, 2, "http"},
		{"h1-clear", false, false, 1, "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type seen struct {
				major, minor                int
				method, target, path, query string
				host, scheme, remote, local string
				remotePort, localPort       int
				headers                     []exchange.Header
				canHijack                   bool
			}
			got := make(chan seen, 1)
			h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
				var hs []exchange.Header
				for _, f := range r.Headers {
					hs = append(hs, exchange.Header{Name: bytes.Clone(f.Name), Value: bytes.Clone(f.Value)})
				}
				got <- seen{r.ProtoMajor, r.ProtoMinor, string(r.Method), string(r.Target), string(r.Path), string(r.Query),
					string(r.Host), r.Scheme, r.RemoteAddr, r.LocalAddr, r.RemotePort, r.LocalPort, hs, exchange.CanHijack(w)}
				_ = w.WriteHeader(200, nil, nil, 0)
			})
			var cfg Config
			if tc.tls {
				cfg.TLS = &tls.Config{}
			} else {
				cfg.Cleartext = true
			}
			f := start(t, h, cfg, tc.h2)
			req, _ := http.NewRequest("GET", f.url(tc.tls, "/a%20b/c?x=1&y=%2F"), nil)
			req.Header.Add("X-Multi", "one")
			req.Header.Add("X-Multi", "two")
			req.Header.Set("X-Single", "v")
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.ProtoMajor != tc.major {
				t.Fatalf("response protocol %s, want major %d", resp.Proto, tc.major)
			}
			s := <-got
			if s.major != tc.major || (tc.major == 2 && s.minor != 0) || (tc.major == 1 && s.minor != 1) {
				t.Errorf("ProtoMajor/Minor = %d/%d, want %d", s.major, s.minor, tc.major)
			}
			if s.method != "GET" || s.target != "/a%20b/c?x=1&y=%2F" || s.path != "/a%20b/c" || s.query != "x=1&y=%2F" {
				t.Errorf("method/target/path/query = %q %q %q %q", s.method, s.target, s.path, s.query)
			}
			if s.host != f.addr || s.scheme != tc.scheme {
				t.Errorf("host %q scheme %q, want %q %q", s.host, s.scheme, f.addr, tc.scheme)
			}
			if s.remote != "127.0.0.1" || s.remotePort == 0 || s.local != "127.0.0.1" || s.localPort == 0 {
				t.Errorf("remote %s:%d local %s:%d", s.remote, s.remotePort, s.local, s.localPort)
			}
			if len(s.headers) == 0 || string(s.headers[0].Name) != "Host" || string(s.headers[0].Value) != f.addr {
				t.Errorf("first header = %q, want Host: %s", s.headers, f.addr)
			}
			m := headerMap(s.headers)
			if fmt.Sprint(m["X-Multi"]) != "[one two]" || fmt.Sprint(m["X-Single"]) != "[v]" {
				t.Errorf("headers %v", m)
			}
			if s.canHijack != (tc.major == 1) {
				t.Errorf("CanHijack = %v on HTTP/%d", s.canHijack, tc.major)
			}
		})
	}
}

// TestStreamingBothWays echoes each request chunk as a response chunk
// while the request is still being sent: full duplex over HTTP/2, then a
// large body through the flow-control windows.
func TestStreamingBothWays(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if err := w.WriteHeader(200, nil, []exchange.Header{{Name: []byte("content-type"), Value: []byte("application/octet-stream")}}, -1); err != nil {
			t.Error(err)
			return
		}
		_ = w.Flush() // the client's Do returns on the headers
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					t.Errorf("write: %v", werr)
					return
				}
				if ferr := w.Flush(); ferr != nil {
					t.Errorf("flush: %v", ferr)
					return
				}
			}
			if err == io.EOF {
				return
			}
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
		}
	})
	f := start(t, h, Config{TLS: &tls.Config{}}, true)

	t.Run("duplex", func(t *testing.T) {
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("POST", f.url(true, "/echo"), pr)
		resp, err := f.client.Do(req) // returns once the headers are in: the body is still open
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("proto %s", resp.Proto)
		}
		for i := range 5 {
			msg := fmt.Sprintf("chunk-%d;", i)
			if _, err := pw.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(resp.Body, got); err != nil {
				t.Fatalf("chunk %d: %v", i, err)
			}
			if string(got) != msg {
				t.Fatalf("echo %q, want %q", got, msg)
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
			t.Fatalf("after the end: %q %v", rest, err)
		}
	})
	t.Run("large", func(t *testing.T) {
		const size = 8 << 20 // far beyond the 64 KiB initial window
		payload := bytes.Repeat([]byte("0123456789abcdef"), size/16)
		resp, err := f.client.Post(f.url(true, "/echo"), "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		got, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("echoed %d bytes, want %d identical", len(got), len(payload))
		}
	})
}

// TestTrailers: request trailers reach Request.Trailers at EOF, response
// trailers reach the client, on HTTP/2 (no chunked coding needed) and on
// HTTP/1.1 chunked.
func TestTrailers(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			got := make(chan map[string][]string, 1)
			h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				got <- headerMap(r.Trailers)
				_ = w.WriteHeader(200, nil, []exchange.Header{{Name: []byte("Trailer"), Value: []byte("X-Checksum")}}, -1)
				_, _ = w.Write([]byte("body"))
				if err := exchange.WriteTrailers(w, []exchange.Header{{Name: []byte("x-checksum"), Value: []byte("abc")}}); err != nil {
					t.Error(err)
				}
				if _, err := w.Write([]byte("more")); err == nil {
					t.Error("Write after WriteTrailers succeeded")
				}
			})
			f := start(t, h, Config{TLS: &tls.Config{}}, h2)
			req, _ := http.NewRequest("POST", f.url(true, "/"), io.MultiReader(strings.NewReader("up")))
			req.ContentLength = -1
			req.Trailer = http.Header{"X-Req-Sum": {"42"}}
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "body" {
				t.Errorf("body %q", b)
			}
			if v := resp.Trailer.Get("X-Checksum"); v != "abc" {
				t.Errorf("response trailer X-Checksum = %q, want abc (trailers %v)", v, resp.Trailer)
			}
			if m := <-got; fmt.Sprint(m["X-Req-Sum"]) != "[42]" {
				t.Errorf("request trailers %v", m)
			}
		})
	}
}

// TestAbort: an aborted response is incomplete for the client: a stream
// reset on HTTP/2, a connection closed before the last chunk on HTTP/1.1.
func TestAbort(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			var writeErr error
			done := make(chan struct{})
			h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
				defer close(done)
				_ = w.WriteHeader(200, nil, nil, -1)
				_, _ = w.Write([]byte("partial"))
				_ = w.Flush()
				w.Abort()
				_, writeErr = w.Write([]byte("after"))
			})
			f := start(t, h, Config{TLS: &tls.Config{}}, h2)
			resp, err := f.client.Get(f.url(true, "/"))
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("read the aborted body to a clean end: %q", b)
			}
			if string(b) != "partial" {
				t.Errorf("got %q before the error, want %q", b, "partial")
			}
			<-done
			if !errors.Is(writeErr, errAborted) {
				t.Errorf("Write after Abort = %v, want errAborted", writeErr)
			}
			// The server goes on serving (on HTTP/2, the same connection).
			resp2, err := f.client.Get(f.url(true, "/"))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp2.Body)
				resp2.Body.Close()
			}
		})
	}
}

// TestEarlyHints: a 103 reaches the client with its Link field, which does
// not leak into the final response; HSTS is on the final response only.
func TestEarlyHints(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if err := w.WriteHeader(103, nil, []exchange.Header{{Name: []byte("Link"), Value: []byte("</s.css>; rel=preload")}}, -1); err != nil {
			t.Error(err)
		}
		_ = w.WriteHeader(200, []byte("Fine"), []exchange.Header{{Name: []byte("X-Final"), Value: []byte("1")}, {Name: []byte("Connection"), Value: []byte("keep-alive")}}, 2)
		_, _ = w.Write([]byte("ok"))
	})
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			f := start(t, h, Config{TLS: &tls.Config{}, HSTS: 3600 * time.Second}, h2)
			var mu sync.Mutex
			var hints []textproto.MIMEHeader
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				if code == 103 {
					hints = append(hints, hdr)
				}
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", f.url(true, "/"), nil)
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			defer mu.Unlock()
			if len(hints) != 1 || hints[0].Get("Link") != "</s.css>; rel=preload" {
				t.Errorf("103 hints %v, want one with the Link", hints)
			}
			if len(hints) == 1 && hints[0].Get("Strict-Transport-Security") != "" {
				t.Errorf("HSTS on the 103")
			}
			if resp.StatusCode != 200 || string(b) != "ok" || resp.Header.Get("Link") != "" || resp.Header.Get("X-Final") != "1" {
				t.Errorf("final %d %q headers %v", resp.StatusCode, b, resp.Header)
			}
			if resp.ContentLength != 2 {
				t.Errorf("Content-Length %d, want 2", resp.ContentLength)
			}
			if v := resp.Header.Get("Strict-Transport-Security"); v != "max-age=3600" {
				t.Errorf("HSTS %q, want max-age=3600", v)
			}
		})
	}
}

// TestNoBodyResponses: body bytes of HEAD and 204 are counted, not sent,
// and a handler that writes nothing gets a 500.
func TestNoBodyResponses(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		switch string(r.Path) {
		case "/204":
			_ = w.WriteHeader(204, nil, nil, -1)
		case "/none":
			return
		default:
			_ = w.WriteHeader(200, nil, nil, 5)
		}
		if n, err := w.Write([]byte("hello")); n != 5 || err != nil {
			t.Errorf("%s %s: Write = %d, %v", r.Method, r.Path, n, err)
		}
	})
	f := start(t, h, Config{TLS: &tls.Config{}}, true)
	for _, c := range []struct {
		method, path string
		status       int
	}{{"HEAD", "/", 200}, {"GET", "/204", 204}, {"GET", "/none", 500}} {
		req, _ := http.NewRequest(c.method, f.url(true, c.path), nil)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || len(b) != 0 {
			t.Errorf("%s %s: %d %q, want %d and no body", c.method, c.path, resp.StatusCode, b, c.status)
		}
	}
}

// TestSettingsLimits reads the server's SETTINGS frame on an h2c
// connection: the stream and header-list limits are announced.
func TestSettingsLimits(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) { _ = w.WriteHeader(200, nil, nil, 0) })
	f := start(t, h, Config{Cleartext: true, MaxConcurrentStreams: 7, MaxHeaderBytes: 16 << 10}, true)
	c, err := net.DialTimeout("tcp", f.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	frame, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := frame.(*http2.SettingsFrame)
	if !ok {
		t.Fatalf("first frame %T, want SETTINGS", frame)
	}
	if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != 7 {
		t.Errorf("MAX_CONCURRENT_STREAMS = %d (%v), want 7", v, ok)
	}
	if v, ok := sf.Value(http2.SettingMaxFrameSize); !ok || v != 16<<10 {
		t.Errorf("MAX_FRAME_SIZE = %d (%v), want 16384", v, ok)
	}
	if v, ok := sf.Value(http2.SettingMaxHeaderListSize); !ok || v < 16<<10 || v > 20<<10 {
		t.Errorf("MAX_HEADER_LIST_SIZE = %d (%v), want about 16 KiB", v, ok)
	}
}

// TestRedirect: GET and HEAD get 301, other methods 308, to the same
// path and query on https at the TLS port.
func TestRedirect(t *testing.T) {
	r := NewRedirect("8443", time.Second*10, time.Second*10, nil)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.Serve(l) }()
	defer r.Close()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 30 * time.Second}
	for _, c := range []struct {
		method string
		status int
	}{{"GET", 301}, {"HEAD", 301}, {"POST", 308}} {
		req, _ := http.NewRequest(c.method, "http://"+l.Addr().String()+"/p/a%20th?q=1", strings.NewReader(""))
		req.Host = "example.test:8080"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Location") != "https://example.test:8443/p/a%20th?q=1" {
			t.Errorf("%s: %d Location %q", c.method, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// TestDisableHTTP2: with HTTP/2 off, a client offering h2 and http/1.1
// by ALPN gets HTTP/1.1.
func TestDisableHTTP2(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) { _ = w.WriteHeader(204, nil, nil, -1) })
	f := start(t, h, Config{TLS: &tls.Config{}, DisableHTTP2: true}, true)
	f.client.Transport.(*http.Transport).Protocols = nil // offer both
	f.client.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	resp, err := f.client.Get(f.url(true, "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 1 || resp.TLS.NegotiatedProtocol == "h2" {
		t.Fatalf("over %s (ALPN %q), want HTTP/1.1", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
}

// TestContextCancelledWhenClientGoes: Request.Context is cancelled when
// the client cancels the request (HTTP/2 RST_STREAM) or closes the
// connection (HTTP/1.1).
func TestContextCancelledWhenClientGoes(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			started := make(chan struct{})
			cancelled := make(chan error, 1)
			h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if r.Watch != nil {
					r.Watch()
				}
				_ = w.WriteHeader(200, nil, nil, -1)
				_ = w.Flush()
				close(started)
				select {
				case <-r.Context().Done():
					cancelled <- r.Context().Err()
				case <-time.After(15 * time.Second):
					cancelled <- errors.New("the context was not cancelled within 15s")
				}
			})
			f := start(t, h, Config{TLS: &tls.Config{}}, h2)
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, "GET", f.url(true, "/"), nil)
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			<-started
			cancel()
			resp.Body.Close()
			f.client.Transport.(*http.Transport).CloseIdleConnections()
			if err := <-cancelled; !errors.Is(err, context.Canceled) {
				t.Fatalf("context: %v, want context.Canceled", err)
			}
		})
	}
}

// TestShutdownLetsStreamsFinish: Shutdown waits for a request in flight
// on an HTTP/2 connection, which completes, then returns nil; Serve
// returns nil.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	cert, pool := selfSigned(t)
	started, release := make(chan struct{}), make(chan struct{})
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		close(started)
		<-release
		_ = w.WriteHeader(200, nil, nil, 4)
		_, _ = w.Write([]byte("done"))
	})
	s, err := New(h, Config{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	var p http.Protocols
	p.SetHTTP2(true)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	type result struct {
		body  string
		proto int
		err   error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Get("https://" + l.Addr().String() + "/")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{string(b), resp.ProtoMajor, err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.err != nil || r.body != "done" || r.proto != 2 {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
