// Package codec holds the pure codecs between HTTP and Python: functions
// without I/O that turn a request into what the worker reads and the
// worker's frames back into HTTP.
//
//   - AppendEnviron: the WSGI environ of an exchange.Request, as the marshal
//     dict of REQUEST (docs/protocol.md), built straight from the request's
//     byte slices. Header names with '_' are dropped (CGI cannot tell
//     X-Foo from X_Foo); repeated fields are joined with ", " ("; " for
//     Cookie); the path is percent-decoded; SERVER_NAME/SERVER_PORT come
//     from Host, else the local address.
//   - AppendScope: the ASGI "http" or "websocket" scope (lower-cased header
//     names, raw_path, subprotocols for a WebSocket).
//   - Parser.Response: a RESPONSE payload to a status, reason and headers,
//     validated: status 100-999 (int, or a WSGI status line), names are
//     tokens, values free of CR, LF and NUL, latin-1 decoding, the head
//     within MaxResponseHead (counted as docs/protocol.md says, dropped
//     fields included, as the adapter counts), repeated Content-Lengths
//     agreeing. Hop-by-hop fields (httpx.HopByHop) are dropped and named
//     in Response.Dropped for the caller to report; an ASGI response that
//     announces trailers keeps its Trailer field.
//   - Parser.FieldList: TRAILERS and EARLY_HINT field lists (hop-by-hop
//     fields and Content-Length dropped); Parser.Accept: WS_ACCEPT.
//   - AppendClose, ParseClose, ValidCloseCode, CloseReason: WS_CLOSE
//     payloads and close-frame rules; SendFile: SENDFILE payloads.
//
// Errors: an error wrapping wire.ErrProtocol means a payload did not decode
// (the worker broke the protocol and must be replaced); one wrapping ErrApp
// means it decoded but is not valid HTTP (the app's fault: a 500 for that
// stream, the worker lives on).
//
// Invariants: nothing here reads or writes a connection, knows a worker or
// logs. The encoders append to a caller's buffer and take a scratch buffer
// they return grown; a Parser is per-request scratch memory (not safe for
// concurrent use) whose results alias the payload and the Parser until
// its next call. On the hot path (environ, scope, a RESPONSE) nothing
// allocates once the scratch memory has grown.
package codec
