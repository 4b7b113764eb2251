package worker

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/wire"
)

// Worker is one running worker process and its multiplexed connection.
type Worker struct {
	cfg      Config
	log      *slog.Logger
	cmd      *exec.Cmd
	pid      int
	conn     *net.UnixConn
	rd       *wire.Reader // owned by the reader goroutine after Start
	wr       *wire.Writer
	iface    string
	adapter  string
	capacity int
	prefetch int     // streams beyond capacity K may hand it (WSGI only)
	django   *Django // HELLO's Django settings; nil for other apps

	// table maps id&mask to the stream with that id; its entries are
	// stored by Open and cleared by the reader (or Close, for a stream
	// whose REQUEST was never sent).
	table []tableEntry
	mask  uint32

	mu        sync.Mutex
	nextID    uint64 // next stream id to try; ids never wrap
	dead      error  // why the connection ended; set once
	killCause error  // why KillFor killed the worker; names it in dead

	// gone is set the moment the connection fails or the process is
	// reaped, whichever comes first: the pool then stops handing the
	// worker new streams, without waiting for Done.
	gone atomic.Bool
	// served counts the streams the worker ended itself (reader only;
	// read after Done).
	served uint64

	// active counts the streams whose REQUEST was written and that the
	// worker has not ended (the heartbeat's view of a busy inline worker).
	active atomic.Int64
	// pong is the highest PING sequence number the worker echoed (reader).
	pong atomic.Uint64
	// recalling counts the streams K recalled that have not ended yet.
	recalling atomic.Int64
	// recallMu serializes Recall's choice of streams.
	recallMu sync.Mutex

	// sendMu orders REQUEST frames against SHUTDOWN: a REQUEST is sent
	// under the read lock only while stopping is false.
	sendMu   sync.RWMutex
	stopping atomic.Bool
	// shutSent is closed once the first SHUTDOWN was written (set under
	// sendMu with stopping): a second one, "now", must follow it.
	shutSent chan struct{}

	tail    tail
	exited  chan struct{} // the process was reaped; state is set
	rdDone  chan struct{} // the reader goroutine ended
	done    chan struct{} // both
	outDone chan struct{}
	errDone chan struct{}
	state   *os.ProcessState
	waitErr error
}

type tableEntry struct {
	p atomic.Pointer[Stream]
}

// ID returns the worker's slot number.
func (w *Worker) ID() int { return w.cfg.ID }

// Pid returns the worker's process id.
func (w *Worker) Pid() int { return w.pid }

// Interface returns "wsgi" or "asgi", as the worker reported.
func (w *Worker) Interface() string { return w.iface }

// Capacity returns how many streams the worker serves at once.
func (w *Worker) Capacity() int { return w.capacity }

// Prefetch returns how many streams beyond Capacity K may hand the
// worker, to wait in its own queue (config.Worker.Prefetch for a WSGI
// worker, 0 for ASGI).
func (w *Worker) Prefetch() int { return w.prefetch }

// Recalling returns how many streams were recalled (Recall,
// Stream.Recall) and have not ended yet.
func (w *Worker) Recalling() int { return int(w.recalling.Load()) }

// AdapterVersion returns the adapter version the worker reported.
func (w *Worker) AdapterVersion() string { return w.adapter }

// Done is closed once the process has exited and the connection is torn
// down; every stream in flight has then failed with ErrWorkerDied.
func (w *Worker) Done() <-chan struct{} { return w.done }

// ExitStatus describes how the process ended ("exit status 1", "signal:
// killed"); valid once Done is closed.
func (w *Worker) ExitStatus() string { return w.exitString() }

// Stopping reports whether Shutdown was called.
func (w *Worker) Stopping() bool { return w.stopping.Load() }

// Dead reports whether the worker's connection failed or its process
// exited. It turns true before Done closes (Done also waits for the
// reader and the reaping); a dead worker takes no new stream.
func (w *Worker) Dead() bool { return w.gone.Load() }

// Served returns how many streams the worker ended by itself (answered,
// or failed with a RESET it sent): proof that it ran the app. Valid once
// Done is closed.
func (w *Worker) Served() uint64 { return w.served }

// Kill sends SIGKILL to the process; Done closes soon after.
func (w *Worker) Kill() {
	_ = w.cmd.Process.Kill()
}

