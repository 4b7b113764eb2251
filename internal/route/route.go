package route

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/krait-server/krait/internal/errpage"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// Route kinds. A kind names what serves a route, so that logs and metrics
// can label requests by it; more kinds (static, proxy) come with their
// handlers.
const (
	// KindApp is the Python app, served by the dispatcher.
	KindApp = "app"
)

// Middleware wraps a handler in another (access log, metrics, ...). A
// middleware that wraps the ResponseWriter must follow the exchange wrapper
// convention so the engine's optional interfaces stay reachable.
type Middleware func(exchange.Handler) exchange.Handler

// Route is one entry of the routing table. See the package documentation
// for how Listener, Host and Prefix match and which route wins.
type Route struct {
	// Kind names what serves the route (KindApp, ...); required.
	Kind string
	// Listener is the name of the only listener the route applies to; ""
	// means every listener.
	Listener string
	// Host is "" (any host), a host name ("example.com"), a wildcard
	// ("*.example.com": any name below it), or an IP literal ("127.0.0.1",
	// "[::1]"); never with a port.
	Host string
	// Prefix is the path prefix, starting with "/"; "/" matches everything.
	Prefix string
	// Handler serves the requests the route matches; required.
	Handler exchange.Handler
	// Middleware wraps Handler, the first element outermost.
	Middleware []Middleware
}

// String describes r for error messages: "app route host=example.com prefix=/x".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Kind)
	b.WriteString(" route")
	if r.Listener != "" {
		fmt.Fprintf(&b, " listener=%q", r.Listener)
	}
	if r.Host != "" {
		fmt.Fprintf(&b, " host=%q", r.Host)
	}
	fmt.Fprintf(&b, " prefix=%q", r.Prefix)
	return b.String()
}

// Router is an exchange.Handler that serves each request with the chain of
// the most specific matching route, or answers 404. Build it with New.
type Router struct {
	table   []*entry // sorted most specific first
	global  []Middleware
	unnamed exchange.Handler // the view of an unnamed listener, with global middleware
}

// entry is a validated, normalized Route with its built chain.
type entry struct {
	route    Route
	index    int    // position in the table given to New
	listener string // "" for any
	host     string // lower-case, no trailing dot; for a wildcard the suffix ".example.com"
	wildcard bool
	prefix   string
	all      bool // prefix "/": matches every request
	subtree  bool // prefix ends with '/': a plain byte prefix match
	chain    exchange.Handler
}

// New validates routes and builds a Router; global middleware wraps the
// whole router (404s included), the first element outermost.
func New(routes []Route, global ...Middleware) (*Router, error) {
	for i, m := range global {
		if m == nil {
			return nil, fmt.Errorf("route: global middleware %d is nil", i)
		}
	}
	rt := &Router{global: slices.Clone(global)}
	for i, r := range routes {
		e, err := compile(i, r)
		if err != nil {
			return nil, fmt.Errorf("route %d (%s): %w", i, r, err)
		}
		for _, prev := range rt.table {
			if prev.listener == e.listener && prev.host == e.host && prev.wildcard == e.wildcard && prev.prefix == e.prefix {
				return nil, fmt.Errorf("route %d (%s) %w %d: it could never match", i, r, ErrDuplicate, prev.index)
			}
		}
		rt.table = append(rt.table, e)
	}
	// Most specific first, so the first match in a linear scan is the
	// best one; the stable sort keeps declaration order for ties.
	slices.SortStableFunc(rt.table, func(a, b *entry) int { return b.specificity().compare(a.specificity()) })
	unnamed, err := rt.view("")
	if err != nil {
		return nil, err
	}
	rt.unnamed = unnamed
	return rt, nil
}

// Serve implements exchange.Handler as the view of an unnamed listener:
// only routes without a Listener match.
func (rt *Router) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	rt.unnamed.Serve(w, r)
}

// Listener returns the handler an engine serves for the listener called
// name: routes naming that listener, and routes naming none, with the
// global middleware around them. Call it once per listener, at start-up.
func (rt *Router) Listener(name string) exchange.Handler {
	h, err := rt.view(name)
	if err != nil {
		// New already applied every global middleware once and checked
		// it returns a handler; a middleware that does so only sometimes
		// is a programming error.
		panic(err)
	}
	return h
}

