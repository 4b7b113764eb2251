// Package h2 is krait's net/http-based HTTP engine: HTTPS (HTTP/1.1 and
// HTTP/2 negotiated by ALPN, "h2" offered first) and, when asked,
// cleartext HTTP/2 with prior knowledge (h2c) beside cleartext HTTP/1.1.
// It implements the server's Engine interface (Serve, Shutdown, Close)
// and adapts net/http to internal/exchange, so the router and the
// dispatcher never see a net/http type. krait's own engine (internal/h1)
// keeps serving plain HTTP/1.1 listeners; this one serves TLS listeners
// and --http2-cleartext ones.
//
// Adapting net/http to exchange:
//
//   - Request: Method, Target (r.RequestURI: the raw target on HTTP/1.1,
//     :path on HTTP/2), Path and Query split from it (from r.URL for an
//     absolute-form target), ProtoMajor/Minor (2/0 for HTTP/2), Host
//     (r.Host, the :authority on HTTP/2) which is also put first among the
//     headers as "Host", as HTTP/1.1 clients send it. net/http keeps
//     header fields in a map: their order across different names is lost
//     (the adapter sorts names so it is at least stable), repeated fields
//     of one name keep their order, names are canonicalized
//     ("content-type" becomes "Content-Type"), and HTTP/2 cookie fields
//     arrive joined into one. Request trailers are copied to
//     Request.Trailers when Body returns io.EOF. Request.Ctx is the
//     net/http request's context (net/http cancels it when the connection
//     or the HTTP/2 stream goes away), so Watch has nothing to do.
//   - Response: header names are canonicalized and connection-specific
//     fields (Connection, Keep-Alive, Transfer-Encoding, Upgrade,
//     Proxy-Connection) dropped; a custom reason phrase cannot be sent
//     (net/http writes the standard one). A known contentLength becomes
//     Content-Length. 1xx statuses (103 Early Hints) are sent as they come;
//     the header map is cleared before every status, so a 103's fields do
//     not leak into the final response. Write to a HEAD, 204 or 304
//     response counts the bytes and sends none. SendFile seeks and copies
//     (net/http uses sendfile(2) on cleartext HTTP/1.1 only). Flush goes
//     through http.ResponseController. Trailers are sent with
//     http.TrailerPrefix: always on HTTP/2, only with a chunked body on
//     HTTP/1.1. Abort marks the response; when the handler returns the
//     engine panics with http.ErrAbortHandler on its own goroutine, which
//     makes net/http reset the HTTP/2 stream (RST_STREAM) or close the
//     HTTP/1.1 connection without a final chunk; writes after Abort fail.
//     The panic is raised only in the engine's frame, never through the
//     handler's code, so the handler's deferred cleanups run normally.
//   - Hijack (exchange.Hijacker) exists on HTTP/1.1 exchanges only: the
//     WebSocket bridge gets the (TLS) connection; the engine closes it when
//     the handler returns, as internal/h1 does. Hijacked connections are
//     not tracked by Shutdown (net/http forgets them): the server closes
//     WebSockets before it shuts engines down. WebSockets over HTTP/2
//     (RFC 8441 extended CONNECT) are not supported: the HTTP/2 writer has
//     no Hijack, so the bridge answers 501, and browsers open a separate
//     HTTP/1.1 connection for WebSockets when the server does not
//     announce SETTINGS_ENABLE_CONNECT_PROTOCOL.
//
// Limits: MaxConcurrentStreams per HTTP/2 connection (default 100),
// MaxHeaderBytes for a request head (HTTP/1.1) or header list (HTTP/2,
// announced as SETTINGS_MAX_HEADER_LIST_SIZE; default 64 KiB), frames of
// at most 16 KiB (SETTINGS_MAX_FRAME_SIZE, RFC 9113's default), the read
// header timeout and the idle (keep-alive) timeout.
//
// HTTP/2 is served by golang.org/x/net/http2 (installed in the
// http.Server's TLSNextProto for "h2" and for net/http's cleartext
// prior-knowledge hand-off) behind a frame filter (filter.go) that reads
// the client's frames: it merges a SETTINGS frame's repeated parameters
// (Go would hang up) and ends the connection on a request with
// connection-specific fields (Go would answer 400; RFC 9113 wants
// PROTOCOL_ERROR). It runs one HPACK decoder per connection beside the
// server's to see the fields; the payloads of other frames (DATA) are
// passed through as they come, without buffering.
// With it, h2spec passes 145 of 145 over TLS (bare net/http: 141) and 144
// of 145 over h2c, where the failing case sends a bad preface that, with
// HTTP/1.1 on the same port, is answered as an HTTP/1.1 request (400).
//
// HSTS: with Config.HSTS > 0 every response on a TLS connection carries
// Strict-Transport-Security: max-age=N. Redirect (NewRedirect) is a small
// engine for a plain listener that answers every request with a redirect
// to the same path on https (301 for GET and HEAD, 308 otherwise, so
// that the method and body are kept).
//
// Each Server serves one listener; Serve returns nil after Shutdown or
// Close. The TLS configuration (certificates, reload, client
// certificates, ACME) comes from internal/tlsconf as a *tls.Config; this
// package only adds the ALPN protocols.
package h2
