// Package dispatch is the relay between a request and a worker stream: it
// takes a worker slot (supervisor.Pool.Open), sends REQUEST (the environ or
// scope encoded by internal/codec), streams the request body with flow
// control, and relays the worker's RESPONSE, DATA, SENDFILE, EARLY_HINT and
// TRAILERS frames to the exchange.ResponseWriter. A WebSocket upgrade to an
// ASGI worker is handed, with its opened stream, to internal/wsbridge.
//
// What it does not own: payload encoding and decoding (internal/codec),
// HTTP token rules (internal/httpx), the WebSocket session
// (internal/wsbridge), and the fate of a worker that broke the protocol:
// the dispatcher reports it (worker.Stream.ProtocolError) and answers 502;
// the worker layer logs and kills the worker and the supervisor replaces
// it.
//
// Status mapping (the statuses the dispatcher answers itself, with
// internal/errpage's pages: text, HTML or JSON as Accept prefers, the
// request id, and no internal detail such as why no worker took the
// request, which goes to the log):
//
//	503 every worker slot busy and the wait queue full (Retry-After: 1),
//	    or the pool shutting down; for "Expect: 100-continue" this is
//	    checked (Pool.Admits) before the engine sends 100 Continue
//	502 the worker died (or broke the protocol) before the response began;
//	    after it began the response is aborted
//	500 the app's status or headers are invalid or over MaxResponseHead,
//	    or the worker reset the stream before responding; after it began
//	    the response is aborted
//	408 the request body stopped arriving, before it reached a worker,
//	    for longer than the engine's body timeout (the connection is then
//	    closed)
//	413 the request body is larger than Config.MaxBody: a Content-Length
//	    over it before a byte of the body is read (and without 100
//	    Continue), a buffered chunked body as soon as it passes it, and a
//	    streamed one by resetting its stream (413 if no response began)
//
// Response head limit: MaxResponseHead (codec.MaxResponseHead, 64 KiB)
// bounds a RESPONSE's status and headers, and the fields of TRAILERS and
// EARLY_HINT. The adapter enforces it (a 500 from the worker, which lives
// on); the codec checks it again and the dispatcher treats a head over it
// as the stream's app error (500, the worker is not killed), trailers and
// early hints over it as invalid (dropped with an error log).
//
// HEAD, 204 and 304 responses owe no body: the app's Content-Length is
// passed through (for HEAD it describes the GET's body, RFC 9110 §9.3.2)
// and a body shorter than it does not abort the response. A HEAD answered
// with neither a Content-Length nor body bytes gets no Content-Length.
//
// Hop-by-hop response headers from the app (httpx.HopByHop), which the
// codec drops and names, are logged here as errors naming the header,
// rather than failing the request: the HTTP engine owns connection
// management. A body longer than the app's
// Content-Length is truncated (as gunicorn does); a shorter one aborts the
// response.
//
// Request bodies are received before a worker slot is taken: a body of up
// to 64 KiB whole, into the pooled scratch memory, and a larger or chunked
// one into pooled 64 KiB chunks, whole when it ends within
// Config.BufferBody (--buffer-body, 1 MiB by default), else its first
// BufferBody bytes; the rest is then streamed by the pump. So a slow upload
// costs a goroutine and memory that grows only as bytes arrive (at most
// BufferBody plus one chunk per request), never a Python worker, and a
// malformed chunked body within BufferBody (bad chunk size, missing CRLF,
// forbidden trailer field) fails here, is answered 400 by the engine and
// never reaches the app. With BufferBody 0 only the first bytes are read
// first, so a client that announces a body and never sends it holds no
// worker either. The engine sends 100 Continue on the first read and
// bounds every wait with its body timeout (408). A body that ends within
// 64 KiB is sent inline, in the REQUEST's write. There is no process-wide
// bound on buffered body memory yet: MaxBody and BufferBody bound it per
// request, the connection count (--max-connections) in all.
//
// Hot path: one pooled scratch state per request, no goroutine unless the
// request body is large or of unknown length (then one goroutine streams
// it), REQUEST and a small body sent in one write, and the frames that
// arrive in one read handled in one wake-up. When RESPONSE arrives together
// with the frame that ends the body, the exact length is passed to the
// engine so it can send Content-Length instead of chunked coding.
//
// # Slow clients: response spooling
//
// A response is relayed frame by frame and its DATA credited to the worker
// once written, so a client that reads slowly would hold the worker (its
// window fills, the app's write blocks) for the whole download. With
// Config.BufferResponse > 0 (--buffer-response, 1 MiB by default) relay
// watches every write that can block on the client (DATA, SENDFILE, the
// flush after a batch) in a batch that does not end the stream: it hands
// its position to the request's spooler and arms a timer (spoolAfter,
// 2 ms). A write that returns first disarms it; hello worlds and any batch
// that ends the stream arm nothing, and a client that keeps up costs a
// timer reset and stop per write, no copy and no goroutine. When the timer
// fires with the write still blocked, its goroutine (the receiver) wins the
// spooler's phase (an atomic compare-and-swap against relay's disarm) and
// takes the stream over: Stream.Keep (relay is still writing from the
// batch Recv returned), the rest of that batch, then every frame until the
// stream ends. DATA goes into the spool, other frames (TRAILERS,
// EARLY_HINT, RESET) are queued as events at their byte position, SENDFILE
// is opened on arrival (as relay would have) and queued; the worker is
// credited as bytes arrive, so it finishes at its own pace and its slot
// frees (OnRelease at its END_STREAM) while the client still downloads.
// relay's goroutine, once its write returns, becomes the drainer: it
// writes the spool to the client in order, flushes whenever it has caught
// up (a streamed response stays live: each chunk still reaches the client
// at once), and answers the stream's end, or a failure the receiver met,
// as relay would. A spooled response stays spooled to its end.
//
// The spool holds memory in 64 KiB chunks up to BufferResponse per
// response (rounded down to whole chunks: below 64 KiB everything goes to
// the file) and BufferResponseMemory (64 MiB) for all of them together,
// beyond which bytes go to an unlinked temporary file in BufferDir
// (os.TempDir() by default; created with os.CreateTemp and removed at
// once, so nothing is left behind whatever happens) of up to
// MaxTempFileSize (1 GiB, nginx's proxy_max_temp_file_size; 0 = memory
// only). Memory bytes precede file bytes: while the file holds unread
// bytes new ones go to it, and it is reused from its start once drained.
// Past these bounds the worker is not credited: it waits for the client,
// as it does without spooling (bytes already received are kept: at most a
// window, 256 KiB, over the bounds; an empty spool always takes a window,
// so one never stalls for want of memory other spools hold). A temporary
// file that cannot be created is logged and the spool stays in memory
// within those rules. BufferResponse 0 turns spooling off.
//
// Ownership: after the hand-over the receiver alone uses the stream (Recv,
// Credit, Reset) and the drainer alone the ResponseWriter; the queue
// (chunks, file offsets, events, the end) is guarded by the spooler's
// mutex, held by neither across a client write, a Recv or a file read. A
// client write that fails makes the drainer stop the receiver (its context
// is cancelled) and wait for it to exit before it resets the stream and
// aborts; the receiver's own failures (the worker died or reset, --timeout,
// the client known gone) are queued and answered by the drainer after the
// receiver exited, with relay's rules (504/abort, kill or cancel). The
// spool's chunks, file and unsent SENDFILE files are released before relay
// returns, on every path. A failed write is only noticed when it returns:
// the engine's write timeout (config.HTTP.WriteTimeout, 60 s) bounds a
// client that stops reading altogether, as it does without spooling.
// SpoolStats counts spooled responses, bytes, memory and open files.
//
// # Request context
//
// Every wait for the worker takes the request's context
// (exchange.Request.Context): the wait in the queue (supervisor Pool.Open),
// the send window of a streamed body, and the response (Stream.Recv). It
// ends when the server stops hard or, once the connection is watched,
// when the client leaves: the stream is reset and the response aborted
// (a queued request leaves the queue without an answer). A deadline
// layered on it is one place for a per-request timeout: a request whose
// deadline passes in the queue gets 503.
//
// --timeout (Config.Timeout) is such a deadline, layered in relay: from
// the REQUEST to the end of the response (queue time is not counted, nor
// the wait in a WSGI worker's own queue, see below).
// When it passes the answer is 504 (an abort once the response started).
// An ASGI stream is cancelled (Stream.Cancel: the adapter cancels the
// app's task, the worker lives); a WSGI worker cannot stop a thread, so
// it is killed (Worker.KillFor) and replaced, and its other requests get
// 502 with a log line naming them and the request that caused the kill.
// WebSocket sessions are exempt.
//
// # Prefetch and recall
//
// A request whose body goes whole with REQUEST (not a WebSocket upgrade)
// is opened with supervisor.OpenOptions.Prefetch: it may wait in a WSGI
// worker's own queue (docs/protocol.md, "Prefetch and recall"). Until the
// worker's first answer on it, Serve's retry loop waits (awaitStart): a
// request the worker gives back unstarted (worker.ErrReturned: recalled
// because a thread elsewhere is free, or its worker died before it could
// start it) is sent again to another worker, from the head of the pool's
// queue (OpenOptions.Again), at most maxReturns times. After 100 ms
// without an answer the client's connection is watched, so a client that
// leaves while its request waits there has it reset (the app never runs
// it). --timeout: when it passes before any answer the stream is
// recalled; if it comes back unstarted it runs again with a fresh clock
// and no worker is killed; if the worker kept it (it had started), the
// deadline counts from the start the worker reports (KEPT), so the wait
// in its queue is never charged and only a request that ran over it gets
// the 504 and the kill. A worker that does not answer the RECALL within
// another --timeout is treated as running it.
//
// # ASGI
//
// When the worker's HELLO says "asgi", REQUEST carries the ASGI scope
// (codec.AppendScope) instead of the environ, and RESPONSE may be a
// 3-tuple whose last item announces trailers: the body is then chunked (unless the app
// set Content-Length) and TRAILERS become HTTP/1.1 trailer fields
// (exchange.TrailerWriter); the app's Trailer header is kept. EARLY_HINT
// becomes a 103 response (dropped for HTTP/1.0 by the engine). The client's
// connection is watched (Request.Watch: the request's context is then
// cancelled when the client leaves) once the app has not answered
// within 10 ms, or once a response is streaming, so a client that leaves
// while the app is still thinking (a long poll) or streaming gets the
// stream reset: the app sees http.disconnect. Watching every request from
// its start would cost about a third of a hello world's throughput; a
// client that left during the first 10 ms is seen as soon as watching
// starts.
//
// # WebSocket
//
// A request with "Upgrade: websocket" to an ASGI worker is checked first
// (wsbridge.CheckHandshake; a refusal is answered before the app sees it),
// then sent as a "websocket" scope, and the stream is handed to
// wsbridge.Bridge.Serve; a denial response comes back to relay as plain
// HTTP, and a WS_ACCEPT that failed to decode is answered like a bad
// RESPONSE. Shutdown closes the bridge's sessions with 1012. WebSocket upgrades
// to a WSGI worker are ordinary requests for the app.
//
// Locking: a Dispatcher holds no lock of its own (its spool counters are
// atomic); per-request state is a pooled scratch struct owned by the
// request's goroutine (and the body pump, which only touches the stream
// and its own buffer), except the spooler, shared with its receiver as
// described under "Slow clients".
package dispatch