// KillFor kills the worker because of cause (a request over --timeout, a
// missed heartbeat): the log says so, and every stream in flight on it
// fails with an ErrWorkerDied error that names cause.
func (w *Worker) KillFor(cause error) {
	w.mu.Lock()
	if w.killCause == nil && w.dead == nil {
		w.killCause = cause
	}
	w.mu.Unlock()
	w.log.Warn("killing the worker", "worker", w.cfg.ID, "pid", w.pid, "reason", cause)
	w.Kill()
}

// HurryGrace is how long an ASGI worker gets, once Shutdown's ctx ended
// with streams still open, to cancel their tasks, run lifespan shutdown
// (which the adapter bounds at 5 s) and exit before it is killed. WSGI
// threads cannot be cancelled: a WSGI worker is killed at once.
const HurryGrace = 10 * time.Second

// Shutdown asks the worker to finish its in-flight streams and exit, and
// waits for it until ctx ends. Then a WSGI worker is killed at once; an
// ASGI worker whose ctx expired (the graceful timeout ran out) gets a
// second SHUTDOWN ("now": cancel every task, run lifespan shutdown, exit)
// and HurryGrace more before it is killed; one whose ctx was cancelled (a
// stop "now") is killed at once.
// It returns an error wrapping ctx's when the worker had to be killed.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.sendMu.Lock()
	already := w.stopping.Swap(true)
	if !already {
		w.shutSent = make(chan struct{})
	}
	sent := w.shutSent
	w.sendMu.Unlock()
	if !already {
		// Not under sendMu: the write may block on a worker that stopped
		// reading, and ctx must still be able to end the wait.
		go func() {
			defer close(sent)
			w.appendShutdown()
		}()
	}
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
	}
	// A cancelled ctx (rather than an expired one) is a stop "now" (a
	// second signal, SIGQUIT): no extra grace then either.
	if w.iface != "asgi" || !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		w.Kill()
		<-w.done
		return fmt.Errorf("worker %d (pid %d) killed after the graceful timeout: %w", w.cfg.ID, w.pid, ctx.Err())
	}
	w.log.Info("graceful timeout over: cancelling the worker's ASGI tasks, then lifespan shutdown",
		"pid", w.pid, "grace", HurryGrace.String())
	go func() {
		// The second SHUTDOWN must follow the first on the wire.
		select {
		case <-sent:
			w.appendShutdown()
		case <-w.done:
		}
	}()
	t := time.NewTimer(HurryGrace)
	defer t.Stop()
	select {
	case <-w.done:
		return nil
	case <-t.C:
		w.Kill()
		<-w.done
		return fmt.Errorf("worker %d (pid %d) killed %s after the graceful timeout: %w",
			w.cfg.ID, w.pid, HurryGrace, ctx.Err())
	}
}

func (w *Worker) appendShutdown() {
	var b [wire.HeaderSize]byte
	wire.PutHeader(b[:], 0, wire.Shutdown, 0, 0)
	_ = w.wr.Append(b[:])
}

// wait reaps the process and closes done once the reader ended too.
func (w *Worker) waitDone() {
	<-w.exited
	<-w.rdDone
	close(w.done)
}

func (w *Worker) readLoop() {
	go w.waitDone()
	defer close(w.rdDone)
	var batch []*Stream
	for {
		err := w.rd.Fill()
		for err == nil {
			h, p, ok, e := w.rd.Next()
			if e != nil {
				err = e
				break
			}
			if !ok {
				break
			}
			err = w.handle(h, p, &batch)
		}
		w.wake(batch)
		clear(batch)
		batch = batch[:0]
		if err != nil {
			w.fail(err)
			return
		}
	}
}

// signal does a non-blocking send on a one-slot channel: the receiver
// re-checks state after every wake-up, so one pending token is enough.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// wake notifies every stream touched by one read, once each, and drops the
// reader's reference to streams that ended in it.
func (w *Worker) wake(batch []*Stream) {
	for _, s := range batch {
		s.inBatch = false
		signal(s.notify)
		if s.readerDone {
			s.readerDone = false
			s.release()
		}
	}
}