// Routes returns the table in the order routes are tried (most specific
// first).
func (rt *Router) Routes() []Route {
	out := make([]Route, len(rt.table))
	for i, e := range rt.table {
		out[i] = e.route
	}
	return out
}

func (rt *Router) view(listener string) (exchange.Handler, error) {
	v := &view{}
	for _, e := range rt.table {
		if e.listener == "" || e.listener == listener {
			v.table = append(v.table, e)
		}
	}
	var h exchange.Handler = v
	for i := len(rt.global) - 1; i >= 0; i-- {
		if h = rt.global[i](h); h == nil {
			return nil, fmt.Errorf("route: global middleware %d returned a nil handler", i)
		}
	}
	return h, nil
}

// view is the table as one listener sees it.
type view struct {
	table []*entry
}

// Serve passes w and r on untouched: the router must not hide the
// engine's writer (hijacking, trailers) nor rewrite the request.
func (v *view) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	if e := v.match(r); e != nil {
		e.chain.Serve(w, r)
		return
	}
	errpage.Write(w, r, 404)
}

func (v *view) match(r *exchange.Request) *entry {
	host := requestHost(r.Host)
	for _, e := range v.table {
		if e.matchHost(host) && e.matchPath(r.Path) {
			return e
		}
	}
	return nil
}

// requestHost strips the port and one trailing dot from a Host value,
// without allocating.
func requestHost(h []byte) []byte {
	if len(h) > 0 && h[0] == '[' {
		// IP literal: the port, if any, follows the ']'.
		for i, c := range h {
			if c == ']' {
				return h[:i+1]
			}
		}
		return h
	}
	for i, c := range h {
		if c == ':' {
			h = h[:i]
			break
		}
	}
	if n := len(h); n > 1 && h[n-1] == '.' {
		h = h[:n-1]
	}
	return h
}

func (e *entry) matchHost(host []byte) bool {
	switch {
	case e.host == "":
		return true
	case e.wildcard:
		// At least one label before the suffix: ".example.com" alone is
		// no name below example.com.
		return len(host) > len(e.host) && httpx.EqualFold(host[len(host)-len(e.host):], e.host)
	default:
		return httpx.EqualFold(host, e.host)
	}
}

func (e *entry) matchPath(path []byte) bool {
	if e.all {
		return true
	}
	if len(path) < len(e.prefix) || string(path[:len(e.prefix)]) != e.prefix {
		return false
	}
	// Segment-aware: "/static" must not match "/staticfoo".
	return e.subtree || len(path) == len(e.prefix) || path[len(e.prefix)] == '/'
}

// specificity orders routes: listener, then host, then prefix length.
type specificity struct {
	listener bool
	hostRank int // 2 exact, 1 wildcard, 0 any
	hostLen  int // wildcard suffix length: a longer one is more specific
	prefix   int
}

func (e *entry) specificity() specificity {
	s := specificity{listener: e.listener != "", prefix: len(e.prefix)}
	switch {
	case e.host == "":
	case e.wildcard:
		s.hostRank, s.hostLen = 1, len(e.host)
	default:
		s.hostRank = 2
	}
	return s
}

func (a specificity) compare(b specificity) int {
	if a.listener != b.listener {
		if a.listener {
			return 1
		}
		return -1
	}
	if a.hostRank != b.hostRank {
		return a.hostRank - b.hostRank
	}
	if a.hostLen != b.hostLen {
		return a.hostLen - b.hostLen
	}
	return a.prefix - b.prefix
}

// Errors New wraps, for callers that want to tell them apart.
var (
	ErrNoHandler = errors.New("no handler")
	ErrKind      = errors.New("invalid kind")
	ErrDuplicate = errors.New("duplicates route")
	ErrPrefix    = errors.New("invalid prefix")
	ErrHost      = errors.New("invalid host")
)

