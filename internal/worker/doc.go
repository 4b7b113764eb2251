// Package worker runs one Python worker process and multiplexes request
// streams over its private socketpair (docs/protocol.md).
//
// Start spawns `python -u -m krait_worker ...` with the socket as fd 3,
// copies its stdout/stderr line by line to an output writer, and waits for
// the HELLO handshake; an import failure comes back as a *BootError. The
// output writer must not block (the supervisor passes a LogWriter): a
// worker whose pipe is not drained stalls on its next print. The worker
// ignores SIGINT and SIGTERM (a signal to krait's process group must not
// cut requests short); krait stops it with SHUTDOWN, or SIGKILL. When
// Shutdown's ctx expires (the graceful timeout ran out) an ASGI worker gets
// a second SHUTDOWN, "now": it cancels its tasks, runs lifespan shutdown
// (at most 5 s) and exits, and is killed only HurryGrace later; a WSGI
// worker, or any worker whose ctx was cancelled (a stop "now"), is killed
// at once. LastOutput returns the tail of its output for crash logs.
//
// After the handshake one reader goroutine per worker reads frames in big
// chunks and appends each stream's frames, as raw frames, to that stream's
// inbox; every stream touched by one read is woken once (one channel send),
// so a RESPONSE and its last DATA that arrived together are seen together.
// Frames to the worker go through a batching wire.Writer. Streams live in a
// fixed table indexed by id, recycled through a sync.Pool, so the hot path
// allocates nothing and starts no goroutine.
//
// Death: Dead turns true the moment the reader fails or the process is
// reaped, whichever is first (a child that inherited the socket can keep
// it open after the process died); from then on Open and SendRequest
// refuse. SendRequest's ErrNotDelivered means not a byte was written, so
// the request may run elsewhere; a request that was written may have
// started and is never re-run (its stream fails with ErrWorkerDied),
// except with prefetch (below). Done closes once the process is reaped and
// the reader ended.
//
// Prefetch and recall (docs/protocol.md): a WSGI worker may hold
// Prefetch streams beyond its Capacity in its own queue. SendRequest
// numbers REQUESTs as the writer queues them (wire.Writer.AppendSeq), so
// the send order is the order the worker receives them. Worker.Recall(n)
// sends RECALL for the newest recallable (Stream.SetRecallable) unended
// streams beyond the first Capacity in send order; Stream.Recall recalls
// one. RETURNED ends a stream with ErrReturned; KEPT records how long it
// had run (Stream.RunningFor). Stream.Await waits, without consuming, for
// the first answer. When the worker dies and the reader saw its socket to
// the end (EOF or ECONNRESET), the recallable unended streams beyond the
// first Capacity in send order fail with ErrReturned (wrapping the death)
// instead: the worker cannot have started them, they may run elsewhere.
// A stream's user that cannot decode a frame reports it with
// Stream.ProtocolError: the worker is logged and killed here, not by the
// user, and the supervisor replaces it.
//
// Killing on purpose: KillFor(cause) kills the process for a reason
// (a request over --timeout, a missed heartbeat); the streams in flight
// then fail with an ErrWorkerDied error saying "killed: cause", so the
// requests that lose their worker are logged with the one that caused it.
// Stream.Cancel is Reset with a reason: the ASGI adapter cancels the
// stream's task (--timeout), and still ends the stream itself.
//
// Heartbeat: with Config.HeartbeatTimeout > 0 a goroutine per worker
// sends PING on stream 0 every HeartbeatTimeout/4 (never a second one
// while one is unanswered) and calls KillFor when the oldest unanswered
// PING is HeartbeatTimeout old. The reader records each PONG's sequence
// number. The write runs on its own goroutine so a worker that stopped
// reading cannot stall the check. Python answers from the code that reads
// the socket: the ASGI event loop (a blocked loop misses it), the WSGI
// main thread. A WSGI worker with one thread runs the app on that thread,
// so while it has a request in flight (Worker.active) the wait is not
// counted: a hung request there is --timeout's to end.
//
// Flow control: krait charges its receive window for every DATA and
// WS_MESSAGE byte and kills a worker that sends beyond it (a protocol
// error); the send window is taken with AcquireSendWindow before body
// bytes are sent. The fake worker in workertest enforces the same.
//
// Waits take a context (the request's: cancelled when its client is
// known gone or the server stops hard, and where a per-request deadline
// goes): Recv, RecvUntil and AcquireSendWindow end with an error wrapping
// ctx.Err() (and its cause) when ctx ends first, leaving the stream as it
// is (the caller resets it); frames already received, and the stream's
// end, are returned before that error. They select on ctx.Done() beside
// the stream's own channels and start no goroutine; context.Background's
// nil Done costs nothing.
//
// Settings: Config embeds config.Worker, passed whole from krait serve's
// settings; this package declares no default of its own, and Start
// refuses a Config missing a required setting.
//
// Locking: Worker.mu guards stream-id allocation, the dead state and
// killCause; recallMu serializes Recall, which walks the stream table
// from another goroutine, holding a reference (Stream.tryRef) on each
// stream it looks at so none is recycled under it; Stream.mu guards a stream's inbox, windows and end flags. The table's
// entries are atomic pointers: Open stores, the reader loads and clears. A
// Stream is shared by the reader and its user until both are done with it
// (a two-count reference), then recycled.
package worker
