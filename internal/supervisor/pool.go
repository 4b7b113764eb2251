package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/worker"
)

// Config describes the worker pool.
type Config struct {
	// Worker is what every worker runs and how (config.Worker, from krait
	// serve's settings), passed to each worker unchanged. There are no
	// defaults here: Start refuses one without Python, App, Interface,
	// Threads or BootTimeout (see worker.Config).
	Worker config.Worker
	// Workers is the number of worker processes (at least 1).
	Workers int
	// AdapterDir is where python.Install wrote the adapter.
	AdapterDir string
	// Log is the error log (nil = slog.Default()).
	Log *slog.Logger
	// Output receives the workers' stdout/stderr lines, prefixed with
	// "[worker N] " (nil = discard). Unless it is a *LogWriter already,
	// the pool puts one in front of it, so a blocked destination never
	// blocks a worker (lines are dropped and counted instead).
	Output io.Writer
	// Recycle holds the soft limits after which a worker is replaced (its
	// successor boots first, then it drains and exits); zero = none.
	Recycle Recycle
}

// Errors returned by Open.
var (
	// ErrQueueFull: every slot is busy and the wait queue is full (503).
	ErrQueueFull = errors.New("every worker is busy and the request queue is full")
	// ErrClosed: the pool is shutting down (503).
	ErrClosed = errors.New("worker pool is shutting down")
	// ErrUnavailable: no worker is running and the last attempt to start
	// each one failed (the app no longer imports, EMFILE, ...): answer
	// 503 instead of queueing for a worker that may never come.
	ErrUnavailable = errors.New("no worker is running: replacements fail to start")
)

// Restart policy. A worker that ran fine (served a request, or lived
// healthyUptime) is replaced at once: a request that crashes it must not
// cost the others capacity. One that dies soon after boot without serving
// anything, or a replacement that fails to boot, is retried after a
// backoff doubling from minBackoff to maxBackoff, so a crash loop does not
// spin.
const (
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	healthyUptime = 10 * time.Second
)

// The crash-loop log quotes at most this much of the worker's output.
const (
	crashTailLines = 20
	crashTailBytes = 4 << 10
)

func nextBackoff(b time.Duration) time.Duration {
	if b == 0 {
		return minBackoff
	}
	return min(2*b, maxBackoff)
}

// Pool is a running set of workers.
type Pool struct {
	cfg    Config
	log    *slog.Logger
	ctx    context.Context // canceled by Shutdown/Close: aborts (re)starts
	cancel context.CancelFunc
	wg     sync.WaitGroup // slot monitors

	mu       sync.Mutex
	slots    []*slot
	queue    []*waiter // FIFO; canceled entries are skipped
	waiting  int       // live (not canceled) entries in queue
	closed   bool
	genSeq   int                         // last worker generation handed out
	retiring map[*worker.Worker]struct{} // replaced, draining; Shutdown/Close reach them too

	reloadMu   sync.Mutex    // one Reload at a time
	recycleNow chan struct{} // wakes the recycler (a worker reached max-requests)

	stats poolStats // counters for Stats (stats.go); atomics, not under mu
}

type slot struct {
	id      int
	w       *worker.Worker // nil while (re)starting
	gen     int            // bumped with each worker, to ignore stale releases
	busy    int            // streams handed to w and not ended: at most cap+pre
	cap     int            // w's capacity (threads)
	pre     int            // w's prefetch: streams beyond cap it may queue itself
	started time.Time
	backoff time.Duration
	// earlyDeaths counts the slot's workers in a row that died soon after
	// boot (the crash-loop log's "failures"); monitor only.
	earlyDeaths int
	// failing: w is nil and the last attempt to start a worker failed.
	failing bool
	// handled counts the streams w's generation released (max-requests);
	// limit is w's own max-requests (jittered), 0 = none.
	handled, limit int
	// recycling: a successor for w is booting (the recycler's).
	recycling bool
	// kick wakes the monitor when w was swapped for a new worker or the
	// slot was removed (SIGTTOU).
	kick chan struct{}
	// removed: the slot left p.slots (RemoveWorker); its monitor ends.
	removed bool
}

type grant struct {
	w   *worker.Worker
	sl  *slot
	gen int
	err error
}

type waiter struct {
	ch       chan grant // one slot
	handed   bool
	canceled bool
	prefetch bool // may take a prefetch slot (OpenOptions.Prefetch)
}

var waiterPool = sync.Pool{New: func() any { return &waiter{ch: make(chan grant, 1)} }}

