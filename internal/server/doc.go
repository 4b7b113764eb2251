// Package server wires krait together for `krait serve` and owns its
// lifecycle: it installs the Python adapter, binds the listeners, boots the
// worker pool, serves HTTP until a signal arrives and then stops gracefully
// (stop accepting, let in-flight requests finish within the graceful
// timeout, stop the workers). A second signal cuts the wait short.
//
// Each listener is bound with the network its config.Bind names, so an
// address is served in exactly the family asked for: an IPv4 literal
// (0.0.0.0, 127.0.0.1) on "tcp4" only, an IPv6 literal on "tcp6" only, and
// [::] dual-stack, as gunicorn binds them. (Go's plain "tcp" would make
// 0.0.0.0 listen on [::] too.)
//
// Every setting arrives explicitly from the config.Serve; the packages
// below never fall back on their own defaults when krait serve runs them.
package server
