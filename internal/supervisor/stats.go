package supervisor

import (
	"sync/atomic"
	"time"
)

// Worker states, as Stats reports them. Every slot is in exactly one, so
// the counts add up to the pool's size (-w).
const (
	// StateIdle: running and in rotation, no request in flight.
	StateIdle = "idle"
	// StateBusy: running and in rotation, serving at least one request.
	StateBusy = "busy"
	// StateStopping: still running but out of rotation: retiring, or dead
	// and not yet reaped.
	StateStopping = "stopping"
	// StateStarting: no process yet; a (re)start is under way or waiting
	// out its backoff.
	StateStarting = "starting"
	// StateFailing: no process, and the last attempt to start one failed.
	StateFailing = "failing"
)

// WorkerStates lists the states in a fixed order (for exporters that
// want every state present, zeros included).
var WorkerStates = []string{StateIdle, StateBusy, StateStopping, StateStarting, StateFailing}

// Restart reasons, as Stats reports them.
const (
	// RestartRetired: the worker was asked to stop (recycled) and exited.
	RestartRetired = "retired"
	// RestartDied: a worker that ran fine (served a request or lived
	// healthyUptime) died: a crash, the OOM killer, kill -9.
	RestartDied = "died"
	// RestartDiedEarly: it died soon after boot without serving anything;
	// its replacement waits out a backoff (a crash loop).
	RestartDiedEarly = "died_early"
	// RestartBootFailed: a replacement failed to start and is retried.
	RestartBootFailed = "boot_failed"
	// RestartReload: replaced by a new generation on reload (SIGHUP).
	RestartReload = "reload"
	// RestartMaxRequests, RestartMaxRSS, RestartMaxLifetime: recycled
	// for a soft limit (--max-requests, --max-rss, --max-lifetime).
	RestartMaxRequests = "max_requests"
	RestartMaxRSS      = "max_rss"
	RestartMaxLifetime = "max_lifetime"
)

// RestartReasons lists the reasons in a fixed order.
var RestartReasons = []string{RestartRetired, RestartDied, RestartDiedEarly, RestartBootFailed,
	RestartReload, RestartMaxRequests, RestartMaxRSS, RestartMaxLifetime}

// QueueWaitBuckets are the upper bounds, in seconds, of the queue wait
// histogram Stats reports (cumulative, as Prometheus wants them).
var QueueWaitBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// queueWaitBounds are QueueWaitBuckets as durations, for observe.
var queueWaitBounds = func() []time.Duration {
	d := make([]time.Duration, len(QueueWaitBuckets))
	for i, s := range QueueWaitBuckets {
		d[i] = time.Duration(s * float64(time.Second))
	}
	return d
}()

// poolStats are the counters the pool keeps for Stats. They are atomics,
// written without Pool.mu (a restart is counted by the slot's monitor, a
// queue wait by the request that waited).
type poolStats struct {
	restarts [8]atomic.Uint64 // indexed like RestartReasons
	// Queue wait: one counter per bucket (not cumulative: observe adds to
	// one), count and sum in nanoseconds.
	waitBuckets [15]atomic.Uint64 // len(QueueWaitBuckets)+1; the last is +Inf
	waitCount   atomic.Uint64
	waitSumNs   atomic.Uint64
}

// restart counts one restart for reason (one of RestartReasons).
func (s *poolStats) restart(reason string) {
	for i, r := range RestartReasons {
		if r == reason {
			s.restarts[i].Add(1)
			return
		}
	}
}

// observeWait records how long a request waited in the queue.
func (s *poolStats) observeWait(d time.Duration) {
	i := 0
	for i < len(queueWaitBounds) && d > queueWaitBounds[i] {
		i++
	}
	s.waitBuckets[i].Add(1)
	s.waitCount.Add(1)
	s.waitSumNs.Add(uint64(max(d, 0)))
}

// Stats is a snapshot of the pool, for metrics and readiness.
type Stats struct {
	// Workers holds one entry per slot, in slot order.
	Workers []WorkerStats
	// Queued is the number of requests waiting for a worker thread: in
	// the pool's queue, and prefetched into a worker's own queue (the
	// streams a worker holds beyond its capacity).
	Queued int
	// Closed: the pool is shutting down and takes no more requests.
	Closed bool
	// Restarts counts restarts by reason (every key of RestartReasons is
	// present).
	Restarts map[string]uint64
	// QueueWait describes how long requests that had to queue waited.
	QueueWait QueueWait
}

// WorkerStats describes one slot.
type WorkerStats struct {
	ID       int    // the slot, 1..-w: stable across restarts
	Pid      int    // the process; 0 when none is running
	State    string // one of WorkerStates
	Busy     int    // requests in flight on its threads (at most Capacity)
	Capacity int    // requests it may run at once
	// Prefetched: requests handed to it beyond Capacity, waiting in its
	// own queue (counted in Stats.Queued too).
	Prefetched int
}

// QueueWait is a histogram of queue waits in Prometheus' shape.
type QueueWait struct {
	Count      uint64
	SumSeconds float64
	// Buckets maps each bound of QueueWaitBuckets to the cumulative count
	// of waits at most that long.
	Buckets map[float64]uint64
}

// Ready reports whether at least one worker is running and in rotation,
// and the pool is not closed: it can serve a request now or soon.
func (s *Stats) Ready() bool {
	if s.Closed {
		return false
	}
	for _, w := range s.Workers {
		if w.State == StateIdle || w.State == StateBusy {
			return true
		}
	}
	return false
}

// Stats returns a snapshot of the pool. It holds Pool.mu only to copy the
// slots; the counters are read atomically afterwards, so the snapshot is
// consistent per field, not across them.
func (p *Pool) Stats() Stats {
	st := Stats{Workers: make([]WorkerStats, len(p.slots))}
	p.mu.Lock()
	for i, sl := range p.slots {
		ws := WorkerStats{ID: sl.id, Busy: min(sl.busy, sl.cap), Capacity: sl.cap, Prefetched: max(sl.busy-sl.cap, 0)}
		switch {
		case sl.w == nil && sl.failing:
			ws.State = StateFailing
		case sl.w == nil:
			ws.State = StateStarting
		case sl.w.Stopping() || sl.w.Dead():
			ws.State = StateStopping
		case sl.busy > 0:
			ws.State = StateBusy
		default:
			ws.State = StateIdle
		}
		if sl.w != nil {
			ws.Pid = sl.w.Pid()
		} else {
			ws.Busy, ws.Prefetched = 0, 0
		}
		st.Queued += ws.Prefetched
		st.Workers[i] = ws
	}
	st.Queued += p.waiting
	st.Closed = p.closed
	p.mu.Unlock()

	st.Restarts = make(map[string]uint64, len(RestartReasons))
	for i, r := range RestartReasons {
		st.Restarts[r] = p.stats.restarts[i].Load()
	}
	qw := &st.QueueWait
	qw.Buckets = make(map[float64]uint64, len(QueueWaitBuckets))
	var cum uint64
	for i, b := range QueueWaitBuckets {
		cum += p.stats.waitBuckets[i].Load()
		qw.Buckets[b] = cum
	}
	// Count is read last and raised to cover every bucket, so a scrape
	// racing an observation never shows buckets above the count.
	qw.Count = max(p.stats.waitCount.Load(), cum+p.stats.waitBuckets[len(QueueWaitBuckets)].Load())
	qw.SumSeconds = time.Duration(p.stats.waitSumNs.Load()).Seconds()
	return st
}
