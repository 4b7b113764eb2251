// Package httpx holds the HTTP token and header helpers that the HTTP/1.1
// engine (internal/h1), the dispatcher and its codecs (internal/dispatch,
// internal/codec, internal/wsbridge) and the middleware (internal/compress,
// errpage, forwarded, requestid, route, static) share, written once: the
// RFC 9110 character classes (tchar, field-value bytes), ASCII
// case-insensitive comparison, comma-separated list iteration with
// optional whitespace (Connection, Upgrade, Sec-WebSocket-Protocol,
// Transfer-Encoding, Accept, Accept-Encoding, Range), the hop-by-hop field
// names an application may not set, Content-Length digits (also the
// 1*DIGIT of byte ranges), qvalues (the "q=" weights of Accept and
// Accept-Encoding, in thousandths), and the plain-text error answer the
// dispatcher writes.
//
// Only the grammar lives here; each caller keeps its own policy, such as
// whether a malformed weight drops an element or counts as q=0.
//
// Invariants: every function is pure (WriteError aside), allocates nothing
// and is safe for concurrent use; the character tables are built once at
// package initialisation and never written again. Names are compared as
// ASCII only: bytes >= 0x80 never match a letter.
package httpx
