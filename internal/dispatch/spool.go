package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krait-server/krait/internal/codec"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
)

// Response spooling (see doc.go, "Slow clients"): while the client keeps
// up, relay writes each frame through as it always did. Around every write
// that can block on the client in a batch that does not end the stream, it
// arms a timer (spoolAfter); a write still blocked when it fires means the
// client is not keeping up, and the timer's goroutine takes over receiving
// from the worker (the receiver): it copies the worker's DATA into the
// spool, memory then an unlinked temporary file, and credits the worker
// as it arrives, so the worker finishes at its own pace. The request
// goroutine, once its write returns, becomes the drainer: it writes the
// spool to the client in order and returns when it is empty and the
// stream has ended.

// spoolAfter is how long a write to the client may take before the
// response is spooled. A write to a socket with room in its send buffer
// takes microseconds; one still blocked after this waits for the client
// to read. A false alarm (the goroutine was merely descheduled on a busy
// machine) costs one goroutine and a copy of the rest of that response.
const spoolAfter = 2 * time.Millisecond

// spoolChunkSize is the unit of spool memory.
const spoolChunkSize = 64 << 10

var spoolChunkPool = sync.Pool{New: func() any { return new([spoolChunkSize]byte) }}

// Spool defaults (dispatch.Config).
const (
	// DefaultBufferResponse is Config.BufferResponse's default: 1 MiB in
	// memory per slow client holds most pages and API answers whole.
	DefaultBufferResponse = 1 << 20
	// DefaultMaxTempFileSize is nginx's proxy_max_temp_file_size.
	DefaultMaxTempFileSize = 1 << 30
	// DefaultBufferResponseMemory bounds all spools' memory together.
	DefaultBufferResponseMemory = 64 << 20
)

const (
	phaseIdle     int32 = iota // no write in progress (or the response is not spooled)
	phaseWriting               // the request goroutine is in a write that may block
	phaseSpooling              // the receiver took over
)

// errSpoolAbort ends a spooled response whose receiver already logged the
// cause and reset the stream: the drainer only aborts the response.
var errSpoolAbort = errors.New("dispatch: spooled response aborted")

// spoolEvent is something other than body bytes, in order: it happens
// once the first at data bytes were written to the client.
type spoolEvent struct {
	at         int64
	frame      []byte   // a copied frame: TRAILERS, EARLY_HINT, RESET, RESPONSE
	file       *os.File // SENDFILE, opened when it arrived (as relay would have)
	off, count int64
}

// spooler is one request's response spool, part of its pooled state. The
// hand-over fields are written by the request goroutine before phase turns
// phaseWriting and read by the receiver only after it won phase (the atomic
// orders them). After the hand-over the receiver alone uses the stream,
// until it signals exited; the drainer alone uses the ResponseWriter. The
// queue below mu is shared: the receiver appends (holding mu for the copy
// or the file write), the drainer consumes; neither holds it across a
// client write, a file read or a Recv.
type spooler struct {
	d     *Dispatcher
	timer *time.Timer // time.AfterFunc(spoolAfter, takeover)
	phase atomic.Int32

	// Hand-over (request goroutine, then receiver).
	s         *worker.Stream
	ctx       context.Context // relay's: the request's, with --timeout
	rest      []byte          // the frames of the batch after the one being written
	credit    int             // DATA bytes of that batch not credited yet
	declared  int64           // the Content-Length passed to WriteHeader, or -1
	written   int64           // body bytes accepted so far (receiver-owned after it)
	truncated bool
	bodyless  bool // HEAD, 204 or 304: no body is owed

	ready   chan struct{} // cap 1: the receiver queued something or ended
	drained chan struct{} // cap 1: the drainer consumed something
	exited  chan struct{} // cap 1: the receiver returned

	mu       sync.Mutex
	cancel   context.CancelFunc // ends the receiver's waits
	stopped  bool               // the drainer gave up: the receiver must stop
	chunks   []*[spoolChunkSize]byte
	lens     []int // bytes in each chunk
	hoff     int   // bytes of chunks[0] already drained
	file     *os.File
	fileErr  bool  // the temporary file could not be used
	fr, fw   int64 // the file's unread region
	in, out  int64 // data bytes queued / drained
	events   []spoolEvent
	done     bool  // the receiver queued its last item
	fail     error // why the receiver ended early (nil: the stream ended)
	memBytes int64 // chunk memory held, counted in d.spoolMem
}

