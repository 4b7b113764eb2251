package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krait-server/krait/internal/wire"
)

// ErrStreamDone is returned by AcquireSendWindow once the worker ended the
// stream or it was reset: the rest of the request body is not wanted.
var ErrStreamDone = errors.New("stream ended")

// Stream is one request/response exchange on a worker. Its methods are
// meant for one user goroutine, except that a second goroutine may send
// the request body (AcquireSendWindow, Send) while the first receives.
type Stream struct {
	w         *Worker
	id        uint32
	refs      atomic.Int32  // the user's and the reader's
	notify    chan struct{} // inbox grew, the stream ended or failed
	sendReady chan struct{} // send window grew, or the stream is over

	requestSent bool // user goroutine only
	// recallable: the request may be given back and re-run elsewhere (its
	// body went whole with REQUEST). Set by the user before SendRequest,
	// read by others only after seq is set.
	recallable bool
	// seq is the stream's place in the worker's send order (0: REQUEST
	// not written yet), stored by the writer as it queues REQUEST.
	seq atomic.Uint64
	// recalled: K sent RECALL for it (once).
	recalled atomic.Bool

	// Reader goroutine only.
	inBatch    bool
	readerDone bool

	mu          sync.Mutex
	in, out     []byte // inbox being filled / batch last returned by Recv
	sendWin     int64
	recvWin     int64
	gotResponse bool
	accepted    bool          // the worker sent WS_ACCEPT
	wEnded      bool          // the worker sent its last frame
	kReset      bool          // we reset the stream
	kept        bool          // the worker answered RECALL with KEPT: it had started
	keptFor     time.Duration // KEPT's payload: how long it had been running
	err         error         // the worker died, or gave the stream back (ErrReturned)
}

var streamPool = sync.Pool{New: func() any {
	return &Stream{notify: make(chan struct{}, 1), sendReady: make(chan struct{}, 1)}
}}

// maxKeptBuffer bounds the inbox buffers a recycled stream keeps.
const maxKeptBuffer = 64 << 10

func (s *Stream) init(w *Worker, id uint32) {
	s.w, s.id = w, id
	s.refs.Store(2)
	s.requestSent = false
	s.recallable = false
	s.seq.Store(0)
	s.recalled.Store(false)
	s.inBatch, s.readerDone = false, false
	s.in, s.out = s.in[:0], s.out[:0]
	s.sendWin, s.recvWin = wire.InitialWindow, wire.InitialWindow
	s.gotResponse, s.accepted, s.wEnded, s.kReset, s.kept = false, false, false, false, false
	s.err = nil
	// Tokens left by the previous use would only cause a spurious
	// wake-up, but drain them anyway.
	select {
	case <-s.notify:
	default:
	}
	select {
	case <-s.sendReady:
	default:
	}
}

// tryRef takes a reference unless the stream is already being recycled.
func (s *Stream) tryRef() bool {
	for {
		n := s.refs.Load()
		if n <= 0 {
			return false
		}
		if s.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *Stream) release() {
	if s.refs.Add(-1) != 0 {
		return
	}
	s.w = nil
	if cap(s.in) > maxKeptBuffer {
		s.in = nil
	}
	if cap(s.out) > maxKeptBuffer {
		s.out = nil
	}
	streamPool.Put(s)
}

// ID returns the stream id, for the frames the caller encodes.
func (s *Stream) ID() uint32 { return s.id }

// Worker returns the worker the stream runs on.
func (s *Stream) Worker() *Worker { return s.w }

func (s *Stream) sendErr(err error) error {
	if errors.Is(err, wire.ErrWriterClosed) {
		s.mu.Lock()
		e := s.err
		s.mu.Unlock()
		if e != nil {
			return e
		}
	}
	return fmt.Errorf("%w: %v", ErrWorkerDied, err)
}

// SendRequest sends the stream's first frames: REQUEST, optionally
// followed by DATA frames (the caller has taken their send window with
// AcquireSendWindow), all in one write. It fails with ErrStopping when the
// worker began shutting down since Open; the stream should then be closed
// and the request sent to another worker.
//
// When the worker was already known dead (its connection failed or its
// process exited) nothing is written and the error wraps ErrNotDelivered
// (and ErrWorkerDied): the caller may run the request elsewhere. Any other
// failure may have delivered the request, which must then not be re-run.
func (s *Stream) SendRequest(frames []byte) error {
	w := s.w
	w.sendMu.RLock()
	if w.stopping.Load() {
		w.sendMu.RUnlock()
		return ErrStopping
	}
	if w.gone.Load() {
		w.sendMu.RUnlock()
		return fmt.Errorf("%w: %w: worker %d (pid %d)", ErrNotDelivered, ErrWorkerDied, w.cfg.ID, w.pid)
	}
	w.active.Add(1) // before the write: the worker may answer at once
	err := w.wr.AppendSeq(frames, &s.seq)
	s.requestSent = true
	w.sendMu.RUnlock()
	if err != nil {
		return s.sendErr(err)
	}
	return nil
}

// SetRecallable marks the stream as one the worker may give back before
// it starts it (Worker.Recall, Recall) and that may run elsewhere if the
// worker dies before it could have started it: its request body, if any,
// goes whole in SendRequest's frames. Call it before SendRequest.
func (s *Stream) SetRecallable() { s.recallable = true }

// markRecalled records that RECALL is being sent, once, and only while
// the stream is live; it counts it in Worker.Recalling.
func (s *Stream) markRecalled() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.wEnded || s.kReset || s.gotResponse || s.accepted || !s.recalled.CompareAndSwap(false, true) {
		return false
	}
	s.w.recalling.Add(1)
	return true
}

