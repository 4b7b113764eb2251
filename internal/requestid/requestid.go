package requestid

import (
	crand "crypto/rand"
	"math/rand/v2"
	"sync"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// HeaderName is the field carrying the id, in requests and responses.
const HeaderName = "X-Request-ID"

// MaxLen is the longest incoming id kept.
const MaxLen = 128

// GeneratedLen is the length of a generated id (32 hex digits).
const GeneratedLen = 32

// safe marks the bytes an id may contain: nothing that needs escaping in
// a log line, HTML, a JSON string or a header value.
var safe = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/=:@" {
		t[c] = true
	}
	return t
}()

// Valid reports whether id is kept as a request id: 1 to MaxLen bytes of
// ASCII letters, digits and "-._~+/=:@".
func Valid(id []byte) bool {
	if len(id) == 0 || len(id) > MaxLen {
		return false
	}
	for _, c := range id {
		if !safe[c] {
			return false
		}
	}
	return true
}

// Get returns the value of the first X-Request-ID field of hs when it is
// Valid, else nil. Behind the middleware that is the request's id.
func Get(hs []exchange.Header) []byte {
	for i := range hs {
		if isName(hs[i].Name) {
			if Valid(hs[i].Value) {
				return hs[i].Value
			}
			return nil
		}
	}
	return nil
}

// FromRequest returns the request's id (Get of its headers): valid only
// until the handler returns, like every Request slice.
func FromRequest(r *exchange.Request) []byte { return Get(r.Headers) }

// isName reports whether b is "x-request-id" in any case.
func isName(b []byte) bool { return httpx.EqualFold(b, "x-request-id") }

// generators holds ChaCha8 generators, each seeded from crypto/rand: a
// ChaCha8 is not safe for concurrent use, and one per pool entry needs no
// lock.
var generators = sync.Pool{New: func() any {
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // never fails (it crashes the program instead)
	return rand.NewChaCha8(seed)
}}

const hexDigits = "0123456789abcdef"

// AppendNew appends a new random id (GeneratedLen lower-case hex digits)
// to dst.
func AppendNew(dst []byte) []byte {
	g := generators.Get().(*rand.ChaCha8)
	a, b := g.Uint64(), g.Uint64()
	generators.Put(g)
	for _, v := range [2]uint64{a, b} {
		for shift := 60; shift >= 0; shift -= 4 {
			dst = append(dst, hexDigits[(v>>uint(shift))&0xf])
		}
	}
	return dst
}

// Middleware sets the request id. Its zero value is not usable: call New.
type Middleware struct {
	pool sync.Pool // *state
}

// New returns the middleware.
func New() *Middleware {
	m := &Middleware{}
	m.pool.New = func() any {
		st := &state{}
		st.w.st = st
		return st
	}
	return m
}

// Wrap returns next behind the middleware (a route.Middleware).
func (m *Middleware) Wrap(next exchange.Handler) exchange.Handler {
	return &handler{m: m, next: next}
}

type handler struct {
	m    *Middleware
	next exchange.Handler
}

// state is one request's memory, pooled.
type state struct {
	w       writer
	id      [GeneratedLen]byte
	headers []exchange.Header // the request headers the app sees, when changed
	resp    []exchange.Header // the response headers with the id added
}

var headerName = []byte(HeaderName)

func (h *handler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	st := h.m.pool.Get().(*state)
	id, ok := incoming(r.Headers)
	orig := r.Headers
	if !ok {
		// Copy: r.Headers may alias the engine's buffers, never written.
		st.headers = st.headers[:0]
		for i := range orig {
			if !isName(orig[i].Name) {
				st.headers = append(st.headers, orig[i])
			}
		}
		if id == nil {
			id = AppendNew(st.id[:0])
		}
		st.headers = append(st.headers, exchange.Header{Name: headerName, Value: id})
		r.Headers = st.headers
	}
	st.w.ResponseWriter, st.w.id = w, id
	defer func() {
		r.Headers = orig
		st.w.ResponseWriter, st.w.id = nil, nil
		clear(st.headers) // drop references into the engine's buffers
		clear(st.resp)
		st.headers, st.resp = st.headers[:0], st.resp[:0]
		h.m.pool.Put(st)
	}()
	h.next.Serve(&st.w, r)
}

// incoming looks at the X-Request-ID fields of hs: ok when there is
// exactly one and it is Valid (the headers can go on as they are); else
// id is the first valid one, or nil when none is.
func incoming(hs []exchange.Header) (id []byte, ok bool) {
	n := 0
	for i := range hs {
		if !isName(hs[i].Name) {
			continue
		}
		n++
		if id == nil && Valid(hs[i].Value) {
			id = hs[i].Value
		}
	}
	return id, n == 1 && id != nil
}

// writer adds X-Request-ID to the final response header. It follows the
// exchange wrapper convention: Unwrap, and no optional interface of its
// own, so Hijack and trailers reach the engine's writer through it.
type writer struct {
	exchange.ResponseWriter
	st *state
	id []byte
}

var (
	_ exchange.ResponseWriter = (*writer)(nil)
	_ exchange.Unwrapper      = (*writer)(nil)
)

// Unwrap implements exchange.Unwrapper.
func (w *writer) Unwrap() exchange.ResponseWriter { return w.ResponseWriter }

// WriteHeader adds the id to a final header that has none.
func (w *writer) WriteHeader(status int, reason []byte, headers []exchange.Header, contentLength int64) error {
	if status >= 200 && !hasName(headers) {
		w.st.resp = append(append(w.st.resp[:0], headers...), exchange.Header{Name: headerName, Value: w.id})
		headers = w.st.resp
	}
	return w.ResponseWriter.WriteHeader(status, reason, headers, contentLength)
}

func hasName(hs []exchange.Header) bool {
	for i := range hs {
		if isName(hs[i].Name) {
			return true
		}
	}
	return false
}
