package supervisor

import (
	"context"
	"fmt"
	"time"

	"github.com/krait-server/krait/internal/worker"
)

// installLocked puts nw (started with generation gen) in sl's place and
// hands it the waiters. The worker it replaces, if any, keeps its
// in-flight streams: it is returned for the caller to retire (its
// releases carry the old generation and are ignored from now on). The
// monitor is kicked so that it watches nw.
func (p *Pool) installLocked(sl *slot, nw *worker.Worker, gen int) (old *worker.Worker) {
	old = sl.w
	sl.w = nw
	sl.gen = gen
	sl.busy = 0
	sl.cap = nw.Capacity()
	sl.pre = nw.Prefetch()
	sl.started = time.Now()
	sl.failing = false
	sl.handled = 0
	sl.limit = p.cfg.Recycle.requestLimit()
	if old != nil {
		p.retiring[old] = struct{}{}
	}
	p.grantLocked(sl)
	if p.waiting == 0 {
		p.rebalanceLocked() // its free threads may take prefetched requests
	}
	select {
	case sl.kick <- struct{}{}:
	default:
	}
	return old
}

// retire drains old (replaced in its slot by a ready successor) and
// waits for it to exit. It is never killed for a soft limit: only the
// pool's own Shutdown deadline or Close ends it early. Callers did
// p.wg.Add(1).
func (p *Pool) retire(sl *slot, old *worker.Worker, reason string) {
	defer p.wg.Done()
	p.stats.restart(reason)
	p.log.Info("worker replaced, draining the old one", "worker", sl.id, "pid", old.Pid(), "reason", reason)
	// Shutdown/Close reach it through p.retiring; here it only waits.
	_ = old.Shutdown(context.Background())
	p.mu.Lock()
	delete(p.retiring, old)
	p.mu.Unlock()
	p.log.Info("old worker exited", "worker", sl.id, "pid", old.Pid(), "reason", reason, "status", old.ExitStatus())
}

// swap installs nw (generation gen) in sl and retires the worker it
// replaces. When the pool closed meanwhile nw is killed and false is
// returned. want, when not nil, is the worker nw is meant to replace: if
// sl holds another one by now (want died and was replaced), nw is let go.
func (p *Pool) swap(sl *slot, want, nw *worker.Worker, gen int, reason string) bool {
	p.mu.Lock()
	if p.closed || sl.removed || (want != nil && sl.w != want) {
		closed := p.closed
		p.mu.Unlock()
		nw.Kill()
		<-nw.Done()
		return !closed
	}
	old := p.installLocked(sl, nw, gen)
	if old != nil {
		p.wg.Add(1)
	}
	p.mu.Unlock()
	if old != nil {
		go p.retire(sl, old, reason)
	}
	return true
}

// Reload starts a new generation of workers (each re-imports the app)
// beside the running one. Once every new worker is ready they take the
// slots and the old ones finish their in-flight requests and exit, so a
// reload under load loses nothing. If any new worker fails to boot the
// whole new generation is abandoned, the old one keeps serving and the
// error (wrapping a *worker.BootError whose traceback also goes to the
// worker output) is returned. Reloads run one at a time.
func (p *Pool) Reload(ctx context.Context) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	slots := append([]*slot(nil), p.slots...)
	gens := make([]int, len(slots))
	for i := range slots {
		p.genSeq++
		gens[i] = p.genSeq
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer p.wg.Done()

	// Pool.Shutdown/Close cancel p.ctx; ctx is the caller's.
	bootCtx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	type result struct {
		i   int
		w   *worker.Worker
		err error
	}
	results := make(chan result, len(slots))
	for i, sl := range slots {
		go func() {
			w, err := worker.Start(bootCtx, p.workerConfig(sl, gens[i]))
			results <- result{i, w, err}
		}()
	}
	ws := make([]*worker.Worker, len(slots))
	var first error
	for range slots {
		r := <-results
		if r.err != nil {
			if first == nil {
				first = fmt.Errorf("reload: starting worker %d: %w", slots[r.i].id, r.err)
				p.reportBootError(slots[r.i], r.err)
				cancel()
			}
			continue
		}
		ws[r.i] = r.w
	}
	if first != nil {
		for _, w := range ws {
			if w != nil {
				w.Kill()
				<-w.Done()
			}
		}
		p.stats.restart(RestartBootFailed)
		return first
	}
	for i, sl := range slots {
		if !p.swap(sl, nil, ws[i], gens[i], RestartReload) {
			// Closed meanwhile: let the rest go too.
			for _, w := range ws[i+1:] {
				w.Kill()
				<-w.Done()
			}
			return ErrClosed
		}
	}
	return nil
}
