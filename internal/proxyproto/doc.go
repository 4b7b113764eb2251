// Package proxyproto accepts the PROXY protocol (HAProxy's, versions 1
// and 2: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt) on a
// listener, for krait behind a TCP load balancer (HAProxy, AWS NLB, GCP,
// Azure, ...): a Listener wraps a net.Listener, and every connection it
// returns has the RemoteAddr and LocalAddr the header names, so the HTTP
// engine, the access log and the app see the client, not the balancer.
//
// Rules:
//
//   - Only peers in Config.Trusted (the same list as
//     --forwarded-allow-ips: default 127.0.0.1 and ::1; unix socket
//     peers always) may connect; any other peer is closed without a byte
//     being read, so nobody can claim an address by connecting directly.
//   - Every connection from a trusted peer must start with a header:
//     a missing, malformed or incomplete one (Config.HeaderTimeout,
//     default 5s) closes the connection. Refusals are logged at Warn, at
//     most one per 10 s per listener with a count of those not logged.
//   - v2 LOCAL (the balancer's own health checks) and v1 UNKNOWN keep the
//     connection's real endpoints and are served like any connection, as
//     the spec asks; so are v2 PROXY headers of the UNSPEC and UNIX
//     families (no IP to report). v2 datagram families are refused. v2
//     TLVs are read and ignored.
//   - The header is read exactly, never a byte past it (v1 in a few reads
//     sized by what a valid line must still contain), so no request bytes
//     are buffered in user space and Conn can expose the socket's file
//     descriptor (syscall.Conn) for the engine's idle reads and sendfile.
//   - Headers are read on one goroutine per connection: Accept returns
//     connections whose header is complete, and a peer slow to send its
//     header holds up no one. Close closes the connections still in
//     their header. Temporary accept errors of the inner listener are
//     returned by Accept (the engine backs off); a permanent one is
//     returned by every later Accept.
//
// github.com/pires/go-proxyproto was considered: it reads the header
// through a bufio.Reader (bytes after the header sit in its buffer, so the
// raw descriptor cannot be handed to the engine) and lazily on the first
// RemoteAddr call, which the engine makes on its accept goroutine — one
// slow client would stall accepting. The format is small; the standard
// library suffices.
package proxyproto
