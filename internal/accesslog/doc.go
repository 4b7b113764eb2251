// Package accesslog writes one line per request in the Apache/nginx
// "combined" format. It wraps an exchange.Handler, so it sees every request
// whichever engine served it, and records the final status and the body
// bytes actually handed to the engine (Write and SendFile).
//
// Its recorder wraps the engine's ResponseWriter following the exchange
// wrapper convention (see package exchange): it implements Unwrap, and
// implements Hijacker and TrailerWriter only to observe them, forwarding
// with exchange.Hijack and exchange.WriteTrailers. So with the access log
// on, WebSocket upgrades and trailers work exactly as without it. A
// hijacked connection (WebSocket) is logged as 101 with "-" bytes, when the
// session ends; a request the handler never answered as 499.
//
// The line is written after the handler returns, under the Logger's mutex,
// with one Write call, so concurrent lines never interleave.
package accesslog
