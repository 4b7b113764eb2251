package h2

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/krait-server/krait/internal/exchange"
)

var (
	errAborted     = errors.New("h2: response aborted")
	errHeaderTwice = errors.New("h2: WriteHeader after the final status")
	errBodyDone    = errors.New("h2: write after the trailers")
	errHijacked    = errors.New("h2: the header was already written")
)

// ServeHTTP adapts one net/http exchange to the exchange.Handler.
func (s *Server) ServeHTTP(hw http.ResponseWriter, r *http.Request) {
	req := newRequest(r)
	base := &writer{w: hw, rc: http.NewResponseController(hw), head: r.Method == http.MethodHead}
	if s.hsts != "" && r.TLS != nil {
		base.hsts = s.hsts
	}
	var w exchange.ResponseWriter = base
	var hj *h1Writer
	if r.ProtoMajor == 1 {
		hj = &h1Writer{writer: base}
		w = hj
	}
	s.h.Serve(w, req)
	if hj != nil && hj.conn != nil {
		// As internal/h1 does: the connection lives as long as the handler.
		_ = hj.conn.Close()
		return
	}
	if base.aborted.Load() {
		// Raised here, not in Abort: the handler's frames have returned.
		panic(http.ErrAbortHandler)
	}
	if !base.wroteHeader {
		hw.Header().Set("Content-Length", "0")
		hw.WriteHeader(http.StatusInternalServerError)
	}
}

// newRequest builds the exchange view of r.
func newRequest(r *http.Request) *exchange.Request {
	req := &exchange.Request{
		Method:        []byte(r.Method),
		Target:        []byte(r.RequestURI),
		ProtoMajor:    r.ProtoMajor,
		ProtoMinor:    r.ProtoMinor,
		Host:          []byte(r.Host),
		ContentLength: r.ContentLength,
		Scheme:        "http",
	}
	if r.TLS != nil {
		req.Scheme = "https"
	}
	switch t := r.RequestURI; {
	case strings.HasPrefix(t, "/"), t == "*":
		path, query, ok := strings.Cut(t, "?")
		req.Path = []byte(path)
		if ok {
			req.Query = []byte(query)
		}
	default: // absolute-form (HTTP/1.1 proxies), or CONNECT's authority
		req.Path = []byte(r.URL.EscapedPath())
		if r.URL.RawQuery != "" {
			req.Query = []byte(r.URL.RawQuery)
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		req.ContentLength = max(req.ContentLength, 0)
		req.Body = http.NoBody
	} else {
		req.Body = &body{r: r, req: req}
	}
	// net/http keeps fields in a map: sort the names so the order is at
	// least stable; Host first, where HTTP/1.1 clients put it.
	names := make([]string, 0, len(r.Header))
	n := 0
	for k, vs := range r.Header {
		names = append(names, k)
		n += len(vs)
	}
	slices.Sort(names)
	hs := make([]exchange.Header, 0, n+1)
	if r.Host != "" {
		hs = append(hs, exchange.Header{Name: []byte("Host"), Value: []byte(r.Host)})
	}
	for _, k := range names {
		for _, v := range r.Header[k] {
			hs = append(hs, exchange.Header{Name: []byte(k), Value: []byte(v)})
		}
	}
	req.Headers = hs
	req.RemoteAddr, req.RemotePort = splitAddr(r.RemoteAddr)
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		req.LocalAddr, req.LocalPort = splitAddr(la.String())
	}
	// net/http cancels the request's context when the client goes away
	// (or ServeHTTP returns): there is nothing more to watch.
	req.Ctx = r.Context()
	req.Watch = func() {}
	return req
}

func splitAddr(a string) (string, int) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0 // a unix socket peer
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

// body copies the request trailers into the exchange request at EOF.
type body struct {
	r    *http.Request
	req  *exchange.Request
	done bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.r.Body.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		for k, vs := range b.r.Trailer {
			for _, v := range vs {
				if v != "" {
					b.req.Trailers = append(b.req.Trailers, exchange.Header{Name: []byte(k), Value: []byte(v)})
				}
			}
		}
	}
	return n, err
}

// writer is the exchange.ResponseWriter over a net/http one (HTTP/2: no
// Hijack).
type writer struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	hsts string
	head bool

	wroteHeader bool
	noBody      bool // HEAD, 204, 304: bytes are counted, not sent
	trailers    bool // WriteTrailers was called
	aborted     atomic.Bool
}

