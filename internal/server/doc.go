// Package server wires krait together for `krait serve` and owns its
// lifecycle: it installs the Python adapter, binds the listeners, boots the
// worker pool, serves HTTP until a signal arrives and then stops gracefully
// (stop accepting, let in-flight requests finish within the graceful
// timeout, stop the workers). A second signal cuts the wait short.
//
// Signals (signals.go), with gunicorn's meanings: SIGINT/SIGTERM stop
// gracefully; SIGQUIT stops at once (no shutdown delay, no graceful
// wait); SIGHUP reloads the TLS certificates and starts a new generation
// of workers (supervisor.Pool.Reload; systemd hears RELOADING=1, then
// READY=1), the old one serving until the new one is ready and abandoned
// the other way round when it fails to boot; SIGTTIN/SIGTTOU add/remove
// a worker. SIGUSR1 (log reopen) is the cli's. With --reload
// (devreload.go, internal/devreload) a changed source file under --chdir
// or --pythonpath, debounced, takes the SIGHUP reload path (logged with
// the file). With --max-workers above
// --workers, Run starts the pool's autoscaler right after the pool, and
// sizes the dispatcher's queue bound for --max-workers (--max-queue per
// worker at the peak; it is set once and SIGTTIN does not raise it).
//
// # Handlers and engines
//
// Run builds the handler chain with internal/route: a Router whose table
// today holds one route, "/" to the dispatcher (kind "app"), with the
// request-id middleware (internal/requestid) and then the access log as
// global middleware, so that every request, the router's own 404s
// included, has an X-Request-ID and is logged with it. Each listener is then served by an Engine
// (Serve a listener, Shutdown, Close) built with the router's view of that
// listener (route.Router.Listener, named by the bind as given, e.g.
// "127.0.0.1:8000" or "unix:/run/krait.sock"). krait's own HTTP/1.1
// engine, internal/h1, is the only engine today; a net/http-based engine
// for TLS and HTTP/2 implements the same interface beside it, and neither
// the router nor the dispatcher knows which engine serves a request. With
// one engine per listener, every h1 engine shares
// one h1.HeadBudget (config.HTTP.MaxHeadMemory), so it bounds the whole
// process.
//
// In front of the app (front.go): the forwarding middleware
// (internal/forwarded, --forwarded-allow-ips/--forwarded-headers) is the
// outermost global middleware, so the access log, metrics and the app
// inside it see the client, not the proxy. Compression (internal/compress)
// is middleware of the app route only, inside the access log (which so
// counts the bytes sent); static routes serve their own precompressed
// files and need sendfile, ranges and strong ETags. Static routes are the
// --static mounts and, for a Django project, STATIC_URL → STATIC_ROOT (and
// MEDIA_URL → MEDIA_ROOT with --serve-media): djangoStatics builds them
// after supervisor.Start from the settings the first workers reported in
// HELLO (pool.Django), skipping non-path URLs, relative or missing roots
// and prefixes --static already serves (logged; a missing or empty
// STATIC_ROOT is a warning to run collectstatic). The router is built
// once, so a reload does not re-read them. With --proxy-protocol
// every listener, the --redirect-http one included, is wrapped by
// internal/proxyproto before any engine sees it (TLS starts after the
// PROXY header; h1 takes the header's addresses from the accepted conn);
// the metrics listener is not.
//
// The graceful stop runs in this order: the dispatcher's Shutdown first
// (it closes open WebSockets with 1012, which never end by themselves),
// then every engine's Shutdown at once (all listeners stop accepting
// together while requests in flight drain; engines still busy when the
// graceful timeout ends are closed), then the pool's Shutdown (workers
// finish and exit, or are killed at the timeout). A listener that fails
// stops everything at once instead (engines closed, pool closed).
//
// With --metrics-bind, a listener of its own (internal/metrics, a net/http
// server never routed to the app) serves /metrics, /healthz and /readyz
// from before the workers boot until Run returns. The metrics middleware
// is the innermost global middleware of the router, and each route gets
// its kind's middleware, so requests are labelled by route kind. A graceful
// stop first turns /readyz to 503, then waits --shutdown-delay with every
// listener still serving (a second signal cuts it short and stops at
// once), and only then runs the sequence above.
//
// Each listener is bound with the network its config.Bind names, so an
// address is served in exactly the family asked for: an IPv4 literal
// (0.0.0.0, 127.0.0.1) on "tcp4" only, an IPv6 literal on "tcp6" only, and
// [::] dual-stack, as gunicorn binds them. (Go's plain "tcp" would make
// 0.0.0.0 listen on [::] too.)
//
// Operating-system integration (internal/systemd, wired in systemd.go):
// listeners come from socket activation when systemd passed sockets
// (matched with --bind by address; without --bind every inherited socket
// is served and cfg.Binds becomes their addresses; an inherited socket no
// --bind names stops the start), the others are bound here, unix ones
// chmod'ed to --uds-mode. Once everything is bound (listeners, metrics,
// redirect) Run writes --pid and drops to --user/--group, and only then
// installs the Python adapter and starts the workers, as that user. It
// sends sd_notify READY=1 (and starts the WATCHDOG=1 pings, which stop
// while no worker is ready) right after the "ready" log line, and
// STOPPING=1 as soon as a stop begins.
//
// Every setting arrives explicitly from the config.Serve; the packages
// below never fall back on their own defaults when krait serve runs them.
package server
