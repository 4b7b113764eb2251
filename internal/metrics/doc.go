// Package metrics is krait's observability: Prometheus metrics (with the
// official client library, on a private registry), and the /healthz and
// /readyz probes Kubernetes uses, served by a listener of their own
// (--metrics-bind), never routed to the app.
//
// # What is exported
//
// Request metrics, from the router's middleware:
//
//   - krait_http_requests_total{kind,code}: requests answered, by route
//     kind (the route.Route's Kind: "app", "static", ...; "none" for the
//     router's own 404s) and status class ("1xx".."5xx"). A request never
//     answered (the client went away) counts as 4xx, as the access log's
//     499 does; codes 600-999 count as 5xx. Every kind's five series exist
//     from start-up, at zero.
//   - krait_http_request_duration_seconds{kind}: histogram of the time from
//     the request head to the end of the response; WebSocket sessions (101)
//     are counted but not timed.
//   - krait_http_requests_in_flight: requests being served, WebSockets
//     included.
//
// Pool metrics, read from supervisor.Pool.Stats at scrape time:
// krait_workers{state} (idle, busy, stopping, starting, failing; they add
// up to --workers), krait_worker_busy{worker}, krait_worker_capacity{worker},
// krait_worker_rss_bytes{worker,pid} (from /proc/PID/statm: Linux, no cgo),
// krait_queue_depth, krait_queue_wait_seconds (histogram of the waits of
// requests that found no free slot) and
// krait_worker_restarts_total{reason} (retired, died, died_early,
// boot_failed). Plus the Go runtime and process collectors (go_*,
// process_*) for krait's own process.
//
// # Probes
//
// /healthz answers 200 while the process runs. /readyz answers 200 when
// the server is not draining and at least one worker is running and in
// rotation (supervisor.Stats.Ready), else 503 with the reason in the body.
// SetDraining is called at the start of a graceful stop, before the
// --shutdown-delay, so /readyz turns 503 while the app listeners still
// serve: a load balancer stops sending traffic before they close.
// Before SetPool (the workers are booting) /readyz is 503 and the pool
// metrics are absent.
//
// # Middleware and the hot path
//
// Wrap is global middleware of the router (route.New's global list): it
// wraps the ResponseWriter in a pooled recorder (an exchange.Recorder,
// shared with the access log, plus the route kind; it follows the exchange
// wrapper convention: Unwrap, and Hijack/WriteTrailers forwarded with the
// exchange helpers, so WebSockets and trailers keep working) and counts
// every request, 404s included. Kind(kind) is route middleware: it finds
// Wrap's recorder in the writer's Unwrap chain and sets the route kind on
// it, so no lookup by label happens per request. The series of a kind are
// resolved once (WithLabelValues) when Kind is called, at router
// construction; a request costs two atomic gauge updates, a counter
// increment, a histogram observation and two time reads, with no
// allocation.
//
// Metrics is safe for concurrent use; the pool and the draining flag are
// atomics, read by each probe and scrape.
package metrics