// arm hands the state of a write that may block to a possible receiver
// and starts the timer; disarm must follow the write.
func (sp *spooler) arm(d *Dispatcher, s *worker.Stream, ctx context.Context, rest []byte, credit int, declared, written int64, truncated, bodyless bool) {
	sp.d, sp.s, sp.ctx, sp.rest, sp.credit = d, s, ctx, rest, credit
	sp.declared, sp.written, sp.truncated, sp.bodyless = declared, written, truncated, bodyless
	if sp.ready == nil {
		sp.ready = make(chan struct{}, 1)
		sp.drained = make(chan struct{}, 1)
		sp.exited = make(chan struct{}, 1)
	}
	sp.phase.Store(phaseWriting)
	if sp.timer == nil {
		sp.timer = time.AfterFunc(spoolAfter, sp.takeover)
	} else {
		sp.timer.Reset(spoolAfter)
	}
}

// disarm stops the timer after the write: true when the receiver took
// over meanwhile (the caller must then drain the spool).
func (sp *spooler) disarm() bool {
	sp.timer.Stop()
	if sp.phase.CompareAndSwap(phaseWriting, phaseIdle) {
		sp.rest, sp.s, sp.ctx = nil, nil, nil
		return false
	}
	return true
}

// takeover runs on the timer's goroutine. A timer that fires late, even
// one armed by an earlier request on this pooled state, only ever takes
// over the write in progress now, whose hand-over is complete.
func (sp *spooler) takeover() {
	if !sp.phase.CompareAndSwap(phaseWriting, phaseSpooling) {
		return
	}
	sp.receive()
}