func compile(i int, r Route) (*entry, error) {
	if r.Handler == nil {
		return nil, ErrNoHandler
	}
	if err := checkKind(r.Kind); err != nil {
		return nil, err
	}
	if err := checkPrefix(r.Prefix); err != nil {
		return nil, err
	}
	host, wildcard, err := normalizeHost(r.Host)
	if err != nil {
		return nil, err
	}
	chain := r.Handler
	for j := len(r.Middleware) - 1; j >= 0; j-- {
		m := r.Middleware[j]
		if m == nil {
			return nil, fmt.Errorf("middleware %d is nil", j)
		}
		if chain = m(chain); chain == nil {
			return nil, fmt.Errorf("middleware %d returned a nil handler", j)
		}
	}
	r.Middleware = slices.Clone(r.Middleware)
	return &entry{
		route:    r,
		index:    i,
		listener: r.Listener,
		host:     host,
		wildcard: wildcard,
		prefix:   r.Prefix,
		all:      r.Prefix == "/",
		subtree:  strings.HasSuffix(r.Prefix, "/"),
		chain:    chain,
	}, nil
}

func checkKind(k string) error {
	if k == "" {
		return fmt.Errorf("%w: empty (name what serves the route, e.g. %q)", ErrKind, KindApp)
	}
	for _, c := range []byte(k) {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w %q: want lower-case letters, digits, '-' and '_'", ErrKind, k)
		}
	}
	return nil
}

func checkPrefix(p string) error {
	if p == "" || p[0] != '/' {
		return fmt.Errorf("%w %q: must start with '/'", ErrPrefix, p)
	}
	for _, c := range []byte(p) {
		switch {
		case c <= ' ' || c >= 0x7f:
			return fmt.Errorf("%w %q: whitespace, control or non-ASCII byte", ErrPrefix, p)
		case c == '?' || c == '#':
			return fmt.Errorf("%w %q: contains %q (a prefix is a path, without query or fragment)", ErrPrefix, p, c)
		case c == '%':
			// Matching is on the raw path: an encoded prefix would
			// match one spelling of the path and miss the others.
			return fmt.Errorf("%w %q: contains '%%' (prefixes are matched against the raw path; write them unencoded)", ErrPrefix, p)
		}
	}
	segs := strings.Split(strings.TrimSuffix(p[1:], "/"), "/")
	if p == "/" {
		segs = nil
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return fmt.Errorf("%w %q: empty, \".\" or \"..\" segment", ErrPrefix, p)
		}
	}
	return nil
}

// normalizeHost validates a route's Host and returns it lower-cased
// without a trailing dot; a wildcard comes back as its suffix
// (".example.com").
func normalizeHost(h string) (host string, wildcard bool, err error) {
	if h == "" {
		return "", false, nil
	}
	orig := h
	h = strings.ToLower(h)
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") || len(h) < 4 {
			return "", false, fmt.Errorf("%w %q: an IPv6 literal is written [addr], without a port", ErrHost, orig)
		}
		for _, c := range []byte(h[1 : len(h)-1]) {
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == ':' || c == '.') {
				return "", false, fmt.Errorf("%w %q: not an IPv6 literal", ErrHost, orig)
			}
		}
		return h, false, nil
	}
	if strings.HasPrefix(h, "*.") {
		wildcard = true
		h = h[1:] // keep the dot: the suffix is ".example.com"
	}
	h = strings.TrimSuffix(h, ".")
	name := strings.TrimPrefix(h, ".")
	if name == "" {
		return "", false, fmt.Errorf("%w %q: empty name", ErrHost, orig)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", false, fmt.Errorf("%w %q: empty label", ErrHost, orig)
		}
		for _, c := range []byte(label) {
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c == ':':
				return "", false, fmt.Errorf("%w %q: a route's host has no port (ports are ignored when matching)", ErrHost, orig)
			case c == '*':
				return "", false, fmt.Errorf("%w %q: '*' is allowed only as a whole first label (\"*.example.com\")", ErrHost, orig)
			default:
				return "", false, fmt.Errorf("%w %q: invalid character %q", ErrHost, orig, c)
			}
		}
	}
	return h, wildcard, nil
}