// hopByHop are the fields HTTP/2 forbids and net/http manages on HTTP/1.1.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true,
}

func (w *writer) WriteHeader(status int, _ []byte, headers []exchange.Header, contentLength int64) error {
	if w.aborted.Load() {
		return errAborted
	}
	if w.wroteHeader {
		return errHeaderTwice
	}
	if status < 100 || status > 999 {
		return fmt.Errorf("h2: invalid status %d", status)
	}
	h := w.w.Header()
	clear(h) // a 103's fields must not reappear in the final response
	for _, f := range headers {
		k := http.CanonicalHeaderKey(string(f.Name))
		if hopByHop[k] {
			continue
		}
		h[k] = append(h[k], string(f.Value))
	}
	if status >= 200 {
		w.wroteHeader = true
		w.noBody = w.head || status == http.StatusNoContent || status == http.StatusNotModified
		if contentLength >= 0 && status != http.StatusNoContent && status != http.StatusNotModified {
			h.Set("Content-Length", strconv.FormatInt(contentLength, 10))
		}
		if w.hsts != "" {
			h.Set("Strict-Transport-Security", w.hsts)
		}
	}
	w.w.WriteHeader(status)
	return nil
}

func (w *writer) Write(p []byte) (int, error) {
	if w.aborted.Load() {
		return 0, errAborted
	}
	if w.trailers {
		return 0, errBodyDone
	}
	if !w.wroteHeader {
		if err := w.WriteHeader(http.StatusOK, nil, nil, -1); err != nil {
			return 0, err
		}
	}
	if w.noBody {
		return len(p), nil
	}
	n, err := w.w.Write(p)
	if err != nil {
		return n, fmt.Errorf("h2: writing the body: %w", err)
	}
	return n, nil
}

func (w *writer) SendFile(f *os.File, offset, count int64) (int64, error) {
	if w.aborted.Load() {
		return 0, errAborted
	}
	if !w.wroteHeader {
		if err := w.WriteHeader(http.StatusOK, nil, nil, -1); err != nil {
			return 0, err
		}
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, fmt.Errorf("h2: sendfile: %w", err)
	}
	var src io.Reader = f
	if count >= 0 {
		// An *io.LimitedReader over an *os.File keeps net/http's sendfile path.
		src = &io.LimitedReader{R: f, N: count}
	}
	if w.noBody {
		return io.Copy(io.Discard, src)
	}
	n, err := io.Copy(w.w, src)
	if err != nil {
		return n, fmt.Errorf("h2: sendfile: %w", err)
	}
	return n, nil
}

func (w *writer) Flush() error {
	if w.aborted.Load() {
		return errAborted
	}
	if err := w.rc.Flush(); err != nil {
		return fmt.Errorf("h2: flush: %w", err)
	}
	return nil
}

// Abort marks the response; the engine resets the stream (HTTP/2) or
// closes the connection (HTTP/1.1) once the handler returns.
func (w *writer) Abort() { w.aborted.Store(true) }

// WriteTrailers sends fields after the body: always on HTTP/2, with a
// chunked body on HTTP/1.1 (net/http drops them otherwise).
func (w *writer) WriteTrailers(fields []exchange.Header) error {
	if w.aborted.Load() {
		return errAborted
	}
	if !w.wroteHeader {
		if err := w.WriteHeader(http.StatusOK, nil, nil, -1); err != nil {
			return err
		}
	}
	w.trailers = true
	h := w.w.Header()
	for _, f := range fields {
		k := http.CanonicalHeaderKey(string(f.Name))
		h.Add(http.TrailerPrefix+k, string(f.Value))
	}
	return nil
}

// h1Writer adds Hijack for HTTP/1.1 exchanges (WebSocket upgrades).
type h1Writer struct {
	*writer
	conn net.Conn
}

func (w *h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.wroteHeader {
		return nil, nil, errHijacked
	}
	c, brw, err := w.rc.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("h2: hijack: %w", err)
	}
	w.conn = c
	return c, brw, nil
}

var (
	_ exchange.ResponseWriter = (*writer)(nil)
	_ exchange.TrailerWriter  = (*writer)(nil)
	_ exchange.Hijacker       = (*h1Writer)(nil)
)