func (w *Worker) handle(h wire.Header, p []byte, batch *[]*Stream) error {
	if h.Stream == 0 {
		if h.Type == wire.Pong && h.Flags == 0 && len(p) == 8 {
			seq := binary.LittleEndian.Uint64(p)
			if seq > w.pong.Load() {
				w.pong.Store(seq)
			}
			return nil
		}
		return fmt.Errorf("%w: %s frame on stream 0 after the handshake", wire.ErrProtocol, h.Type)
	}
	e := &w.table[h.Stream&w.mask]
	s := e.p.Load()
	if s == nil || s.id != h.Stream {
		// WINDOW and RESET may race with the end of a stream K gave up on;
		// KEPT answers a RECALL that crossed the stream's end.
		if h.Type == wire.Window || h.Type == wire.Reset || h.Type == wire.Kept {
			return nil
		}
		return fmt.Errorf("%w: %s frame on unknown stream %d", wire.ErrProtocol, h.Type, h.Stream)
	}
	switch h.Type {
	case wire.Returned, wire.Kept:
		return w.recallAnswer(h, p, s, e, batch)
	case wire.Window:
		credit, err := wire.ParseWindow(p)
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.sendWin += int64(credit)
		over := s.sendWin > math.MaxInt32
		s.mu.Unlock()
		if over {
			return fmt.Errorf("%w: WINDOW overflows the send window of stream %d", wire.ErrProtocol, h.Stream)
		}
		signal(s.sendReady)
		return nil
	case wire.Data, wire.Response, wire.SendFile, wire.Reset,
		wire.Trailers, wire.EarlyHint, wire.WSAccept, wire.WSMessage, wire.WSClose:
	default:
		return fmt.Errorf("%w: %s frame from a worker (stream %d)", wire.ErrProtocol, h.Type, h.Stream)
	}
	end := h.End() || h.Type == wire.Reset
	s.mu.Lock()
	var err error
	switch {
	case h.Type == wire.Response && s.gotResponse:
		err = fmt.Errorf("%w: second RESPONSE on stream %d", wire.ErrProtocol, h.Stream)
	case (h.Type == wire.Response || h.Type == wire.WSAccept) && s.accepted:
		err = fmt.Errorf("%w: %s after WS_ACCEPT on stream %d", wire.ErrProtocol, h.Type, h.Stream)
	case (h.Type == wire.WSAccept || h.Type == wire.EarlyHint) && s.gotResponse:
		err = fmt.Errorf("%w: %s after RESPONSE on stream %d", wire.ErrProtocol, h.Type, h.Stream)
	case (h.Type == wire.Data || h.Type == wire.SendFile || h.Type == wire.Trailers) && !s.gotResponse:
		err = fmt.Errorf("%w: %s before RESPONSE on stream %d", wire.ErrProtocol, h.Type, h.Stream)
	case h.Type == wire.Trailers && !h.End():
		err = fmt.Errorf("%w: TRAILERS without END_STREAM on stream %d", wire.ErrProtocol, h.Stream)
	case h.Type == wire.WSMessage && !s.accepted:
		err = fmt.Errorf("%w: WS_MESSAGE before WS_ACCEPT on stream %d", wire.ErrProtocol, h.Stream)
	case (h.Type == wire.Data || h.Type == wire.WSMessage) && int64(len(p)) > s.recvWin:
		err = fmt.Errorf("%w: %s beyond the flow-control window on stream %d", wire.ErrProtocol, h.Type, h.Stream)
	}
	if err != nil {
		s.mu.Unlock()
		return err
	}
	switch h.Type {
	case wire.Response:
		s.gotResponse = true
	case wire.WSAccept:
		s.accepted = true
	case wire.Data, wire.WSMessage:
		s.recvWin -= int64(len(p))
	}
	if !s.kReset { // K discards frames of a stream it reset
		s.in = wire.AppendFrame(s.in, h.Type, h.Flags, h.Stream, p)
	}
	if end {
		s.wEnded = true
	}
	s.mu.Unlock()
	if end {
		w.served++
		w.ended(s, e, batch)
		return nil
	}
	if !s.inBatch {
		s.inBatch = true
		*batch = append(*batch, s)
	}
	return nil
}