// Start starts cfg.Workers workers and waits until every one is ready. If
// one fails to boot the others are killed and the error (wrapping a
// *worker.BootError when the app failed to import) is returned.
func Start(ctx context.Context, cfg Config) (*Pool, error) {
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("supervisor: Workers is %d, want at least 1", cfg.Workers)
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if _, ok := cfg.Output.(*LogWriter); !ok && cfg.Output != nil {
		cfg.Output = NewLogWriter(cfg.Output, 0)
	}
	pctx, cancel := context.WithCancel(context.Background())
	p := &Pool{cfg: cfg, log: cfg.Log, ctx: pctx, cancel: cancel,
		retiring: map[*worker.Worker]struct{}{}, recycleNow: make(chan struct{}, 1)}
	p.slots = make([]*slot, cfg.Workers)
	for i := range p.slots {
		p.genSeq++
		p.slots[i] = &slot{id: i + 1, gen: p.genSeq, kick: make(chan struct{}, 1)}
	}

	// Boot in parallel: a big Django app takes seconds to import.
	bootCtx, bootCancel := context.WithCancel(ctx)
	defer bootCancel()
	type result struct {
		sl  *slot
		w   *worker.Worker
		err error
	}
	results := make(chan result, len(p.slots))
	for _, sl := range p.slots {
		go func(sl *slot) {
			w, err := worker.Start(bootCtx, p.workerConfig(sl, sl.gen))
			results <- result{sl, w, err}
		}(sl)
	}
	var first error
	var started []*worker.Worker
	for range p.slots {
		r := <-results
		if r.err != nil {
			if first == nil {
				first = fmt.Errorf("starting worker %d: %w", r.sl.id, r.err)
				bootCancel()
			}
			continue
		}
		r.sl.w = r.w
		r.sl.cap = r.w.Capacity()
		r.sl.pre = r.w.Prefetch()
		r.sl.started = time.Now()
		r.sl.limit = p.cfg.Recycle.requestLimit()
		started = append(started, r.w)
	}
	if first != nil {
		for _, w := range started {
			w.Kill()
		}
		for _, w := range started {
			<-w.Done()
		}
		cancel()
		return nil, first
	}
	for _, sl := range p.slots {
		p.wg.Add(1)
		go p.monitor(sl)
	}
	if p.cfg.Recycle.enabled() {
		p.wg.Add(1)
		go p.recycler()
	}
	w := p.slots[0].w
	p.log.Info("workers ready", "workers", len(p.slots), "interface", w.Interface(),
		"capacity", w.Capacity(), "adapter", w.AdapterVersion())
	return p, nil
}

func (p *Pool) workerConfig(sl *slot, gen int) worker.Config {
	return worker.Config{
		Worker: p.cfg.Worker, ID: sl.id, AdapterDir: p.cfg.AdapterDir,
		Output: p.cfg.Output, Log: p.log,
		OnRelease: func() { p.release(sl, gen) },
	}
}

// monitor restarts sl's worker each time it dies, until the pool closes.
// Only Start treats a boot failure as fatal (the app cannot run at all);
// here a replacement that fails to start is retried with backoff while the
// other workers keep serving.
func (p *Pool) monitor(sl *slot) {
	defer p.wg.Done()
	for {
		p.mu.Lock()
		w, removed := sl.w, sl.removed
		p.mu.Unlock()
		if removed {
			return
		}
		select {
		case <-w.Done():
		case <-sl.kick:
			continue // w was swapped for a successor: watch that one
		case <-p.ctx.Done():
			return
		}
		p.mu.Lock()
		if sl.removed {
			p.mu.Unlock()
			return
		}
		if sl.w != w {
			// Swapped meanwhile (reload, recycling): its end is the
			// retirer's business, not a death.
			p.mu.Unlock()
			continue
		}
		closed := p.closed
		sl.w = nil
		sl.busy = 0
		p.genSeq++
		sl.gen = p.genSeq
		gen := sl.gen
		p.mu.Unlock()
		if closed {
			return
		}
		uptime := time.Since(sl.started).Round(time.Millisecond).String()
		served := w.Served()
		switch {
		case w.Stopping():
			p.stats.restart(RestartRetired)
			sl.backoff = 0
			sl.earlyDeaths = 0
			p.log.Info("worker retired", "worker", sl.id, "pid", w.Pid(), "status", w.ExitStatus())
		case served > 0 || time.Since(sl.started) >= healthyUptime:
			// It ran fine: whatever killed it (a request that crashes it,
			// the OOM killer, kill -9) is no crash loop.
			p.stats.restart(RestartDied)
			sl.backoff = 0
			sl.earlyDeaths = 0
			p.log.Warn("worker died, restarting it at once", "worker", sl.id, "pid", w.Pid(),
				"status", w.ExitStatus(), "uptime", uptime, "served", served)
		default:
			p.stats.restart(RestartDiedEarly)
			sl.backoff = nextBackoff(sl.backoff)
			sl.earlyDeaths++
			// Its last output lines usually say why (a traceback).
			p.log.Warn("worker died soon after boot without serving a request, restarting it after a backoff",
				"worker", sl.id, "pid", w.Pid(), "status", w.ExitStatus(), "uptime", uptime,
				"backoff", sl.backoff.String(), "failures", sl.earlyDeaths,
				"output", w.LastOutput(crashTailLines, crashTailBytes))
		}
		nw := p.replace(sl, gen)
		if nw == nil {
			return
		}
	}
}

