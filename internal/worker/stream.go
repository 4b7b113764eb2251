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

	// Reader goroutine only.
	inBatch    bool
	readerDone bool

	mu          sync.Mutex
	in, out     []byte // inbox being filled / batch last returned by Recv
	sendWin     int64
	recvWin     int64
	gotResponse bool
	accepted    bool  // the worker sent WS_ACCEPT
	wEnded      bool  // the worker sent its last frame
	kReset      bool  // we reset the stream
	err         error // the worker died
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
	s.inBatch, s.readerDone = false, false
	s.in, s.out = s.in[:0], s.out[:0]
	s.sendWin, s.recvWin = wire.InitialWindow, wire.InitialWindow
	s.gotResponse, s.accepted, s.wEnded, s.kReset = false, false, false, false
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
	err := w.wr.Append(frames)
	s.requestSent = true
	w.sendMu.RUnlock()
	if err != nil {
		return s.sendErr(err)
	}
	return nil
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
