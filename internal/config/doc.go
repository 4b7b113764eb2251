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
// A Bind's Network is the address family its host asks for ("tcp4" for
// an IPv4 literal, "tcp6" for an IPv6 literal, "tcp" for [::] and names).
package config