// replace starts a worker for sl, after sl.backoff, retrying with a
// growing backoff while starting fails. It returns the worker it put in
// rotation, or nil when the pool closed.
func (p *Pool) replace(sl *slot, gen int) *worker.Worker {
	for {
		if !p.sleep(sl.backoff) {
			return nil
		}
		nw, err := worker.Start(p.ctx, p.workerConfig(sl, gen))
		if err != nil {
			if p.ctx.Err() != nil {
				return nil
			}
			p.mu.Lock()
			cur, removed := sl.w, sl.removed
			p.mu.Unlock()
			if removed {
				return nil
			}
			if cur != nil {
				// A reload put a worker in this slot meanwhile.
				return cur
			}
			p.stats.restart(RestartBootFailed)
			sl.backoff = nextBackoff(sl.backoff)
			p.log.Error("a replacement worker failed to start; retrying after a backoff",
				"worker", sl.id, "backoff", sl.backoff.String(), "err", err)
			p.reportBootError(sl, err)
			p.mu.Lock()
			sl.failing = true
			if p.allFailingLocked() {
				p.failWaitersLocked(ErrUnavailable)
			}
			p.mu.Unlock()
			continue
		}
		p.mu.Lock()
		if p.closed || sl.removed {
			p.mu.Unlock()
			nw.Kill()
			<-nw.Done()
			return nil
		}
		recovered := sl.failing
		if sl.w != nil {
			// A reload put a worker in this slot meanwhile: keep
			// that one and let this one go.
			cur := sl.w
			p.mu.Unlock()
			nw.Kill() // it never took a request
			<-nw.Done()
			return cur
		}
		p.installLocked(sl, nw, gen)
		p.mu.Unlock()
		p.log.Info("replacement worker ready", "worker", sl.id, "pid", nw.Pid(), "after_failures", recovered)
		return nw
	}
}

