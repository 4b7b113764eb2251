package forwarded

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// Headers selects the forwarding headers the middleware honours.
type Headers uint8

const (
	// XForwardedFor sets the client address from X-Forwarded-For.
	XForwardedFor Headers = 1 << iota
	// XForwardedProto sets the scheme from X-Forwarded-Proto, else from
	// X-Forwarded-Ssl: on or X-Forwarded-Protocol: ssl (gunicorn's
	// default secure_scheme_headers).
	XForwardedProto
	// XForwardedHost sets the host (Request.Host and the Host header the
	// app sees) from X-Forwarded-Host.
	XForwardedHost
	// Forwarded applies RFC 7239 Forwarded (for=, proto=, host=). When a
	// trusted peer sends it, the X-Forwarded-* headers are not looked at.
	Forwarded

	// DefaultHeaders is what uvicorn and gunicorn honour: the client
	// address and the scheme. X-Forwarded-Host and Forwarded are opt-in
	// because common proxy configurations (nginx's proxy_set_header of
	// X-Forwarded-For and -Proto) pass a client's own copies of those
	// through untouched.
	DefaultHeaders = XForwardedFor | XForwardedProto
)

var headerNames = []struct {
	name string
	h    Headers
}{
	{"x-forwarded-for", XForwardedFor},
	{"x-forwarded-proto", XForwardedProto},
	{"x-forwarded-host", XForwardedHost},
	{"forwarded", Forwarded},
}

// ParseHeaders parses a comma-separated list of header names
// ("x-forwarded-for,x-forwarded-proto,forwarded"), case-insensitive.
func ParseHeaders(s string) (Headers, error) {
	var out Headers
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		found := false
		for _, hn := range headerNames {
			if strings.EqualFold(item, hn.name) {
				out |= hn.h
				found = true
			}
		}
		if !found {
			return 0, fmt.Errorf("%q: want x-forwarded-for, x-forwarded-proto, x-forwarded-host or forwarded", item)
		}
	}
	if out == 0 {
		return 0, fmt.Errorf("no header named")
	}
	return out, nil
}

// Config configures the middleware. The zero value trusts 127.0.0.1 and
// ::1 and honours DefaultHeaders.
type Config struct {
	// Trusted are the peers whose forwarding headers are applied. nil
	// means DefaultTrusted; an empty non-nil slice trusts no IP peer.
	// Unix socket peers are always trusted.
	Trusted []netip.Prefix
	// Headers are the headers honoured; 0 means DefaultHeaders.
	Headers Headers
}

// Middleware applies forwarding headers from trusted peers.
type Middleware struct {
	trust   Trust
	headers Headers
	pool    sync.Pool // *state
}

// New returns the middleware for cfg.
func New(cfg Config) *Middleware {
	h := cfg.Headers
	if h == 0 {
		h = DefaultHeaders
	}
	m := &Middleware{trust: NewTrust(cfg.Trusted), headers: h}
	m.pool.New = func() any { return new(state) }
	return m
}

// Wrap returns next behind the middleware (a route.Middleware).
func (m *Middleware) Wrap(next exchange.Handler) exchange.Handler {
	return &handler{m: m, next: next}
}

// state is per-request working memory, pooled; used only when a
// forwarding header is present.
type state struct {
	headers []exchange.Header
	elems   []element
}

// element is one Forwarded element (or one X-Forwarded-For item).
type element struct {
	bad     bool // the field line it came from does not parse: the walk stops here
	hasAddr bool // for= is an IP address (not unknown, obfuscated or missing)
	addr    netip.Addr
	port    int
	proto   []byte
	host    []byte
	seen    uint8 // parameters seen, to reject duplicates
}

// result is what the headers say about the request.
type result struct {
	hasClient bool
	client    netip.Addr
	port      int
	scheme    string
	host      []byte
}

// present bits: which relevant fields the request carries.
const (
	hasFor = 1 << iota
	hasProto
	hasHost
	hasFwd
	hasSsl
	hasProtocol
)

type handler struct {
	m    *Middleware
	next exchange.Handler
}

var hostName = []byte("Host")

