package supervisor

import (
	"math/rand/v2"
	"time"

	"github.com/krait-server/krait/internal/worker"
)

// Recycle holds the soft limits after which a worker is replaced. A
// worker past one keeps serving until its successor is ready (no
// capacity dip), then takes no new request, finishes those in flight and
// exits: it is never killed mid-request for a soft limit.
type Recycle struct {
	// MaxRequests: replace a worker after it served this many requests
	// (0 = never), plus a random 0..MaxRequestsJitter per worker so that
	// workers do not all recycle at once.
	MaxRequests, MaxRequestsJitter int
	// MaxRSS: replace a worker whose resident memory (sampled from
	// /proc/PID/statm every Interval) exceeds this many bytes (0 = never).
	MaxRSS int64
	// MaxLifetime: replace a worker this long after it started (0 = never).
	MaxLifetime time.Duration
	// Interval is how often the recycler looks (0 = 250ms).
	Interval time.Duration
}

func (r Recycle) enabled() bool {
	return r.MaxRequests > 0 || r.MaxRSS > 0 || r.MaxLifetime > 0
}

// requestLimit is one worker's max-requests, jitter drawn (0 = none).
func (r Recycle) requestLimit() int {
	if r.MaxRequests <= 0 {
		return 0
	}
	if r.MaxRequestsJitter <= 0 {
		return r.MaxRequests
	}
	return r.MaxRequests + rand.IntN(r.MaxRequestsJitter+1)
}

// recycleRetry is how long a slot waits before trying again when its
// successor failed to boot (the old worker keeps serving meanwhile).
const recycleRetry = 5 * time.Second

// recycler is the loop apart from the pool that watches the workers
// against the soft limits and asks the pool to replace one
// (RoadRunner's lesson: the pool's own bookkeeping stays simple, and a
// busy worker is never killed for a soft limit).
func (p *Pool) recycler() {
	defer p.wg.Done()
	iv := p.cfg.Recycle.Interval
	if iv <= 0 {
		iv = 250 * time.Millisecond
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-p.recycleNow:
		case <-p.ctx.Done():
			return
		}
		type due struct {
			sl     *slot
			w      *worker.Worker
			reason string
		}
		var todo []due
		var sample []due
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return
		}
		for _, sl := range p.slots {
			w := sl.w
			if w == nil || sl.recycling || w.Stopping() || w.Dead() {
				continue
			}
			switch {
			case sl.limit > 0 && sl.handled >= sl.limit:
				todo = append(todo, due{sl, w, RestartMaxRequests})
			case p.cfg.Recycle.MaxLifetime > 0 && time.Since(sl.started) >= p.cfg.Recycle.MaxLifetime:
				todo = append(todo, due{sl, w, RestartMaxLifetime})
			case p.cfg.Recycle.MaxRSS > 0:
				sample = append(sample, due{sl, w, RestartMaxRSS})
			}
		}
		p.mu.Unlock()
		for _, d := range sample {
			if rss, ok := worker.ReadRSS(d.w.Pid()); ok && rss > p.cfg.Recycle.MaxRSS {
				p.log.Info("worker over --max-rss", "worker", d.sl.id, "pid", d.w.Pid(), "rss", rss, "max_rss", p.cfg.Recycle.MaxRSS)
				todo = append(todo, d)
			}
		}
		for _, d := range todo {
			p.mu.Lock()
			if p.closed || d.sl.w != d.w || d.sl.recycling {
				p.mu.Unlock()
				continue
			}
			d.sl.recycling = true
			p.genSeq++
			gen := p.genSeq
			p.wg.Add(1)
			p.mu.Unlock()
			go func(d due) {
				defer p.wg.Done()
				ok := p.recycle(d.sl, d.w, gen, d.reason)
				p.mu.Lock()
				d.sl.recycling = false
				p.mu.Unlock()
				if !ok {
					p.retryLater(d.sl)
				}
			}(d)
		}
	}
}

// retryLater keeps sl out of the recycler's sight for recycleRetry after
// its successor failed to boot, so a broken app does not spin.
func (p *Pool) retryLater(sl *slot) {
	p.mu.Lock()
	sl.recycling = true
	p.mu.Unlock()
	go func() {
		if p.sleep(recycleRetry) {
			p.mu.Lock()
			sl.recycling = false
			p.mu.Unlock()
		}
	}()
}

// recycle boots a successor for w (still serving meanwhile) and swaps it
// in; false when the successor failed to boot.
func (p *Pool) recycle(sl *slot, w *worker.Worker, gen int, reason string) bool {
	p.log.Info("recycling worker: starting its successor first", "worker", sl.id, "pid", w.Pid(), "reason", reason)
	nw, err := worker.Start(p.ctx, p.workerConfig(sl, gen))
	if err != nil {
		if p.ctx.Err() != nil {
			return true
		}
		p.stats.restart(RestartBootFailed)
		p.log.Error("a recycling successor failed to start; the old worker keeps serving",
			"worker", sl.id, "pid", w.Pid(), "reason", reason, "retry_in", recycleRetry.String(), "err", err)
		p.reportBootError(sl, err)
		return false
	}
	p.swap(sl, w, nw, gen, reason)
	return true
}
