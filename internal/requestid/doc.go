// Package requestid gives every request an X-Request-ID: the client's (or
// the proxy's in front) when it is sane, else a fresh one. The id is put
// in the request headers the app sees (WSGI HTTP_X_REQUEST_ID, the ASGI
// scope's headers), in the response (X-Request-ID) and, because it is a
// request header, in the access log and in krait's own error pages
// (internal/errpage reads it with FromRequest).
//
// # Which ids are kept
//
// An incoming X-Request-ID is kept when Valid: 1 to MaxLen (128) bytes of
// ASCII letters, digits and "-._~+/=:@" — enough for UUIDs, hex, base64
// and the usual tracing ids, and nothing that needs escaping in a log
// line, an HTML page, a JSON string or a header. Anything else (empty,
// too long, spaces, quotes, '<', control or non-ASCII bytes), or a second
// X-Request-ID field, is replaced: the request then carries exactly one
// X-Request-ID, the first valid one sent or a generated one.
//
// # Generated ids
//
// 16 random bytes as 32 lower-case hex digits, the format of nginx's
// $request_id. They come from math/rand/v2's ChaCha8 (a cryptographically
// strong generator) seeded from crypto/rand, one generator per
// sync.Pool entry: about 30 ns and no system call per id, where
// crypto/rand would make a getrandom(2) call per id on kernels without
// the vDSO, and no lock shared by every request as one global generator
// would need. Each generator has its own 32-byte seed, so two generators
// never share a stream; a generator dropped by the pool at a GC is
// replaced by a freshly seeded one.
//
// # Request and response
//
// exchange.Request slices alias the engine's buffers and are never
// written: when the id is added or replaced, the handler gives the next
// handler a pooled copy of Request.Headers with the change, and restores
// Request.Headers when the next handler returns (the engine reuses the
// Request for the connection's next request). A request that arrives with
// one valid id is passed on untouched.
//
// The response gets X-Request-ID on its final header (status >= 200)
// unless the handler set one itself; 1xx responses and a WebSocket's 101,
// which the WebSocket bridge writes on the hijacked connection, do not.
// The ResponseWriter wrapper follows the exchange wrapper convention: it
// implements Unwrap and no optional interface, so exchange.Hijack,
// WriteTrailers, CanHijack and CanWriteTrailers reach the engine's writer
// through it. Trailers written before any header get the engine's
// implicit 200 header, without the id (no handler krait runs does that).
//
// # Placement and cost
//
// Install it as global middleware outside the access log (so the log line
// can print the id from the request headers, still in place while the
// inner handlers run) and inside the forwarded middleware. The handler,
// the wrapper and the header copies are pooled: a request allocates
// nothing in the steady state, with or without an incoming id.
package requestid