// Recall asks the worker to give this (recallable, sent) stream back if
// it has not started it: the stream then fails with ErrReturned; if it
// had, the worker answers KEPT (Await reports Kept) and goes on. It does
// nothing if the stream was recalled already or is over.
func (s *Stream) Recall() {
	if !s.recallable || s.seq.Load() == 0 || !s.markRecalled() {
		return
	}
	var b [wire.HeaderSize]byte
	wire.PutHeader(b[:], 0, wire.Recall, 0, s.id)
	_ = s.Send(b[:])
}

// RunningFor returns how long the request had been running when the
// worker answered a RECALL with KEPT (0 before that).
func (s *Stream) RunningFor() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keptFor
}

// Progress is what Await saw of a stream.
type Progress int

const (
	// Waiting: ctx ended or wake fired first.
	Waiting Progress = iota
	// Answered: frames arrived, or the stream ended or failed (other than
	// ErrReturned): Recv takes it from here.
	Answered
	// Returned: the worker gave the request back unstarted, or died before
	// it could start it; Recv reports ErrReturned. Run it elsewhere.
	Returned
	// Kept: the worker answered a RECALL saying it had started the
	// request; nothing else arrived yet.
	Kept
)

// Await waits, without taking anything, until the stream has progress for
// its user (see Progress), ctx ends or wake (may be nil) fires. Frames
// stay for Recv.
func (s *Stream) Await(ctx context.Context, wake <-chan time.Time) Progress {
	for {
		s.mu.Lock()
		p := Waiting
		switch {
		case s.err != nil && errors.Is(s.err, ErrReturned):
			p = Returned
		case len(s.in) > 0 || s.err != nil || s.wEnded || s.kReset:
			p = Answered
		case s.kept:
			p = Kept
		}
		s.mu.Unlock()
		if p != Waiting {
			return p
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return Waiting
		case <-wake:
			return Waiting
		}
	}
}

// Send sends further frames of this stream (DATA of the request body).
func (s *Stream) Send(frames []byte) error {
	if err := s.w.wr.Append(frames); err != nil {
		return s.sendErr(err)
	}
	return nil
}

// AcquireSendWindow waits until the stream's send window is open
// and takes up to max bytes of it. It returns ErrStreamDone when the
// worker no longer wants the body, an ErrWorkerDied error, or, when ctx
// ends first, an error wrapping ctx.Err().
func (s *Stream) AcquireSendWindow(ctx context.Context, max int) (int, error) {
	for {
		s.mu.Lock()
		switch {
		case s.err != nil:
			err := s.err
			s.mu.Unlock()
			return 0, err
		case s.wEnded || s.kReset:
			s.mu.Unlock()
			return 0, ErrStreamDone
		case s.sendWin > 0:
			n := int64(max)
			if n > s.sendWin {
				n = s.sendWin
			}
			s.sendWin -= n
			s.mu.Unlock()
			return int(n), nil
		}
		s.mu.Unlock()
		select {
		case <-s.sendReady:
		case <-ctx.Done():
			return 0, s.waitErr(ctx, "waiting for send window")
		}
	}
}

// waitErr is the error of a wait that ctx ended: it wraps ctx.Err(), and
// the cause too when the context has its own (context.WithCancelCause).
func (s *Stream) waitErr(ctx context.Context, what string) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("stream %d: %s: %w: %w", s.id, what, err, cause)
	}
	return fmt.Errorf("stream %d: %s: %w", s.id, what, err)
}

// Recv waits for frames from the worker and returns every frame that has
// arrived, as raw frames (header and payload, see wire.ParseHeader). The
// bytes are valid until the next Recv. After the frame that ends the
// stream (END_STREAM or RESET) it returns io.EOF; when the worker died it
// returns an error wrapping ErrWorkerDied (after any frames that arrived
// before). When ctx ends while it waits (frames already there are
// returned first) it returns an error wrapping ctx.Err(); the stream is
// left as it is (the caller resets it).
func (s *Stream) Recv(ctx context.Context) ([]byte, error) {
	return s.recv(ctx, nil)
}

