// Package exchange defines the small, engine-neutral request view and
// response sink that sit between an HTTP engine (krait's own HTTP/1.1 engine
// today, net/http for TLS and HTTP/2 later) and everything behind it
// (dispatch to Python workers, access logging, static files).
//
// Keeping these types free of net/http lets a faster engine serve cleartext
// HTTP/1.1 without touching dispatch. Byte slices in a Request alias the
// engine's buffers to keep the hot path allocation-free; they are valid only
// for the duration of Handler.Serve.
//
// # Context
//
// Request.Context is cancelled when the client is known gone (after
// Request.Watch asked the engine to watch the connection) and when the
// server stops hard; a handler layers its own deadline with
// context.WithTimeout. Engines provide it without a per-request
// allocation, so it is valid, like the rest of the Request, only until
// Serve returns.
//
// # Optional interfaces and wrappers
//
// A ResponseWriter may also implement Hijacker (take the connection over,
// for WebSocket) and TrailerWriter (chunked trailers). Handlers reach them
// only through Hijack, WriteTrailers, CanHijack and CanWriteTrailers, never
// through a type assertion, because a ResponseWriter is often a wrapper
// (the access log's recorder) around the engine's writer. The convention
// every wrapper follows:
//
//   - It implements Unwrapper (Unwrap returns the writer it wraps), so the
//     helpers can walk the chain to the writer that has the capability.
//   - It implements an optional interface only to observe the operation,
//     and then forwards with the helper on Unwrap() (which returns
//     ErrNotSupported when nothing below supports it). Whether an operation
//     is supported is decided by the base writer (the first in the chain
//     without Unwrap): CanHijack and CanWriteTrailers look only at it.
//   - It declares what it implements with compile-time checks
//     (var _ exchange.Unwrapper = (*T)(nil)).
//
// Recorder is that convention written once for the wrappers that only
// watch the response (the access log, the metrics): final status, body
// bytes, 101 on Hijack, 200 when trailers come first. Embed it to add
// state (metrics adds the route kind); it allocates nothing.
package exchange