// ended takes a stream the worker ended out of the table (reader only).
func (w *Worker) ended(s *Stream, e *tableEntry, batch *[]*Stream) {
	e.p.Store(nil)
	s.readerDone = true
	w.active.Add(-1)
	if s.recalled.Load() {
		w.recalling.Add(-1)
	}
	if w.cfg.OnRelease != nil {
		w.cfg.OnRelease()
	}
	signal(s.sendReady) // a body sender waiting for credit must stop
	if !s.inBatch {
		s.inBatch = true
		*batch = append(*batch, s)
	}
}

// recallAnswer handles the worker's answer to a RECALL: RETURNED (it never
// started the request: the stream ends with ErrReturned) or KEPT (it had).
func (w *Worker) recallAnswer(h wire.Header, p []byte, s *Stream, e *tableEntry, batch *[]*Stream) error {
	switch {
	case h.Type == wire.Returned && h.Length != 0:
		return fmt.Errorf("%w: RETURNED with a payload on stream %d", wire.ErrProtocol, h.Stream)
	case h.Type == wire.Kept && h.Length != 4:
		return fmt.Errorf("%w: KEPT payload of %d bytes on stream %d, want 4", wire.ErrProtocol, h.Length, h.Stream)
	case !s.recalled.Load():
		return fmt.Errorf("%w: %s on stream %d, which K did not recall", wire.ErrProtocol, h.Type, h.Stream)
	case h.Type == wire.Returned && !h.End():
		return fmt.Errorf("%w: RETURNED without END_STREAM on stream %d", wire.ErrProtocol, h.Stream)
	case h.Type == wire.Kept && h.Flags != 0:
		return fmt.Errorf("%w: KEPT with flags on stream %d", wire.ErrProtocol, h.Stream)
	}
	s.mu.Lock()
	if h.Type == wire.Kept {
		s.kept = true
		s.keptFor = time.Duration(binary.LittleEndian.Uint32(p)) * time.Millisecond
		s.mu.Unlock()
		if !s.inBatch {
			s.inBatch = true
			*batch = append(*batch, s)
		}
		return nil
	}
	if s.gotResponse || s.accepted {
		s.mu.Unlock()
		return fmt.Errorf("%w: RETURNED after a response on stream %d", wire.ErrProtocol, h.Stream)
	}
	s.wEnded = true
	s.err = fmt.Errorf("%w: worker %d (pid %d), stream %d", ErrReturned, w.cfg.ID, w.pid, s.id)
	s.mu.Unlock()
	w.ended(s, e, batch)
	return nil
}

// fail tears the connection down: every stream in flight gets an error
// and the process is killed (unless it is exiting after SHUTDOWN).
func (w *Worker) fail(cause error) {
	// How the connection ended (EOF: every frame was read) decides which
	// streams may run elsewhere, also when KillFor caused it.
	notStarted := w.notStarted(cause)
	w.mu.Lock()
	if w.killCause != nil {
		// The connection ended because KillFor killed the process.
		cause = fmt.Errorf("killed: %w", w.killCause)
	}
	if w.dead == nil {
		w.dead = cause
	}
	w.gone.Store(true)
	w.mu.Unlock()
	graceful := w.stopping.Load() && (errors.Is(cause, io.EOF) || errors.Is(cause, net.ErrClosed))
	switch {
	case errors.Is(cause, wire.ErrProtocol):
		w.log.Error("worker broke the protocol, killing it", "pid", w.pid, "err", cause)
	case !graceful:
		w.log.Debug("worker connection ended", "pid", w.pid, "err", cause)
	}
	w.wr.Close()
	if !graceful {
		w.Kill()
	}
	w.conn.Close()
	streamErr := fmt.Errorf("%w: worker %d (pid %d): %v", ErrWorkerDied, w.cfg.ID, w.pid, cause)
	for i := range w.table {
		s := w.table[i].p.Swap(nil)
		if s == nil {
			continue
		}
		s.mu.Lock()
		s.err = streamErr
		if _, ok := notStarted[s]; ok {
			s.err = fmt.Errorf("%w: worker %d (pid %d) died before it could start it: %w", ErrReturned, w.cfg.ID, w.pid, streamErr)
		}
		s.mu.Unlock()
		signal(s.notify)
		signal(s.sendReady)
		s.release()
	}
}

