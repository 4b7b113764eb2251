// Package route is the router in front of krait's handlers: it picks, for
// each request, the handler chain of the most specific route that matches
// the listener the request arrived on, its Host and its path, and serves
// the request with it. The Python app (the dispatcher) is one handler among
// others; static files, reverse proxies and several apps in one process
// will be more routes of other kinds.
//
// # Routes and matching
//
// A Route matches on three things, each optional except the path prefix:
//
//   - Listener: the name the server gives a listener (krait serve names
//     each listener by its bind, "127.0.0.1:8000" or "unix:/run/k.sock");
//     "" matches every listener. Router.Listener(name) returns the handler
//     an engine serves for that listener; Router.Serve is the view of an
//     unnamed listener, where only routes without a Listener match.
//   - Host: "" matches every request; "example.com" matches that host
//     exactly; "*.example.com" matches any name below example.com (one or
//     more labels, as nginx does) but not example.com itself. Matching is
//     case-insensitive, ignores the port and one trailing dot of the
//     request's Host, and a request without Host matches only routes
//     without one.
//   - Prefix: segment-aware: "/static" matches "/static" and "/static/x"
//     but not "/staticfoo"; "/static/" matches "/static/" and below only;
//     "/" matches every request, including those whose target is not a
//     path (OPTIONS *, CONNECT host:port).
//
// The most specific matching route wins: a route naming the listener
// beats one that does not; then an exact host beats a wildcard (a longer
// wildcard beats a shorter one), which beats no host; then the longest
// prefix. Two routes that could match one request with equal specificity
// would have the same listener, host and prefix: New refuses such
// duplicates, so the winner never depends on declaration order. No match is
// answered by the router itself with a 404 error page (internal/errpage:
// text, HTML or JSON as the client's Accept prefers), inside the global
// middleware (so the access log records it).
//
// # Raw paths
//
// The router matches the path exactly as the client sent it
// (exchange.Request.Path, still percent-encoded) and never decodes or
// normalizes it, because:
//
//   - decoding allocates or copies on the hot path, and the handler
//     decodes again anyway; two decoders that disagree are how
//     double-decoding and routing-confusion bugs are born;
//   - the handler (the Python app above all) must see the target unchanged,
//     so the router cannot rewrite it either.
//
// What it means: "%2F" is never a segment separator for the router
// ("/static%2Fx" does not match "/static"; it is one segment
// "static%2Fx"), an encoded spelling of a prefix ("/%73tatic") does not
// match it, and dot segments are not resolved ("/static/../app" matches
// "/static"). A prefix is therefore not an access-control boundary by
// itself, and a handler that maps paths to resources (static files) must
// decode and contain the path itself. Prefixes are refused at construction
// when they contain '%', '?', '#', whitespace or control bytes, or empty,
// "." or ".." segments, so a route's prefix has exactly one spelling.
//
// # Handler chains and middleware
//
// A route's chain is its Handler wrapped by its Middleware, the first
// element outermost. Global middleware (New's second argument) wraps the
// whole router, also outermost first, once per listener view: the access
// log belongs there. Middleware that wraps the ResponseWriter must follow
// the exchange wrapper convention (exchange/wrap.go: implement Unwrap, and
// forward optional interfaces with exchange.Hijack and
// exchange.WriteTrailers), so the engine's capabilities stay reachable.
//
// # Invariants
//
//   - The router itself never wraps the ResponseWriter and never modifies
//     the Request: the handler gets the writer it was called with, so
//     hijacking (WebSocket) and trailers work exactly as without a router.
//   - Matching allocates nothing (a linear scan of a table sorted by
//     specificity at construction, byte comparisons on the request's own
//     buffers).
//   - A Router is immutable after New and safe for concurrent use; the
//     table is validated at construction (duplicate routes, malformed
//     prefixes or hosts, missing handlers or kinds) with errors that name
//     the route.
package route
