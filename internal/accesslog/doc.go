// Package accesslog writes one line per request in the Apache/nginx
// "combined" format followed by one more quoted field, the request's
// X-Request-ID ("-" when it has none), as nginx's
// log_format combined_id '... "$http_user_agent" "$request_id"' would:
//
//	127.0.0.1 - - [02/Dec/2026:11:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8.5.0" "9f86d081884c7d659a2feaa0c55ad015"
//
// Tools that parse the combined format by its leading fields read it
// unchanged. The id comes from the request headers, where the request-id
// middleware (internal/requestid), installed outside the access log, put
// it.
//
// The logger wraps an exchange.Handler, so it sees every request
// whichever engine served it, and records the final status and the body
// bytes actually handed to the engine (Write and SendFile).
//
// Its recorder, a pooled exchange.Recorder (shared with the metrics),
// wraps the engine's ResponseWriter following the exchange wrapper
// convention (see package exchange): it implements Unwrap, and
// implements Hijacker and TrailerWriter only to observe them, forwarding
// with exchange.Hijack and exchange.WriteTrailers. So with the access log
// on, WebSocket upgrades and trailers work exactly as without it. A
// hijacked connection (WebSocket) is logged as 101 with "-" bytes, when the
// session ends; a request the handler never answered as 499.
//
// The line is written after the handler returns, under the Logger's mutex,
// with one Write call, so concurrent lines never interleave.
package accesslog