// sleep waits d (0: not at all); false when the pool closed meanwhile.
func (p *Pool) sleep(d time.Duration) bool {
	if d <= 0 {
		return p.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// reportBootError writes the app's own message (an import error's
// traceback) to the worker output, unescaped, as krait does at start-up.
func (p *Pool) reportBootError(sl *slot, err error) {
	var be *worker.BootError
	if p.cfg.Output == nil || !errors.As(err, &be) {
		return
	}
	var b []byte
	prefix := fmt.Sprintf("[worker %d] ", sl.id)
	for _, line := range strings.Split(strings.TrimRight(be.Message, "\n"), "\n") {
		b = append(b, prefix...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	_, _ = p.cfg.Output.Write(b)
}

// allFailingLocked reports whether no slot has a worker running or one
// about to start: every slot's last start failed.
func (p *Pool) allFailingLocked() bool {
	for _, sl := range p.slots {
		if !sl.failing {
			return false
		}
	}
	return true
}

// failWaitersLocked ends every queued request with err.
func (p *Pool) failWaitersLocked(err error) {
	for _, wt := range p.queue {
		if !wt.canceled {
			wt.handed = true
			wt.ch <- grant{err: err}
		}
	}
	p.queue = nil
	p.waiting = 0
}

// Open reserves a slot on the least-loaded worker, waiting in the queue
// when none is free, and opens a stream on it. maxQueue bounds the callers
// that may wait (0 = none: fail with ErrQueueFull at once). When ctx ends
// while the caller waits, it leaves the queue (a slot handed to it
// meanwhile goes back) with an error wrapping ctx.Err(). ctx.Done is
// asked for only if the caller has to wait.
func (p *Pool) Open(ctx context.Context, maxQueue int) (*worker.Stream, error) {
	return p.OpenWith(ctx, maxQueue, OpenOptions{})
}

// OpenOptions tunes OpenWith.
type OpenOptions struct {
	// Prefetch: the request's body goes whole with its REQUEST, so it may
	// wait in a worker's own queue (a prefetch slot, when no worker has a
	// free thread) and be given back from there: the stream is marked
	// recallable (worker.Stream.SetRecallable). WebSocket upgrades and
	// streamed bodies must not set it.
	Prefetch bool
	// Again: the request was admitted before and a worker gave it back
	// (worker.ErrReturned): it waits at the head of the queue, and a
	// full queue does not refuse it.
	Again bool
}

// OpenWith is Open with options. A slot with a free thread is preferred
// (least loaded first); with opt.Prefetch, a prefetch slot (a worker
// whose busy count is below capacity+prefetch) is taken before waiting
// in the queue.
func (p *Pool) OpenWith(ctx context.Context, maxQueue int, opt OpenOptions) (*worker.Stream, error) {
	for attempt := 0; ; attempt++ {
		g, err := p.acquire(ctx, maxQueue, opt)
		if err != nil {
			return nil, err
		}
		s, err := g.w.Open()
		if err == nil {
			if opt.Prefetch {
				s.SetRecallable()
			}
			return s, nil
		}
		p.release(g.sl, g.gen)
		if errors.Is(err, worker.ErrExhausted) {
			p.log.Info("worker used up its stream ids, replacing it", "worker", g.sl.id, "pid", g.w.Pid())
			go g.w.Shutdown(context.Background())
		}
		// The worker died or began stopping after we picked it. Either
		// way it is out of rotation now (acquire skips dead and stopping
		// workers), so the next attempt picks another one or queues.
		if attempt >= p.size()+2 {
			return nil, err
		}
	}
}

// size is the number of slots (it changes with AddWorker/RemoveWorker).
func (p *Pool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.slots)
}

// pick returns the live slot with a free thread and the fewest streams,
// else (with prefetch) the one with a free prefetch slot and the fewest
// streams beyond its capacity, else nil.
func (p *Pool) pickLocked(prefetch bool) *slot {
	var best, spare *slot
	for _, sl := range p.slots {
		if sl.w == nil || sl.busy >= sl.cap+sl.pre || sl.w.Stopping() || sl.w.Dead() {
			continue
		}
		if sl.busy < sl.cap {
			if best == nil || sl.busy-sl.cap < best.busy-best.cap {
				best = sl
			}
		} else if prefetch && (spare == nil || sl.busy-sl.cap < spare.busy-spare.cap) {
			spare = sl
		}
	}
	if best != nil {
		return best
	}
	return spare
}

// prefetchedLocked counts the requests waiting in workers' own queues:
// the streams each holds beyond its capacity.
func (p *Pool) prefetchedLocked() int {
	n := 0
	for _, sl := range p.slots {
		if sl.w != nil && sl.busy > sl.cap {
			n += sl.busy - sl.cap
		}
	}
	return n
}

func (p *Pool) acquire(ctx context.Context, maxQueue int, opt OpenOptions) (grant, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return grant{}, ErrClosed
	}
	// A prefetched request waits too (in the worker's queue): it counts
	// against maxQueue like one in the pool's queue, so the bound, and
	// "--max-queue 0: 503 whenever every thread is busy", hold exactly.
	prefetch := opt.Prefetch && (opt.Again || p.waiting+p.prefetchedLocked() < maxQueue)
	if best := p.pickLocked(prefetch); best != nil {
		best.busy++
		g := grant{w: best.w, sl: best, gen: best.gen}
		p.mu.Unlock()
		return g, nil
	}
	if p.allFailingLocked() {
		p.mu.Unlock()
		return grant{}, ErrUnavailable
	}
	if p.waiting+p.prefetchedLocked() >= maxQueue && !opt.Again {
		p.mu.Unlock()
		return grant{}, ErrQueueFull
	}
	wt := waiterPool.Get().(*waiter)
	wt.handed, wt.canceled, wt.prefetch = false, false, opt.Prefetch
	if opt.Again {
		// It waited its turn already.
		p.queue = slices.Insert(p.queue, 0, wt)
	} else {
		p.queue = append(p.queue, wt)
	}
	p.waiting++
	p.mu.Unlock()
	queued := time.Now()

	select {
	case g := <-wt.ch:
		p.stats.observeWait(time.Since(queued))
		waiterPool.Put(wt)
		return g, g.err
	case <-ctx.Done():
		p.stats.observeWait(time.Since(queued))
	}
	leave := waitErr(ctx)
	p.mu.Lock()
	if !wt.handed {
		// Left in the queue, skipped when reached; not reused.
		wt.canceled = true
		p.waiting--
		p.mu.Unlock()
		return grant{}, leave
	}
	p.mu.Unlock()
	g := <-wt.ch
	waiterPool.Put(wt)
	if g.err == nil {
		p.release(g.sl, g.gen)
	}
	return grant{}, leave
}

// waitErr is the error of a queue wait that ctx ended: it wraps
// ctx.Err(), and the cause too when the context has its own.
func waitErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("waiting for a worker: %w: %w", err, cause)
	}
	return fmt.Errorf("waiting for a worker: %w", err)
}