func signal1(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// receive is the receiver: the rest of the batch relay was writing, then
// every frame until the stream ends, into the spool.
func (sp *spooler) receive() {
	defer func() { sp.exited <- struct{}{} }()
	d, s := sp.d, sp.s
	ctx, cancel := context.WithCancel(sp.ctx)
	defer cancel()
	sp.mu.Lock()
	sp.cancel = cancel
	if sp.stopped {
		cancel()
	}
	sp.mu.Unlock()
	d.spooled.Add(1)
	d.log.Debug("the client fell behind; spooling the response", "stream", s.ID())
	// relay is still writing from the batch Recv returned: the next Recv
	// must not hand its buffer back to the worker's reader.
	s.Keep()
	b, owed := sp.rest, sp.credit
	sp.rest = nil
	for {
		credit, ended, err := sp.take(b)
		if err != nil {
			sp.finish(err)
			return
		}
		if ended {
			sp.finish(nil)
			return
		}
		owed += credit
		// Past the spool's bounds the worker is not credited: it waits,
		// as it would for the client, until the drainer makes room.
		for owed > 0 && !sp.room() {
			select {
			case <-sp.drained:
			case <-ctx.Done():
				sp.finish(fmt.Errorf("stream %d: waiting for the client: %w", s.ID(), ctx.Err()))
				return
			}
		}
		if owed > 0 {
			if err := s.Credit(owed); err != nil {
				d.log.Debug("returning window credit failed", "err", err)
			}
			owed = 0
		}
		b, err = s.Recv(ctx)
		if err != nil {
			sp.finish(err)
			return
		}
	}
}

// take queues a batch of frames. credit is its DATA bytes; ended says the
// stream ended with it; err (errSpoolAbort) that the response must be
// aborted (logged, the stream reset).
func (sp *spooler) take(b []byte) (credit int, ended bool, err error) {
	d, s := sp.d, sp.s
	for len(b) > 0 {
		h, _ := wire.ParseHeader(b) // the worker's reader validated it
		n := wire.HeaderSize + int(h.Length)
		frame, p := b[:n], b[wire.HeaderSize:n]
		b = b[n:]
		ended = ended || h.End()
		switch h.Type {
		case wire.Data:
			credit += len(p)
			if sp.declared >= 0 && int64(len(p)) > sp.declared-sp.written {
				if !sp.truncated {
					sp.truncated = true
					d.log.Warn("the application sent more body than its Content-Length; truncated", "content_length", sp.declared)
				}
				p = p[:sp.declared-sp.written]
			}
			if len(p) > 0 {
				sp.written += int64(len(p))
				if err := sp.append(p); err != nil {
					d.log.Error("spooling the response failed", "err", err)
					s.Reset()
					return credit, ended, errSpoolAbort
				}
			}
		case wire.SendFile:
			path, off, count, err := codec.SendFile(p)
			var f *os.File
			if err == nil {
				f, err = os.Open(string(path))
			}
			if err != nil {
				d.log.Error("SENDFILE failed", "err", err)
				s.Reset()
				return credit, ended, errSpoolAbort
			}
			sp.push(spoolEvent{file: f, off: off, count: count})
		case wire.WSAccept, wire.WSClose, wire.WSMessage:
			d.log.Error("the application sent a WebSocket message on an HTTP request", "frame", h.Type.String())
			s.Reset()
			return credit, ended, errSpoolAbort
		default:
			sp.push(spoolEvent{frame: append([]byte(nil), frame...)})
		}
	}
	return credit, ended, nil
}

func (sp *spooler) push(ev spoolEvent) {
	sp.mu.Lock()
	ev.at = sp.in
	sp.events = append(sp.events, ev)
	sp.mu.Unlock()
	signal1(sp.ready)
}

// finish queues the receiver's end: nil after the frame that ended the
// stream, else why it stopped early.
func (sp *spooler) finish(err error) {
	sp.mu.Lock()
	sp.done, sp.fail = true, err
	sp.mu.Unlock()
	signal1(sp.ready)
}

// memRoom reports whether one more chunk fits this response's and the
// process's memory bounds, and counts it if so. Under mu.
func (sp *spooler) memRoom() bool {
	d := sp.d
	if sp.memBytes+spoolChunkSize > d.bufResp {
		return false
	}
	if d.spoolMem.Add(spoolChunkSize) > d.spoolMemLimit {
		d.spoolMem.Add(-spoolChunkSize)
		return false
	}
	sp.memBytes += spoolChunkSize
	return true
}

// room reports whether the spool takes more bytes within its bounds
// (memory while no file bytes wait, else the file).
func (sp *spooler) room() bool {
	d := sp.d
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if sp.in == sp.out {
		// Empty: always take a window more, or a spool past its bounds
		// (memory taken by other spools, no file) would never move.
		return true
	}
	if sp.fr == sp.fw {
		if n := len(sp.chunks); n > 0 && sp.lens[n-1] < spoolChunkSize {
			return true
		}
		if sp.memBytes+spoolChunkSize <= d.bufResp && d.spoolMem.Load()+spoolChunkSize <= d.spoolMemLimit {
			return true
		}
	}
	return !sp.fileErr && sp.fw < d.maxTemp
}

// append queues body bytes: into memory while no file bytes wait and the
// bounds allow, else at the end of the temporary file. Bytes already
// received are never refused: past every bound (no file allowed, or it
// failed) they go to memory, and room stops the worker's credit.
func (sp *spooler) append(p []byte) error {
	d := sp.d
	sp.mu.Lock()
	defer func() {
		sp.mu.Unlock()
		signal1(sp.ready)
	}()
	sp.in += int64(len(p))
	d.spoolBytes.Add(int64(len(p)))
	for len(p) > 0 {
		if sp.fr == sp.fw {
			n := len(sp.chunks)
			if n > 0 && sp.lens[n-1] < spoolChunkSize {
				m := copy(sp.chunks[n-1][sp.lens[n-1]:], p)
				sp.lens[n-1] += m
				p = p[m:]
				continue
			}
			fits := sp.memRoom()
			if !fits && (sp.fileErr || d.maxTemp == 0) {
				// No file to take them: memory past the bounds (at most
				// a window, as room stops the credit), still counted.
				sp.memBytes += spoolChunkSize
				d.spoolMem.Add(spoolChunkSize)
				fits = true
			}
			if fits {
				sp.chunks = append(sp.chunks, spoolChunkPool.Get().(*[spoolChunkSize]byte))
				sp.lens = append(sp.lens, 0)
				continue
			}
		}
		if sp.file == nil && !sp.fileErr {
			f, err := os.CreateTemp(d.bufDir, "krait-spool-*")
			if err == nil {
				// Unlinked at once: nothing is left behind, whatever happens.
				if err = os.Remove(f.Name()); err != nil {
					f.Close()
				}
			}
			if err != nil {
				d.log.Error("cannot create a temporary file for a spooled response; the worker now waits for the client", "dir", d.bufDir, "err", err)
				sp.fileErr = true
				continue
			}
			sp.file = f
			d.spoolFiles.Add(1)
		}
		if sp.fileErr {
			continue
		}
		if _, err := sp.file.WriteAt(p, sp.fw); err != nil {
			return fmt.Errorf("writing the temporary file: %w", err)
		}
		sp.fw += int64(len(p))
		p = nil
	}
	return nil
}

// next is the drainer's next item, under mu: body bytes from memory (a
// slice of a chunk), or n bytes at off of the file, or an event, or done.
func (sp *spooler) next() (mem []byte, off int64, n int, ev *spoolEvent, end bool) {
	limit := sp.in
	if len(sp.events) > 0 {
		limit = sp.events[0].at
	}
	if left := limit - sp.out; left > 0 {
		if len(sp.chunks) > 0 && sp.hoff < sp.lens[0] {
			m := min(int64(sp.lens[0]-sp.hoff), left)
			return sp.chunks[0][sp.hoff : sp.hoff+int(m)], 0, 0, nil, false
		}
		return nil, sp.fr, int(min(sp.fw-sp.fr, left, spoolChunkSize)), nil, false
	}
	if len(sp.events) > 0 {
		ev := sp.events[0]
		sp.events[0] = spoolEvent{}
		sp.events = sp.events[1:]
		return nil, 0, 0, &ev, false
	}
	return nil, 0, 0, nil, sp.done && sp.fail == nil
}

// consumed records n bytes written from memory (fromMem) or the file.
func (sp *spooler) consumed(n int, fromMem bool) {
	sp.mu.Lock()
	sp.out += int64(n)
	sp.d.spoolBytes.Add(-int64(n))
	if fromMem {
		sp.hoff += n
		// A drained chunk goes back, unless it is the one being filled.
		if sp.hoff == sp.lens[0] && (len(sp.chunks) > 1 || sp.lens[0] == spoolChunkSize) {
			spoolChunkPool.Put(sp.chunks[0])
			sp.chunks[0] = nil
			sp.chunks, sp.lens = sp.chunks[1:], sp.lens[1:]
			sp.hoff = 0
			sp.memBytes -= spoolChunkSize
			sp.d.spoolMem.Add(-spoolChunkSize)
		}
	} else {
		sp.fr += int64(n)
		if sp.fr == sp.fw {
			sp.fr, sp.fw = 0, 0 // reuse the file from its start
		}
	}
	sp.mu.Unlock()
	signal1(sp.drained)
}

// stop makes the receiver end (its waits are cancelled) and waits for it;
// the caller may then use the stream again.
func (sp *spooler) stop() {
	sp.mu.Lock()
	sp.stopped = true
	cancel := sp.cancel
	sp.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	<-sp.exited
}

// clear releases everything the spool holds, after the receiver exited,
// so the pooled state starts clean: chunks, the temporary file (already
// unlinked: closing it frees its space), files of unsent SENDFILEs.
func (sp *spooler) clear() {
	for _, c := range sp.chunks {
		spoolChunkPool.Put(c)
	}
	clear(sp.chunks)
	sp.chunks, sp.lens, sp.hoff = sp.chunks[:0], sp.lens[:0], 0
	if sp.memBytes > 0 {
		sp.d.spoolMem.Add(-sp.memBytes)
	}
	sp.memBytes = 0
	if sp.file != nil {
		sp.file.Close()
		sp.d.spoolFiles.Add(-1)
		sp.file = nil
	}
	for _, ev := range sp.events {
		if ev.file != nil {
			ev.file.Close()
		}
	}
	clear(sp.events)
	sp.events = sp.events[:0]
	sp.d.spoolBytes.Add(sp.out - sp.in) // what was never sent
	sp.fileErr, sp.fr, sp.fw, sp.in, sp.out = false, 0, 0, 0, 0
	sp.done, sp.fail, sp.stopped, sp.cancel = false, nil, false, nil
	sp.s, sp.ctx, sp.rest = nil, nil, nil
	select {
	case <-sp.ready:
	default:
	}
	select {
	case <-sp.drained:
	default:
	}
	sp.phase.Store(phaseIdle)
}

// drain is the request goroutine's part once the receiver took over
// during its write (which returned werr, after sending sent bytes of a
// SENDFILE): it writes the spool to the client in order, flushing whenever
// it has caught up (so a streamed response stays live), and answers the
// stream's end as relay would have.
func (d *Dispatcher) drain(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, st *state, asgi, watching bool, werr error, sent int64) {
	sp := &st.sp
	exited := false
	stop := func() {
		if !exited {
			sp.stop()
			exited = true
		}
	}
	defer func() {
		stop()
		sp.clear()
	}()
	if werr != nil {
		stop()
		d.clientFailed(w, s, werr)
		return
	}
	if !watching && r.Watch != nil {
		// A slow client may also leave: notice it while the spool drains.
		r.Watch()
	}
	var buf *[spoolChunkSize]byte // for file reads
	defer func() {
		if buf != nil {
			spoolChunkPool.Put(buf)
		}
	}()
	flushed := false
	for {
		sp.mu.Lock()
		fail := sp.fail
		var mem []byte
		var off int64
		var n int
		var ev *spoolEvent
		end := false
		if fail == nil {
			mem, off, n, ev, end = sp.next()
		}
		sp.mu.Unlock()
		switch {
		case fail != nil:
			stop()
			d.spoolFailed(w, r, s, sp.ctx, asgi, fail)
			return
		case mem != nil:
			if _, err := w.Write(mem); err != nil {
				stop()
				d.clientFailed(w, s, err)
				return
			}
			sp.consumed(len(mem), true)
			flushed = false
		case n > 0:
			if buf == nil {
				buf = spoolChunkPool.Get().(*[spoolChunkSize]byte)
			}
			if _, err := sp.file.ReadAt(buf[:n], off); err != nil {
				d.log.Error("reading a spooled response back failed", "err", err)
				stop()
				s.Reset()
				w.Abort()
				return
			}
			if _, err := w.Write(buf[:n]); err != nil {
				stop()
				d.clientFailed(w, s, err)
				return
			}
			sp.consumed(n, false)
			flushed = false
		case ev != nil:
			if !d.spoolEvent(w, r, s, st, ev, &sent, stop) {
				return
			}
			flushed = false
		case end:
			stop()
			written := sp.written + sent
			if sp.declared >= 0 && written < sp.declared && !sp.bodyless {
				d.log.Error("the application sent less body than its Content-Length", "content_length", sp.declared, "sent", written)
				w.Abort()
			}
			return
		case !flushed:
			if err := w.Flush(); err != nil {
				stop()
				d.clientFailed(w, s, err)
				return
			}
			flushed = true
		default:
			<-sp.ready
		}
	}
}

// spoolEvent writes one queued event; false ends the response (handled).
func (d *Dispatcher) spoolEvent(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, st *state, ev *spoolEvent, sent *int64, stop func()) bool {
	if ev.file != nil {
		n, err := w.SendFile(ev.file, ev.off, ev.count)
		ev.file.Close()
		*sent += n
		if err != nil {
			d.log.Error("SENDFILE failed", "err", err)
			stop()
			s.Reset()
			w.Abort()
			return false
		}
		return true
	}
	h, _ := wire.ParseHeader(ev.frame)
	p := ev.frame[wire.HeaderSize:]
	switch h.Type {
	case wire.Trailers:
		hdrs, err := d.fieldList(st, p, "trailers")
		if err != nil {
			d.log.Error("invalid trailers from the application; dropped", "err", err)
			return true
		}
		if err := exchange.WriteTrailers(w, hdrs); err != nil && !errors.Is(err, exchange.ErrNotSupported) {
			stop()
			d.clientFailed(w, s, err)
			return false
		}
	case wire.EarlyHint:
		hdrs, err := d.fieldList(st, p, "early hint")
		if err != nil {
			d.log.Error("invalid early hint from the application; dropped", "err", err)
			return true
		}
		if err := w.WriteHeader(103, nil, hdrs, -1); err != nil {
			stop()
			d.clientFailed(w, s, err)
			return false
		}
	case wire.Reset:
		d.log.Debug("the worker reset the stream", "reason", string(p), "response_started", true)
		stop()
		w.Abort()
		return false
	case wire.Response:
		d.log.Error("the application sent a second response on one request")
		stop()
		s.Reset()
		w.Abort()
		return false
	}
	return true
}

// spoolFailed answers a receiver that stopped before the stream ended
// (its error), as relay answers the same errors from Recv once a response
// started. The receiver has exited: the stream is the caller's again.
func (d *Dispatcher) spoolFailed(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, ctx context.Context, asgi bool, err error) {
	switch {
	case errors.Is(err, errSpoolAbort):
		w.Abort()
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		if d.timeout > 0 && r.Context().Err() == nil {
			d.timedOut(w, r, s, asgi, true)
			return
		}
		d.log.Debug("the client went away (or the server stopped) during a spooled response, resetting the stream")
		s.Reset()
		w.Abort()
	case err == io.EOF:
		// We reset the stream (the request body failed or was too large).
		w.Abort()
	default:
		d.log.Warn("the worker died during a request", "method", string(r.Method), "path", string(r.Path),
			"stream", s.ID(), "err", err, "response_started", true)
		w.Abort()
	}
}

// SpoolStats reports the response spools: how many responses were
// spooled so far, the body bytes they hold now (memory and files), the
// chunk memory they hold, and their temporary files open now.
func (d *Dispatcher) SpoolStats() (spooled, bytes, memory, files int64) {
	return d.spooled.Load(), d.spoolBytes.Load(), d.spoolMem.Load(), d.spoolFiles.Load()
}

// lastEnds reports whether the last frame of a batch ends the stream:
// nothing after such a batch can hold the worker, so it is never spooled.
func lastEnds(b []byte) bool {
	end := false
	for len(b) >= wire.HeaderSize {
		h, _ := wire.ParseHeader(b)
		end = h.End()
		b = b[wire.HeaderSize+int(h.Length):]
	}
	return end
}
