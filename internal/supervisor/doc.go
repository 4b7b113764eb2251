// Package supervisor runs krait's pool of Python worker processes: it
// starts them all (failing fast, like gunicorn, when the app cannot be
// imported), restarts a worker that dies, and hands out worker slots to
// requests.
//
// Failures after start-up never stop krait:
//   - A worker that ran fine (it ended at least one stream itself, or lived
//     healthyUptime) is replaced at once, whatever killed it: a request that
//     crashes it must not cost the other requests capacity.
//   - A worker that dies soon after boot without serving anything is
//     restarted after a backoff doubling from 100ms to 5s (a crash loop).
//   - A replacement that fails to boot (the app's code changed on disk and
//     no longer imports, EMFILE, a boot timeout) is retried with the same
//     capped backoff; the log says why (the app's traceback goes to the
//     worker output unescaped). The other workers keep serving.
//   - When every slot's last start failed, queued and new requests get
//     ErrUnavailable (503) at once instead of waiting for a worker that may
//     never come; while any worker runs or is starting, requests queue.
//
// A dead worker leaves rotation the moment its connection fails or its
// process is reaped (worker.Worker.Dead), not when Done closes, so a
// request is never handed to it; Open retries on another worker when the
// one it picked died meanwhile.
//
// Waiting: Open waits in the queue until a slot is free or ctx
// ends (then it leaves the queue, handing back a slot granted at the same
// moment, with an error wrapping ctx.Err()). A request's context (the
// engine cancels it when the client is known gone or the server stops
// hard) therefore ends its wait; a deadline on it bounds the wait too.
//
// Settings: every worker gets Config.Worker (krait serve's config.Worker)
// unchanged. The supervisor declares no defaults (config.Default is the
// one place): Start refuses Workers < 1, and a config.Worker missing a
// required setting fails the first worker's start, naming it.
//
// Slot accounting: each worker serves at most its capacity (WSGI threads)
// streams at once. Open picks the least-loaded live worker with a free
// slot; when none is free the caller waits in a bounded FIFO queue, and a
// freed slot is handed straight to the first waiter. The queue bound is
// the caller's (the dispatcher's MaxQueue); a full queue is ErrQueueFull.
//
// Worker output goes through a LogWriter: a bounded queue written by one
// goroutine, which drops (and later counts) lines rather than block when
// the log destination does not take output, so a worker that prints can
// never hang on krait's log and a stop never waits for it.
//
// Stats (stats.go) is a snapshot for metrics and readiness: each slot's
// state, pid, busy count and capacity, the queue depth, restarts by reason
// (retired, died, died_early, boot_failed) and a histogram of queue waits.
// It holds Pool.mu only to copy the slots; the restart and wait counters
// are atomics in Pool.stats, bumped outside the lock by the slot's
// monitor and by the request that waited.
//
// Locking: Pool.mu guards the slots' worker pointers, busy counts and
// failing flags, the wait queue and the closed state. Worker callbacks (a
// stream ended) take it briefly; nothing blocks while holding it. A slot's
// backoff and start time belong to its monitor goroutine.
package supervisor
