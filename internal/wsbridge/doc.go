// Package wsbridge bridges WebSocket connections to ASGI worker streams:
// the handshake checks, the accept, the session (messages both ways), the
// UTF-8 check of text messages, the ping loop, connection tracking and
// Shutdown with 1012. The dispatcher sends the "websocket" scope and hands
// the bridge the request, the response writer and the opened stream
// (Bridge.Serve); the bridge never opens streams or picks workers.
//
// A request with "Upgrade: websocket" to an ASGI worker is checked first
// (CheckHandshake: GET, HTTP/1.1, Connection: Upgrade, version 13 else
// 426, a valid key else 400; Refuse answers), then sent as a "websocket"
// scope. The app's answer decides: WS_CLOSE before accept is 403, RESPONSE
// or EARLY_HINT before accept is its denial response, which Serve hands
// back to the dispatcher to relay as plain HTTP, a RESET before accept is
// 500, and WS_ACCEPT completes the handshake with github.com/coder/websocket
// over the engine's exchange.Hijacker (subprotocol, the app's extra
// headers, permessage-deflate without context takeover when enabled). The
// library's origin check is off: the app sees Origin and decides.
//
// An accepted connection is bridged by the connection's goroutine (worker
// to client) and one reader goroutine (client to worker), plus a pinger
// when Config.PingInterval is set. Client messages, reassembled from
// fragments by the library and limited to Config.MaxSize (else close
// 1009), go to the worker as WS_MESSAGE pieces of at most 64 KiB within
// the stream's send window, FlagMore on all but the last; the worker's
// pieces are written as one message (one frame). The worker's message
// bytes, written to the client or collected, are credited in batches of
// half the window (creditBatch), one WINDOW frame per 128 KiB rather than
// per message: the worker waits for credit only with a whole window
// outstanding, and what is held back is always less than half of it, so
// the rest arrives and pushes the count over the mark (docs/protocol.md,
// ASGI). The library's reads and writes get a context that never ends
// (noCancel: a cancellable one costs a context.AfterFunc per frame); the
// session closes the connection once when its own context ends.
// Text messages are checked to be UTF-8 piece by piece: an invalid piece
// is not forwarded and the connection fails with 1007; an
// unmasked client frame fails it with 1002; in both cases the client gets
// that code whatever the app answers. A client close reaches the worker as
// WS_CLOSE with its code and reason (1006 when the connection dropped or a
// ping went unanswered for Config.PingTimeout); the worker's WS_CLOSE
// becomes a close frame (an invalid code is sent as 1000, a reason over
// 123 bytes is cut at a code point), a worker RESET or death a 1011 close.
//
// Protocol errors: a WS_ACCEPT that does not decode, or is invalid, is
// returned by Serve unanswered, for the dispatcher to answer as it answers
// a bad RESPONSE (502 and the worker reported, or 500); a WS_CLOSE that
// does not decode, mid-session, is reported to the worker layer
// (worker.Stream.ProtocolError), which kills the worker for the supervisor
// to replace, and the client gets a 1011 close.
//
// Locking: Bridge.mu guards the set of live sessions and the stopping
// flag. Shutdown sets stopping and closes every tracked session in its own
// goroutine (it does not wait); a session accepted after that is closed
// with 1012 at once. Per session, the reader goroutine owns the client
// side, the session goroutine the worker side; the failure code a reader
// sets (1007, 1002) is handed over under its own mutex.
package wsbridge
