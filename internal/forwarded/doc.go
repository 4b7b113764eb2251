// Package forwarded applies the headers a reverse proxy adds about the
// original request (RFC 7239 Forwarded, X-Forwarded-For, -Proto, -Host)
// to the exchange.Request, so that the WSGI environ (REMOTE_ADDR,
// wsgi.url_scheme, HTTP_HOST, SERVER_NAME) and the ASGI scope (client,
// scheme, headers) describe the client rather than the proxy — what
// gunicorn (scheme), uvicorn's ProxyHeadersMiddleware (client, scheme) and
// werkzeug's ProxyFix (host) do.
//
// Trust. Headers are applied only when the immediate peer
// (Request.RemoteAddr) is in Config.Trusted (--forwarded-allow-ips;
// default 127.0.0.1 and ::1; "*" trusts all). Unix socket peers
// (RemoteAddr "") are trusted, as gunicorn does ("connections not
// associated with an IP address are treated as allowed"); uvicorn trusts
// them only with "*".
//
// Which headers. Config.Headers selects them; the default is
// X-Forwarded-For and X-Forwarded-Proto (uvicorn's set; gunicorn's
// X-Forwarded-Ssl: on and X-Forwarded-Protocol: ssl are accepted when
// X-Forwarded-Proto gives no valid value). X-Forwarded-Host and Forwarded
// are opt-in: a proxy configured only for X-Forwarded-For/-Proto (the
// usual nginx snippet) passes a client's own X-Forwarded-Host and
// Forwarded through, and honouring them would let any client choose the
// host or its address. When Forwarded is enabled and present, it alone is
// used (for=, proto=, host= of one element); otherwise X-Forwarded-*.
//
// The walk. Addresses are read right to left (the nearest proxy wrote
// the right-most): trusted addresses are skipped and the first untrusted
// one is the client; if all are trusted, the left-most. An item that is
// not an IP address (RFC 7239 "unknown", an obfuscated "_name", garbage)
// or a Forwarded line that does not parse stops the walk: the client is
// then the last address walked, or the peer. So the result is always an
// address vouched for by trusted hops. proto and host come from the
// Forwarded element the walk ended on; for X-Forwarded-Proto/-Host, the
// only value, else the value at the same position as the chosen
// X-Forwarded-For item when both lists are as long, else the right-most.
// Repeated field lines are one list, in order. proto is http, https, ws
// or wss in any case (ws/wss as uvicorn accepts, mapped to http/https);
// a host must be a DNS name, IPv4 or [IPv6] with an optional port.
// Anything malformed is ignored; the middleware never fails a request.
// The client port is the one in the header, else 0 (uvicorn's choice).
//
// The forwarding headers stay in Request.Headers (gunicorn passes them to
// the app too); when a host is applied, the Host header the app sees is
// replaced by it (in a pooled copy of Headers: Request slices alias the
// engine's buffers and are never written).
//
// Lifetime. The engine reuses one Request per connection and sets
// RemoteAddr once per connection, so the handler restores every field it
// changed (Scheme, RemoteAddr, RemotePort, Host, Headers) when the next
// handler returns. Middleware that runs outside this one sees the peer;
// the access log must therefore be inside it to log the client. Requests
// without any enabled forwarding header cost one scan of the header names
// and allocate nothing.
package forwarded