// Keep hands the caller the batch last returned by Recv for good: the
// next Recv will not reuse its buffer. For a user that passes receiving
// to another goroutine while it is still writing that batch to a client
// (internal/dispatch's response spool); the buffer is then garbage.
func (s *Stream) Keep() {
	s.mu.Lock()
	s.out = nil
	s.mu.Unlock()
}

// ErrWake is returned by RecvUntil when its wake channel fired.
var ErrWake = errors.New("wake-up time reached")

// RecvUntil is Recv that also returns ErrWake, without frames, when wake
// (which may be nil) fires while it waits.
func (s *Stream) RecvUntil(ctx context.Context, wake <-chan time.Time) ([]byte, error) {
	return s.recv(ctx, wake)
}

// recv is the one receive loop. A nil channel (context.Background's Done
// among them) never fires, so an unused case costs nothing.
func (s *Stream) recv(ctx context.Context, wake <-chan time.Time) ([]byte, error) {
	for {
		s.mu.Lock()
		if len(s.in) > 0 {
			b := s.in
			s.in = s.out[:0]
			s.out = b
			s.mu.Unlock()
			return b, nil
		}
		var err error
		switch {
		case s.err != nil:
			err = s.err
		case s.wEnded || s.kReset:
			err = io.EOF
		}
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-s.notify:
		case <-ctx.Done():
			return nil, s.waitErr(ctx, "waiting for the worker")
		case <-wake:
			return nil, ErrWake
		}
	}
}

// Ended reports whether the stream is over for sending: the worker ended
// it, it was reset, or the worker died.
func (s *Stream) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil || s.wEnded || s.kReset
}

// Credit returns n bytes of flow-control credit to the worker: call it
// once received DATA bytes have been consumed, before waiting for more.
func (s *Stream) Credit(n int) error {
	if n <= 0 {
		return nil
	}
	s.mu.Lock()
	if s.err != nil || s.wEnded || s.kReset {
		s.mu.Unlock()
		return nil
	}
	s.recvWin += int64(n)
	s.mu.Unlock()
	var b [wire.HeaderSize + 4]byte
	return s.Send(wire.AppendWindow(b[:0], s.id, uint32(n)))
}

// Reset cancels the stream: the worker stops the app and ends the stream,
// and frames still arriving for it are discarded.
func (s *Stream) Reset() { s.reset("") }

// Cancel is Reset with a reason: krait gave up on the stream (it ran over
// --timeout) and wants the app stopped, not only told the client left.
// The worker cancels the stream's task (ASGI) and still ends the stream
// with its own RESET, which frees the slot (docs/protocol.md,
// "Cancellation and errors").
func (s *Stream) Cancel(reason string) {
	if len(reason) > 256 {
		reason = reason[:256]
	}
	s.reset(reason)
}

// reset sends K's RESET, with reason as its payload (empty: the client
// left), once, and only while the stream is live.
func (s *Stream) reset(reason string) {
	if !s.requestSent {
		return
	}
	s.mu.Lock()
	if s.err != nil || s.wEnded || s.kReset {
		s.mu.Unlock()
		return
	}
	s.kReset = true
	s.in = s.in[:0]
	s.mu.Unlock()
	signal(s.sendReady)
	if reason == "" {
		var b [wire.HeaderSize]byte // no allocation on the common path
		wire.PutHeader(b[:], 0, wire.Reset, 0, s.id)
		_ = s.Send(b[:])
		return
	}
	b := make([]byte, wire.HeaderSize, wire.HeaderSize+len(reason))
	wire.PutHeader(b, len(reason), wire.Reset, 0, s.id)
	_ = s.Send(append(b, reason...))
}

// Close ends the caller's use of the stream, resetting it if the worker
// has not ended it. The stream must not be used afterwards (and no body
// sender may still be using it).
func (s *Stream) Close() {
	w := s.w
	if !s.requestSent {
		// The worker never heard of this stream: free its slot here.
		if w.table[s.id&w.mask].p.CompareAndSwap(s, nil) {
			if w.cfg.OnRelease != nil {
				w.cfg.OnRelease()
			}
			s.release()
		}
		s.release()
		return
	}
	s.Reset()
	s.release()
}

// ProtocolError reports that the worker broke the protocol on this stream:
// a frame the stream's user could not decode. The worker layer owns the
// consequence: the worker is logged and killed, its streams then fail with
// ErrWorkerDied and the supervisor replaces it. The caller answers its own
// request (a 502) and closes the stream as usual.
func (s *Stream) ProtocolError(err error) {
	s.w.log.Error("worker broke the protocol, killing it", "pid", s.w.pid, "stream", s.id, "err", err)
	s.w.Kill()
}