func (h *handler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	m := h.m
	mask := m.present(r.Headers)
	if mask == 0 || !m.trust.ContainsPeer(r.RemoteAddr) {
		h.next.Serve(w, r)
		return
	}
	var st *state
	var res result
	if mask&hasFwd != 0 {
		st = m.pool.Get().(*state)
		m.fromForwarded(r.Headers, st, &res)
	} else {
		m.fromX(r.Headers, mask, &res)
	}
	if !res.hasClient && res.scheme == "" && res.host == nil {
		if st != nil {
			m.put(st)
		}
		h.next.Serve(w, r)
		return
	}

	// The engine reuses r for the next request on the connection (its
	// RemoteAddr is set once per connection): put back what we change.
	scheme, addr, port, host, headers := r.Scheme, r.RemoteAddr, r.RemotePort, r.Host, r.Headers
	defer func() {
		r.Scheme, r.RemoteAddr, r.RemotePort, r.Host, r.Headers = scheme, addr, port, host, headers
		if st != nil {
			m.put(st)
		}
	}()
	if res.hasClient {
		r.RemoteAddr = res.client.String()
		r.RemotePort = res.port
	}
	if res.scheme != "" {
		r.Scheme = res.scheme
	}
	if res.host != nil {
		// res.host points into a header value: valid as long as r is.
		// r.Headers may alias the engine's buffers: replace the Host
		// field in a copy we own.
		if st == nil {
			st = m.pool.Get().(*state)
		}
		st.headers = append(st.headers[:0], r.Headers...)
		found := false
		for i := range st.headers {
			if httpx.EqualFold(st.headers[i].Name, "host") {
				st.headers[i].Value = res.host
				found = true
			}
		}
		if !found {
			st.headers = append(st.headers, exchange.Header{Name: hostName, Value: res.host})
		}
		r.Headers = st.headers
		r.Host = res.host
	}
	h.next.Serve(w, r)
}

func (m *Middleware) put(st *state) {
	clear(st.headers) // drop references into the engine's buffers
	st.headers = st.headers[:0]
	clear(st.elems)
	st.elems = st.elems[:0]
	m.pool.Put(st)
}

// present reports which enabled forwarding fields hs carries.
func (m *Middleware) present(hs []exchange.Header) int {
	mask := 0
	for i := range hs {
		n := hs[i].Name
		switch len(n) {
		case 9:
			if m.headers&Forwarded != 0 && httpx.EqualFold(n, "forwarded") {
				mask |= hasFwd
			}
		case 15:
			if m.headers&XForwardedFor != 0 && httpx.EqualFold(n, "x-forwarded-for") {
				mask |= hasFor
			} else if m.headers&XForwardedProto != 0 && httpx.EqualFold(n, "x-forwarded-ssl") {
				mask |= hasSsl
			}
		case 16:
			if m.headers&XForwardedHost != 0 && httpx.EqualFold(n, "x-forwarded-host") {
				mask |= hasHost
			}
		case 17:
			if m.headers&XForwardedProto != 0 && httpx.EqualFold(n, "x-forwarded-proto") {
				mask |= hasProto
			}
		case 20:
			if m.headers&XForwardedProto != 0 && httpx.EqualFold(n, "x-forwarded-protocol") {
				mask |= hasProtocol
			}
		}
	}
	return mask
}

// fromX reads X-Forwarded-For/-Proto/-Host (and gunicorn's
// X-Forwarded-Ssl/-Protocol) into res.
func (m *Middleware) fromX(hs []exchange.Header, mask int, res *result) {
	n := 0    // items in X-Forwarded-For
	sel := -1 // index of the item the walk ended on
	if mask&hasFor != 0 {
		n = countItems(hs, "x-forwarded-for")
		sel = m.walkXFF(hs, n, res)
	}
	if mask&hasProto != 0 {
		if v, ok := pickItem(hs, "x-forwarded-proto", n, sel); ok {
			res.scheme = schemeOf(v)
		}
	}
	if res.scheme == "" && mask&(hasSsl|hasProtocol) != 0 {
		for i := range hs {
			h := &hs[i]
			if httpx.EqualFold(h.Name, "x-forwarded-ssl") && httpx.EqualFold(h.Value, "on") ||
				httpx.EqualFold(h.Name, "x-forwarded-protocol") && httpx.EqualFold(h.Value, "ssl") {
				res.scheme = "https"
			}
		}
	}
	if mask&hasHost != 0 {
		if v, ok := pickItem(hs, "x-forwarded-host", n, sel); ok && validHost(v) {
			res.host = v
		}
	}
}

