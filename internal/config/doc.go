// Package config holds krait's settings model: the values `krait serve`
// accepts, their defaults, and strict validation. Every error names the flag
// it is about as the user wrote it ("-w", "--workers", "-c") and why the
// value is refused, so a typo never silently falls back to a default.
//
// Default is the one place a default is declared; ParseServe starts from
// it and the flag help prints it. Other packages must not declare their
// own defaults for these settings: internal/server passes every value
// explicitly.
//
// Settings that belong to one component are grouped in a sub-struct that
// is passed to it whole instead of copied field by field: Worker (what a
// Python worker runs, for internal/supervisor and internal/worker) and
// HTTP (limits and timeouts of internal/h1). Serve embeds them, so their
// fields read as s.Threads or s.KeepAlive. A new setting of one of them
// is a field there, its default in Default, a flag in ParseServe and its
// use in that component, nothing in between. HTTP also carries the
// engine settings that have no flag yet (WriteTimeout), so their defaults
// too are declared only here.
//
// front.go holds the flags of what krait puts in front of the app: the
// head limits (--limit-request-head, --max-head-memory), the trusted
// proxies (--forwarded-allow-ips, $FORWARDED_ALLOW_IPS, --forwarded-
// headers, --proxy-protocol) and compression (--compress*). Their
// defaults come from the packages that implement them (forwarded.
// DefaultTrusted, compress.Defaults) through Default, and their values
// are checked with those packages' own parsers, so that the rules live
// in one place and every error still names its flag.
//
// scale.go holds the worker-count flags: --workers (a number or "auto",
// runtime.GOMAXPROCS(0), which honours the cgroup CPU quota), its default
// $WEB_CONCURRENCY (an error names the variable), and the autoscaler's
// --max-workers and --scale-down-after.
//
// A Bind's Network is the address family its host asks for ("tcp4" for
// an IPv4 literal, "tcp6" for an IPv6 literal, "tcp" for [::] and names).
package config
