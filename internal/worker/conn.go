package worker

import (
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
	"sync"
	"sync/atomic"
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
		// WINDOW and RESET may race with the end of a stream K gave up on.
		if h.Type == wire.Window || h.Type == wire.Reset {
			return nil
		}
		return fmt.Errorf("%w: %s frame on unknown stream %d", wire.ErrProtocol, h.Type, h.Stream)
	}
	switch h.Type {
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
		e.p.Store(nil)
		s.readerDone = true
		w.served++
		w.active.Add(-1)
		if w.cfg.OnRelease != nil {
			w.cfg.OnRelease()
		}
		signal(s.sendReady) // a body sender waiting for credit must stop
	}
	if !s.inBatch {
		s.inBatch = true
		*batch = append(*batch, s)
	}
	return nil
}

// fail tears the connection down: every stream in flight gets an error
// and the process is killed (unless it is exiting after SHUTDOWN).
func (w *Worker) fail(cause error) {
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
		s.mu.Unlock()
		signal(s.notify)
		signal(s.sendReady)
		s.release()
	}
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
