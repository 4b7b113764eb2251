package wire

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// ErrWriterClosed is returned by Writer methods after Close.
var ErrWriterClosed = errors.New("frame writer closed")

// Writer batches frames from many goroutines into as few write calls as
// possible: frames are appended to a pending buffer under a mutex, and the
// goroutine that finds no write in progress writes everything pending in
// one call, looping while others appended meanwhile. Under light load a
// caller writes its own frames at once (no goroutine hop); under heavy load
// one write carries the frames of many requests.
//
// Write errors are sticky: every later Append returns the first error.
type Writer struct {
	w io.Writer

	mu       sync.Mutex
	pending  []byte
	spare    []byte
	flushing bool
	err      error
	seq      uint64 // AppendSeq calls so far
}

// NewWriter returns a Writer writing to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w, pending: make([]byte, 0, 64<<10), spare: make([]byte, 0, 64<<10)}
}

// Append queues already-encoded frames (whole frames only) and makes sure
// they get written. It returns once they are written or handed over to
// the goroutine currently writing; it returns the sticky error, if any.
func (w *Writer) Append(frames []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.pending = append(w.pending, frames...)
	return w.flushLocked()
}

// AppendSeq is Append that also numbers the frames: it stores into seq,
// before they can be written, one more than the number of AppendSeq calls
// before it. The numbers follow the byte order of the output, so the
// peer receives frames numbered this way in increasing order (the worker
// layer's send order). Nothing is stored when the writer failed already.
func (w *Writer) AppendSeq(frames []byte, seq *atomic.Uint64) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.seq++
	seq.Store(w.seq)
	w.pending = append(w.pending, frames...)
	return w.flushLocked()
}

// AppendFunc lets fn append frames straight into the pending buffer (no
// intermediate copy), then flushes like Append. fn must append whole frames
// and must not call back into w.
func (w *Writer) AppendFunc(fn func(b []byte) []byte) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	w.pending = fn(w.pending)
	return w.flushLocked()
}

// flushLocked is called with w.mu held and releases it.
func (w *Writer) flushLocked() error {
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	for len(w.pending) > 0 {
		buf := w.pending
		w.pending = w.spare[:0]
		w.mu.Unlock()
		_, err := w.w.Write(buf)
		w.mu.Lock()
		// Drop buffers grown by a burst of large frames so one big
		// upload does not pin memory for the connection's lifetime.
		if cap(buf) <= 1<<20 {
			w.spare = buf[:0]
		} else {
			w.spare = make([]byte, 0, 64<<10)
		}
		if err != nil {
			if w.err == nil {
				w.err = fmt.Errorf("writing frames: %w", err)
			}
			w.pending = w.pending[:0]
			break
		}
	}
	w.flushing = false
	err := w.err
	w.mu.Unlock()
	return err
}

// Idle reports whether every frame appended so far has been handed to the
// underlying writer (nothing pending, no write in progress). A process
// about to exit uses it to make sure its last frames went out.
func (w *Writer) Idle() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.flushing && len(w.pending) == 0
}

// Close makes every later Append fail with ErrWriterClosed (unless a write
// error came first). It does not close the underlying writer.
func (w *Writer) Close() {
	w.mu.Lock()
	if w.err == nil {
		w.err = ErrWriterClosed
	}
	w.mu.Unlock()
}