// notStarted returns, when the worker died, the streams it cannot have
// started and that may run elsewhere (recallable ones: their body went
// whole with REQUEST). The worker starts requests in arrival order, at
// most capacity at once, and writes a stream's last frame before it
// starts one beyond its capacity (docs/protocol.md, "Prefetch and
// recall"). So once the reader saw every frame it wrote (the connection
// ended in EOF or ECONNRESET, not a protocol error or a closed socket), of the streams
// it has not ended, in send order, only the first capacity can have
// started. Reader goroutine only (the table's streams hold its reference).
func (w *Worker) notStarted(cause error) map[*Stream]struct{} {
	// ECONNRESET: the worker died with our frames unread in its socket;
	// Linux still delivers everything it wrote before that error.
	clean := errors.Is(cause, io.EOF) || errors.Is(cause, io.ErrUnexpectedEOF) || errors.Is(cause, syscall.ECONNRESET)
	if w.prefetch == 0 || !clean {
		return nil
	}
	var open []*Stream
	for i := range w.table {
		if s := w.table[i].p.Load(); s != nil && s.seq.Load() != 0 {
			open = append(open, s)
		}
	}
	if len(open) <= w.capacity {
		return nil
	}
	slices.SortFunc(open, func(a, b *Stream) int { return cmp.Compare(a.seq.Load(), b.seq.Load()) })
	m := map[*Stream]struct{}{}
	for _, s := range open[w.capacity:] {
		if s.recallable {
			m[s] = struct{}{}
		}
	}
	return m
}

// Recall asks the worker to give back up to n of the streams waiting in
// its queue (RECALL), newest first: of the streams it has not ended, in
// send order, only those beyond the first Capacity can be waiting, and
// only recallable ones (Stream.SetRecallable) not recalled already are
// asked for. Each comes back as a stream failing with ErrReturned, or
// goes on if the worker had started it meanwhile. It returns how many it
// asked for; it never blocks (the frames are written by a goroutine).
func (w *Worker) Recall(n int) int {
	if n <= 0 || w.prefetch == 0 || w.gone.Load() {
		return 0
	}
	w.recallMu.Lock()
	defer w.recallMu.Unlock()
	var open []*Stream
	for i := range w.table {
		e := &w.table[i]
		s := e.p.Load()
		if s == nil || !s.tryRef() {
			continue
		}
		// With our reference the stream cannot be recycled; it is still
		// this worker's live stream only if the table still holds it.
		if e.p.Load() != s || s.seq.Load() == 0 {
			s.release()
			continue
		}
		open = append(open, s)
	}
	defer func() {
		for _, s := range open {
			s.release()
		}
	}()
	if len(open) <= w.capacity {
		return 0
	}
	slices.SortFunc(open, func(a, b *Stream) int { return cmp.Compare(a.seq.Load(), b.seq.Load()) })
	var frames []byte
	asked := 0
	for i := len(open) - 1; i >= w.capacity && asked < n; i-- {
		s := open[i]
		if !s.recallable || !s.markRecalled() {
			continue
		}
		frames = wire.AppendHeader(frames, 0, wire.Recall, 0, s.id)
		asked++
	}
	if asked > 0 {
		go func() { _ = w.wr.Append(frames) }()
	}
	return asked
}

// Open starts a new stream. The caller must have reserved one of the
// worker's slots (see Config.OnRelease) and must Close the stream.
func (w *Worker) Open() (*Stream, error) {
	if w.stopping.Load() {
		return nil, ErrStopping
	}
	w.mu.Lock()
	if w.dead != nil {
		err := w.dead
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", ErrWorkerDied, err)
	}
	if w.gone.Load() {
		w.mu.Unlock()
		return nil, fmt.Errorf("%w: worker %d (pid %d) exited", ErrWorkerDied, w.cfg.ID, w.pid)
	}
	for range len(w.table) {
		if w.nextID > math.MaxUint32 {
			w.mu.Unlock()
			return nil, ErrExhausted
		}
		id := uint32(w.nextID)
		w.nextID++
		e := &w.table[id&w.mask]
		if e.p.Load() == nil {
			s := streamPool.Get().(*Stream)
			s.init(w, id)
			e.p.Store(s)
			w.mu.Unlock()
			return s, nil
		}
	}
	w.mu.Unlock()
	return nil, fmt.Errorf("worker %d: no free stream slot (more streams open than its capacity)", w.cfg.ID)
}
