package supervisor

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// DefaultLogBuffer is the bound of a LogWriter's queue, in bytes.
const DefaultLogBuffer = 1 << 20

// LogWriter is an error-log destination that never blocks its callers: each
// Write is queued (whole, so lines stay whole) and one goroutine writes the
// queue to the underlying writer. When the queue holds max bytes, later
// writes are dropped and counted; once the destination takes bytes again a
// line says how many were lost. A worker's output copier and krait's own
// slog records share it, so a log destination nobody reads (a full pipe, a
// FIFO without reader, a stuck terminal) can neither stall a worker that
// prints nor hold up a stop.
//
// Locking: mu guards the queue, the drop counter and closed; the writing
// goroutine holds no lock while it writes.
type LogWriter struct {
	out  io.Writer
	max  int
	kick chan struct{} // one slot: the queue grew

	mu      sync.Mutex
	queue   []byte
	spare   []byte
	dropped int // lines dropped since the last note
	writing bool
	flushed *sync.Cond
}

// NewLogWriter returns a LogWriter writing to out, queueing at most max
// bytes (0 = DefaultLogBuffer). Its goroutine lives as long as the process.
func NewLogWriter(out io.Writer, max int) *LogWriter {
	if max <= 0 {
		max = DefaultLogBuffer
	}
	l := &LogWriter{out: out, max: max, kick: make(chan struct{}, 1)}
	l.flushed = sync.NewCond(&l.mu)
	go l.run()
	return l
}

// Write queues p and returns at once; p is dropped (and counted as one
// line) when the queue is full. It never fails.
func (l *LogWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	if len(l.queue)+len(p) > l.max {
		l.dropped++
		l.mu.Unlock()
		return len(p), nil
	}
	l.queue = append(l.queue, p...)
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

// Dropped returns the number of writes dropped and not yet reported.
func (l *LogWriter) Dropped() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.dropped
}

func (l *LogWriter) run() {
	for range l.kick {
		l.mu.Lock()
		for len(l.queue) > 0 || l.dropped > 0 {
			buf := l.queue
			l.queue = l.spare[:0]
			dropped := l.dropped
			l.dropped = 0
			l.writing = true
			l.mu.Unlock()
			if len(buf) > 0 {
				_, _ = l.out.Write(buf)
			}
			if dropped > 0 {
				// Written after the queued lines: the destination took
				// bytes again, so the loss can be reported now.
				_, _ = fmt.Fprintf(l.out, "krait: %d log lines dropped: the log destination was not taking output\n", dropped)
			}
			l.mu.Lock()
			l.writing = false
			if cap(buf) <= l.max {
				l.spare = buf[:0]
			} else {
				l.spare = nil
			}
		}
		l.flushed.Broadcast()
		l.mu.Unlock()
	}
}

// Flush waits until everything queued so far was handed to the underlying
// writer, or ctx ends (a blocked destination must not hold up an exit).
func (l *LogWriter) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.flushed.Broadcast()
		l.mu.Unlock()
	})
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	for len(l.queue) > 0 || l.writing {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("flushing the log: %w", err)
		}
		l.flushed.Wait()
	}
	return nil
}
