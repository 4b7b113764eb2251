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
//     restarted after a backoff doubling from 100ms to 5s (a crash loop);
//     the log quotes its last output lines (at most 20 lines, 4 KiB) and
//     how many such deaths in a row the slot had ("failures").
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
// streams at once, plus its prefetch (worker.Worker.Prefetch, WSGI only):
// streams it holds in its own queue. Open picks the least-loaded live
// worker with a free thread (busy < cap); OpenWith's Prefetch option lets
// a request whose body goes whole with REQUEST take a prefetch slot (busy
// < cap+pre) when no thread is free. When none is free the caller waits in
// a bounded FIFO queue, and a freed slot is handed straight to the first
// waiter (a prefetch slot only to a waiter that may take one). The queue
// bound is the caller's (the dispatcher's MaxQueue) and counts prefetched
// requests too (they wait, in a worker's queue): a prefetch slot is taken
// only while the bound has room, and a full queue is ErrQueueFull. OpenOptions.Again puts a request a worker gave back at
// the head of the queue, whatever its bound.
//
// Rebalancing (rebalanceLocked, under mu): when a release leaves a worker
// with a free thread and nothing queued, or a worker is installed, and
// some worker holds more streams than threads, the pool recalls
// (worker.Worker.Recall) as many of those as there are free threads,
// minus recalls still unanswered; they come back (worker.ErrReturned) and
// the dispatcher re-opens them. Recall never blocks (its frames are
// written by a goroutine), so it may be called under mu.
//
// Generations (generation.go): every worker start gets a new generation
// number (Pool.genSeq), carried by its OnRelease callback, so that a
// replaced worker's releases are ignored. A slot's worker is swapped only
// for one that is already ready (installLocked): the old one is kept in
// Pool.retiring, drains its in-flight streams and exits (retire), never
// killed for a soft limit; Shutdown and Close reach it there. Reload
// starts a whole new generation beside the old one and swaps every slot
// only once all are ready; if one fails to boot the new ones are killed,
// the old generation keeps serving and the traceback goes to the worker
// output. The monitor watches whatever worker its slot holds (a kick
// wakes it after a swap); a worker's end after it was swapped out is not
// a death.
//
// Recycling (recycle.go) is a loop apart from the pool, the recycler,
// started only when a limit is set: it looks every 250ms (and at once
// when a worker reaches max-requests) at each slot's handled count
// (max-requests + per-worker jitter), uptime (max-lifetime) and resident
// memory (/proc/PID/statm, max-rss), and for a worker past one boots a
// successor while the worker keeps serving (no capacity dip), then swaps.
// A successor that fails to boot leaves the old worker serving and the
// slot is retried after recycleRetry.
//
// Scaling (scale.go): AddWorker appends a slot started like a
// replacement; RemoveWorker takes the last slot out (removed) and retires
// its worker. The last slot is never removed.
//
// Autoscaling (autoscale.go) is another loop apart from the pool, the
// autoscaler, started by StartAutoscaler (--max-workers): every 250ms it
// samples Stats and, through a pure policy (decide), calls AddWorker when
// requests were queued in two consecutive samples, fewer than Max slots
// exist and none is still starting; and RemoveWorker when, for
// ScaleDownAfter, nothing queued and the requests in flight fitted in every
// worker but the last, and more than Min slots exist. Each change restarts
// both clocks. It holds no lock of its own and only calls the pool's
// public methods; SIGTTIN/SIGTTOU still act on top of it.
//
// Worker output goes through a LogWriter: a bounded queue written by one
// goroutine, which drops (and later counts) lines rather than block when
// the log destination does not take output, so a worker that prints can
// never hang on krait's log and a stop never waits for it.
//
// Stats (stats.go) is a snapshot for metrics and readiness: each slot's
// state, pid, busy threads, prefetched requests and capacity, the queue
// depth (requests waiting for a thread: in the pool's queue or prefetched), restarts by reason
// (retired, died, died_early, boot_failed, reload, max_requests,
// max_rss, max_lifetime) and a histogram of queue waits.
// It holds Pool.mu only to copy the slots; the restart and wait counters
// are atomics in Pool.stats, bumped outside the lock by the slot's
// monitor and by the request that waited.
//
// Locking: Pool.mu guards the slots list and each slot's worker pointer,
// generation, busy and handled counts, failing/recycling/removed flags,
// the retiring set, genSeq, the wait queue and the closed state.
// reloadMu serializes Reloads (never taken under mu). Worker callbacks (a
// stream ended) take it briefly; nothing blocks while holding it. A slot's
// backoff and start time belong to its monitor goroutine.
package supervisor