// walkXFF walks the n X-Forwarded-For items right to left: trusted
// addresses are skipped, the first untrusted one is the client; an item
// that is not an address stops the walk, leaving the client at the last
// address walked (the peer when none). It returns the index of the last
// item walked, -1 when none.
func (m *Middleware) walkXFF(hs []exchange.Header, n int, res *result) int {
	k := n - 1
	sel := -1
	for i := len(hs) - 1; i >= 0; i-- {
		if !httpx.EqualFold(hs[i].Name, "x-forwarded-for") {
			continue
		}
		v := hs[i].Value
		end := len(v)
		for {
			start := bytes.LastIndexByte(v[:end], ',') + 1
			a, port, ok := parseNode(httpx.TrimOWS(v[start:end]), false)
			if !ok {
				return sel
			}
			sel = k
			res.hasClient, res.client, res.port = true, a, port
			if !m.trust.Contains(a) {
				return sel
			}
			k--
			if start == 0 {
				break
			}
			end = start - 1
		}
	}
	return sel
}

// fromForwarded reads RFC 7239 Forwarded into res.
func (m *Middleware) fromForwarded(hs []exchange.Header, st *state, res *result) {
	for i := range hs {
		if httpx.EqualFold(hs[i].Name, "forwarded") {
			st.elems = parseForwarded(st.elems, hs[i].Value)
		}
	}
	sel := -1
	for i := len(st.elems) - 1; i >= 0; i-- {
		e := &st.elems[i]
		if e.bad {
			break
		}
		sel = i
		if !e.hasAddr {
			break
		}
		res.hasClient, res.client, res.port = true, e.addr, e.port
		if !m.trust.Contains(e.addr) {
			break
		}
	}
	if sel < 0 {
		return
	}
	e := &st.elems[sel]
	if e.proto != nil {
		res.scheme = schemeOf(e.proto)
	}
	if e.host != nil && validHost(e.host) {
		res.host = e.host
	}
}

// countItems counts the comma-separated items of every field named name.
func countItems(hs []exchange.Header, name string) int {
	n := 0
	for i := range hs {
		if httpx.EqualFold(hs[i].Name, name) {
			n += bytes.Count(hs[i].Value, []byte{','}) + 1
		}
	}
	return n
}

// pickItem chooses the item of a list field (X-Forwarded-Proto/-Host)
// that goes with X-Forwarded-For item sel of n: the only one; the one at
// the same position when both lists are as long (proxies that append to
// both); else the right-most, written by the nearest proxy.
func pickItem(hs []exchange.Header, name string, n, sel int) ([]byte, bool) {
	c := countItems(hs, name)
	var want int
	switch {
	case c == 0:
		return nil, false
	case c == 1:
		want = 0
	case sel >= 0 && c == n:
		want = sel
	default:
		want = c - 1
	}
	k := 0
	for i := range hs {
		if !httpx.EqualFold(hs[i].Name, name) {
			continue
		}
		for item := range bytes.SplitSeq(hs[i].Value, []byte{','}) {
			if k == want {
				item = httpx.TrimOWS(item)
				return item, len(item) > 0
			}
			k++
		}
	}
	return nil, false
}

// schemeOf maps a forwarded proto to a Request.Scheme: http and https
// (ws and wss, which uvicorn accepts, as their HTTP twins), any case;
// "" for anything else.
func schemeOf(v []byte) string {
	switch {
	case httpx.EqualFold(v, "https"), httpx.EqualFold(v, "wss"):
		return "https"
	case httpx.EqualFold(v, "http"), httpx.EqualFold(v, "ws"):
		return "http"
	}
	return ""
}
