// Package errpage writes the error responses krait produces itself (400,
// 404 of a static route or of no route, 413, 502, 503, 504, ...) as small,
// clean pages in the format the client asked for: JSON when its Accept
// header prefers application/json (or any "+json" type), a tiny
// self-contained HTML page (inline style, no external resource) when it
// prefers text/html, plain text otherwise (curl's "*/*", no Accept at
// all, or nothing acceptable).
//
// The pages say the status, its standard reason phrase and (HTML, JSON)
// the request's X-Request-ID (internal/requestid) when it has one, and
// nothing else:
// never a Go error, a path, a worker or an address. Callers add their own
// headers (Retry-After on a 503, Allow on a 405); errpage adds
// Content-Type and Vary: Accept (the body depends on Accept, so a cache
// must not serve the HTML page to a JSON client).
//
//	JSON: {"error":{"status":503,"message":"Service Unavailable","request_id":"..."}}
//	text: 503 Service Unavailable
//
// Plain text stays the status line alone (the id is in the response's
// X-Request-ID header), so scripts that read it see what they always did.
//
// # Negotiation
//
// Negotiate follows RFC 9110 §12.5.1: each of the three formats takes the
// q-value of the most specific media range that matches it (exact type,
// then type/*, then */*; "application/json" and any "+json" subtype match
// JSON as exact types); the format with the highest q wins, then the one
// matched more specifically, then the one the client listed first, then
// text over HTML over JSON (so "*/*" is plain text). Ranges with a
// malformed q are ignored; several Accept fields are one list.
//
// # Invariants
//
//   - Bodies and header lists are built once, at package initialisation,
//     for every status from 400 to 599 that has a reason phrase
//     (net/http.StatusText), in each format; a page with a request id is
//     those precomputed parts around the id, in a pooled buffer. Negotiate
//     and Write allocate nothing in the steady state.
//   - The request id is inserted only when requestid.Valid, whose
//     alphabet needs no escaping in HTML, JSON or text, so the pages never
//     reflect client bytes that need escaping.
//   - Everything is safe for concurrent use; the tables are never written
//     after initialisation.
package errpage