// release frees one slot of sl's worker generation gen and hands it to
// the first waiter, if any.
func (p *Pool) release(sl *slot, gen int) {
	p.mu.Lock()
	if sl.gen == gen && sl.w != nil {
		sl.busy--
		sl.handled++
		if sl.handled == sl.limit {
			// Wake the recycler now rather than at its next tick.
			select {
			case p.recycleNow <- struct{}{}:
			default:
			}
		}
		p.grantLocked(sl)
		if sl.busy < sl.cap && p.waiting == 0 {
			p.rebalanceLocked()
		}
	}
	p.mu.Unlock()
}

// rebalanceLocked takes prefetched requests back from workers that hold
// more streams than threads when some worker has a free thread and
// nothing waits in the queue: a request must not wait behind a slow one
// while another worker could run it. It recalls as many as there are
// free threads, minus the recalls still unanswered; those that come back
// unstarted (worker.ErrReturned) are re-opened at the head of the queue
// and take the free threads (OpenOptions.Again).
func (p *Pool) rebalanceLocked() {
	free, over := 0, 0
	for _, sl := range p.slots {
		if sl.w == nil || sl.w.Stopping() || sl.w.Dead() {
			continue
		}
		if sl.busy < sl.cap {
			free += sl.cap - sl.busy
		} else if sl.busy > sl.cap {
			over += sl.busy - sl.cap
		}
		free -= sl.w.Recalling()
	}
	if free <= 0 || over == 0 {
		return
	}
	for _, sl := range p.slots {
		if free <= 0 {
			return
		}
		if sl.w == nil || sl.busy <= sl.cap || sl.w.Dead() {
			continue
		}
		free -= sl.w.Recall(min(free, sl.busy-sl.cap-sl.w.Recalling()))
	}
}

// grantLocked hands sl's free slots to waiters, in order: a free thread
// to the first, a prefetch slot only to a first that may take one.
func (p *Pool) grantLocked(sl *slot) {
	for p.waiting > 0 && sl.w != nil && sl.busy < sl.cap+sl.pre && !sl.w.Stopping() && !sl.w.Dead() {
		wt := p.queue[0]
		if wt.canceled {
			p.queue[0] = nil
			p.queue = p.queue[1:]
			continue
		}
		if sl.busy >= sl.cap && !wt.prefetch {
			break
		}
		p.queue[0] = nil
		p.queue = p.queue[1:]
		p.waiting--
		wt.handed = true
		sl.busy++
		wt.ch <- grant{w: sl.w, sl: sl, gen: sl.gen}
	}
	if len(p.queue) == 0 {
		p.queue = p.queue[:0:0]
	}
}

// closeLocked marks the pool closed and fails every waiter.
func (p *Pool) closeLocked() []*worker.Worker {
	p.closed = true
	p.failWaitersLocked(ErrClosed)
	var ws []*worker.Worker
	for _, sl := range p.slots {
		if sl.w != nil {
			ws = append(ws, sl.w)
		}
	}
	for w := range p.retiring {
		ws = append(ws, w)
	}
	return ws
}

// Shutdown stops the workers gracefully: each finishes its in-flight
// requests and exits; those still running when ctx ends are killed (and
// the error says so).
func (p *Pool) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	ws := p.closeLocked()
	p.mu.Unlock()
	errs := make(chan error, len(ws))
	for _, w := range ws {
		go func(w *worker.Worker) { errs <- w.Shutdown(ctx) }(w)
	}
	var all []error
	for range ws {
		if err := <-errs; err != nil {
			all = append(all, err)
		}
	}
	p.cancel()
	p.wg.Wait()
	return errors.Join(all...)
}

// Close kills every worker now.
func (p *Pool) Close() {
	p.mu.Lock()
	ws := p.closeLocked()
	p.mu.Unlock()
	p.cancel()
	for _, w := range ws {
		w.Kill()
	}
	for _, w := range ws {
		<-w.Done()
	}
	p.wg.Wait()
}
