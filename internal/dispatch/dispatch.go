package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krait-server/krait/internal/codec"
	"github.com/krait-server/krait/internal/errpage"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
	"github.com/krait-server/krait/internal/wsbridge"
)

// Config tunes the Dispatcher.
type Config struct {
	// MaxQueue is how many requests may wait for a free worker slot in
	// all; beyond it requests get 503. 0 answers 503 whenever every slot
	// is busy.
	MaxQueue int
	// MaxBody is the largest request body accepted (413 beyond it); 0 =
	// no limit. A Content-Length over it is refused before the body is
	// read; a chunked body is refused once that many bytes arrived (when
	// it is still being buffered; a streamed one has its stream reset).
	MaxBody int64
	// BufferBody is how much of a request body is read before a worker
	// slot is taken: a body up to that size is received whole (and its
	// chunked framing checked) first, so a slow or broken upload never
	// holds a worker. 0 reads only the first bytes, as before.
	BufferBody int64
	// BufferMemory bounds the chunks all requests together hold for
	// bodies received before a worker slot was taken, beyond each one's
	// first chunk (0 = DefaultBufferMemory). A request that would pass it
	// stops buffering and streams the rest of its body, as a body larger
	// than BufferBody does.
	BufferMemory int64
	// ASGI says the app is an ASGI app ("--interface asgi"): bodies are
	// then never buffered whole (an ASGI request holds no worker thread
	// while its body arrives, and an app may answer while the client is
	// still sending: full-duplex streaming). With "auto" the dispatcher
	// learns it from the first worker it opens.
	ASGI bool
	// Timeout is the hard limit on an HTTP request's time on a worker,
	// from its REQUEST to the end of its response (0 = none). Over it the
	// answer is 504 (or an abort once the response started); a WSGI
	// worker, which cannot stop a thread, is killed and replaced (its
	// other requests get 502), an ASGI request's task is cancelled.
	// WebSockets are exempt: they are long-lived by nature.
	Timeout time.Duration
	// Log receives protocol problems and app errors (nil = slog.Default()).
	Log *slog.Logger
	// WebSocket tunes the WebSocket bridge (its Log defaults to Log).
	WebSocket wsbridge.Config
	// BufferResponse turns on response spooling (spool.go) and bounds
	// one response's spool memory: once a write to the client blocks, the
	// rest of the response is read from the worker as it comes, held in
	// up to this many bytes of memory, then in an unlinked temporary file
	// in BufferDir ("" = os.TempDir()) of up to MaxTempFileSize bytes (0 =
	// none); past that the worker waits for the client. 0 = off: a slow
	// client holds its worker. BufferResponseMemory bounds all spools'
	// memory together (0 = DefaultBufferResponseMemory); beyond it
	// responses spool to disk.
	BufferResponse       int64
	BufferDir            string
	MaxTempFileSize      int64
	BufferResponseMemory int64
}

// MaxResponseHead is the largest response head an app may send, in bytes
// (codec.MaxResponseHead).
const MaxResponseHead = codec.MaxResponseHead

// Dispatcher is an exchange.Handler that runs requests on a worker pool.
type Dispatcher struct {
	pool     *supervisor.Pool
	maxQueue int
	maxBody  int64
	bufBody  int64
	bufLimit int64        // BufferMemory
	asgi     atomic.Bool  // Config.ASGI, or an ASGI worker was opened
	bufMem   atomic.Int64 // bytes of extra chunks held now (received.release)
	timeout  time.Duration
	log      *slog.Logger
	ws       *wsbridge.Bridge

	// Response spooling (spool.go).
	bufResp       int64 // Config.BufferResponse; 0 = off
	bufDir        string
	maxTemp       int64
	spoolMemLimit int64
	spoolMem      atomic.Int64 // chunk memory all spools hold now
	spooled       atomic.Int64 // responses spooled so far
	spoolBytes    atomic.Int64 // body bytes all spools hold now
	spoolFiles    atomic.Int64 // temporary files open now
}

// New returns a Dispatcher for pool.
func New(pool *supervisor.Pool, cfg Config) *Dispatcher {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.WebSocket.Log == nil {
		cfg.WebSocket.Log = cfg.Log
	}
	if cfg.BufferMemory <= 0 {
		cfg.BufferMemory = DefaultBufferMemory
	}
	d := &Dispatcher{pool: pool, maxQueue: max(cfg.MaxQueue, 0), maxBody: max(cfg.MaxBody, 0),
		bufBody: max(cfg.BufferBody, 0), bufLimit: cfg.BufferMemory, timeout: max(cfg.Timeout, 0), log: cfg.Log, ws: wsbridge.New(cfg.WebSocket)}
	d.asgi.Store(cfg.ASGI)
	if cfg.BufferResponseMemory <= 0 {
		cfg.BufferResponseMemory = DefaultBufferResponseMemory
	}
	if cfg.BufferDir == "" {
		cfg.BufferDir = os.TempDir()
	}
	d.bufResp, d.bufDir, d.maxTemp, d.spoolMemLimit = max(cfg.BufferResponse, 0), cfg.BufferDir, max(cfg.MaxTempFileSize, 0), cfg.BufferResponseMemory
	return d
}

// Shutdown starts closing every WebSocket session with code 1012 (service
// restart), and makes sessions accepted from now on close at once (see
// wsbridge.Bridge.Shutdown). Call it when a graceful stop begins; it does
// not wait. HTTP requests are not affected.
func (d *Dispatcher) Shutdown() { d.ws.Shutdown() }

// DefaultBufferMemory is Config.BufferMemory's default: 256 buffered
// bodies of 1 MiB.
const DefaultBufferMemory = 256 << 20

// inlineBody is the largest request body read before taking a worker slot
// and sent in the same write as REQUEST; larger or chunked bodies are
// streamed by a goroutine while the response is relayed.
const inlineBody = 64 << 10

// state is one request's scratch memory, pooled.
type state struct {
	frames  []byte // outgoing frames
	scratch []byte // path decoding, joined header values
	spare   []byte // the same while scratch holds the inline body
	parser  codec.Parser
	timer   *time.Timer // ASGI: arms the disconnect watch (recvArming)
	// tooLarge is set by the pump when a streamed body passed MaxBody
	// (read by relay once the stream it reset ends).
	tooLarge atomic.Bool
	// sp spools the response once the client falls behind (spool.go).
	sp spooler
	// deadline is when --timeout ends the request (with Timeout > 0).
	deadline time.Time
}

var statePool = sync.Pool{New: func() any {
	return &state{frames: make([]byte, 0, 4096), scratch: make([]byte, 0, 512)}
}}

// bodyBuf is a pump's buffer: room for a frame header before the payload.
type bodyBuf [wire.HeaderSize + inlineBody]byte

var bodyPool = sync.Pool{New: func() any { return new(bodyBuf) }}

// hdrRetry goes with every 503. The pages themselves (status, reason,
// request id; never why, which goes to the log) are errpage's.
var hdrRetry = exchange.Header{Name: []byte("Retry-After"), Value: []byte("1")}

// Serve runs r on a worker and writes its response to w.
func (d *Dispatcher) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	st := statePool.Get().(*state)
	defer statePool.Put(st)

	// A small body is read before a slot is taken, so a slow client
	// does not hold a worker, and goes out in the REQUEST's write. A
	// larger or chunked body is received in pooled chunks before a slot
	// is taken, whole up to BufferBody (so a slow upload or a malformed
	// chunked body never reaches a worker), else its first bytes (so a
	// client that announces a body and never sends it holds no worker
	// either); the pump sends them first and streams the rest.
	var body []byte
	inline := r.ContentLength == 0
	var pre *received // owned by the pump once it starts
	defer func() {
		if pre != nil {
			pre.release()
		}
	}()
	st.tooLarge.Store(false)
	if r.ContentLength != 0 {
		// Refused before anything is read: no 100 Continue, no worker.
		if d.maxBody > 0 && r.ContentLength > d.maxBody {
			errpage.Write(w, r, 413)
			return
		}
		// The engine sends "100 Continue" on the first body read. Refuse
		// now, without it, when no worker could take the request: the
		// client then never sends a body for nothing.
		if httpx.HasToken(r.Headers, "Expect", "100-continue") {
			if err := d.pool.Admits(d.maxQueue); err != nil {
				d.openFailed(w, r, err)
				return
			}
		}
		if r.ContentLength > 0 && r.ContentLength <= inlineBody {
			n := int(r.ContentLength)
			if cap(st.scratch) < n {
				st.scratch = make([]byte, n)
			}
			body = st.scratch[:n]
			if _, err := io.ReadFull(r.Body, body); err != nil {
				d.bodyFailed(w, r, err)
				return
			}
			inline = true
		} else {
			var err error
			pre, err = d.receive(r.Body, r.ContentLength, d.asgi.Load())
			switch {
			case err == errTooLarge:
				errpage.Write(w, r, 413)
				return
			case err != nil:
				d.bodyFailed(w, r, err)
				return
			}
			if pre.eof && pre.total <= inlineBody {
				// The whole body is in the first chunk: send it inline.
				// (pre.last may be 0: a second chunk taken for the end.)
				body = pre.bufs[0][wire.HeaderSize : wire.HeaderSize+int(pre.total)]
				inline = true
			}
		}
	}

	var s *worker.Stream
	asgi, ws := false, false
	// A request whose body goes whole with REQUEST may wait in a WSGI
	// worker's own queue (prefetch) and be given back from there.
	opt := supervisor.OpenOptions{Prefetch: inline && !wsbridge.IsUpgrade(r)}
	returns := 0
	for attempt := 0; ; attempt++ {
		var err error
		// No disconnect watch while queued: under load nearly every request
		// queues, and starting the engine's watcher for each one cost about
		// 12% of throughput (bench/, PROFILE=1). A request whose client left
		// while queued still runs; its response write then fails. The
		// request's context still ends the wait (a server stopping hard,
		// a deadline).
		s, err = d.pool.OpenWith(r.Context(), d.maxQueue, opt)
		if err != nil {
			d.openFailed(w, r, err)
			return
		}
		asgi = s.Worker().Interface() == "asgi"
		if asgi && !d.asgi.Load() {
			d.asgi.Store(true)
		}
		if asgi && wsbridge.IsUpgrade(r) {
			if status, msg := wsbridge.CheckHandshake(r); status != 0 {
				s.Close()
				d.log.Debug("invalid WebSocket handshake", "err", msg)
				wsbridge.Refuse(w, status, msg)
				return
			}
			ws = true
		}
		st.frames, err = d.requestFrames(st, r, s, body, inline, asgi, ws)
		if err == nil {
			st.deadline = time.Now().Add(d.timeout) // --timeout runs from REQUEST
			err = s.SendRequest(st.frames)
		}
		if err == nil && opt.Prefetch && s.Worker().Prefetch() > 0 {
			// It may wait in the worker's queue: until it starts it can
			// come back (recalled, or the worker died first).
			switch d.awaitStart(w, r, s, st) {
			case startReturned:
				s.Close()
				returns++
				if returns < maxReturns {
					opt.Again = true // it waited its turn already
					attempt--
					continue
				}
				d.log.Warn("a request was given back by workers too many times", "returns", returns)
				errpage.Write(w, r, 502)
				return
			case startTimedOut:
				s.Close()
				return
			}
		}
		if err == nil {
			break
		}
		s.Close()
		// The worker began stopping after we picked it, or had died
		// before a byte of the request reached it: run it on another.
		if (errors.Is(err, worker.ErrStopping) || errors.Is(err, worker.ErrNotDelivered)) && attempt < 3 {
			continue
		}
		d.log.Warn("sending a request to a worker failed", "err", err)
		errpage.Write(w, r, 502)
		return
	}

	if ws {
		deny, err := d.ws.Serve(w, r, s)
		switch {
		case err != nil:
			d.frameFailed(w, r, s, err)
		case deny != nil:
			// The app answered the handshake with HTTP: relay it.
			d.relay(w, r, s, st, true, deny)
		}
		s.Close()
		return
	}
	var pumpDone chan struct{}
	if !inline {
		pumpDone = make(chan struct{})
		go d.pump(r.Context(), s, r.Body, pre, st, pumpDone)
		pre = nil
	}
	d.relay(w, r, s, st, asgi, nil)
	if pumpDone != nil {
		<-pumpDone
	}
	s.Close()
}

func (d *Dispatcher) openFailed(w exchange.ResponseWriter, r *exchange.Request, err error) {
	switch {
	case errors.Is(err, supervisor.ErrQueueFull):
		errpage.Write(w, r, 503, hdrRetry)
	case errors.Is(err, supervisor.ErrClosed):
		errpage.Write(w, r, 503, hdrRetry)
	case errors.Is(err, supervisor.ErrUnavailable):
		errpage.Write(w, r, 503, hdrRetry)
	case errors.Is(err, context.Canceled):
		// The request's context ended while it waited for a worker: the
		// client is gone or the server is stopping hard.
		w.Abort()
	case errors.Is(err, context.DeadlineExceeded):
		// A deadline on the request passed while it waited for a worker.
		errpage.Write(w, r, 503, hdrRetry)
	default:
		d.log.Warn("no worker could take the request", "err", err)
		errpage.Write(w, r, 502)
	}
}

// requestFrames encodes REQUEST (and the inline body) for stream s.
func (d *Dispatcher) requestFrames(st *state, r *exchange.Request, s *worker.Stream, body []byte, inline, asgi, ws bool) ([]byte, error) {
	b, off := wire.BeginFrame(st.frames[:0])
	var flags uint8
	if inline && len(body) == 0 {
		flags = wire.FlagEndStream
	}
	// body may alias st.scratch: build the environ with spare scratch.
	scratch := &st.scratch
	if len(body) > 0 {
		scratch = &st.spare
	}
	if asgi {
		b, *scratch = codec.AppendScope(b, r, ws, *scratch)
	} else {
		b, *scratch = codec.AppendEnviron(b, r, *scratch)
	}
	if err := wire.FinishFrame(b, off, wire.Request, flags, s.ID()); err != nil {
		return b, err
	}
	if len(body) > 0 {
		// Fits the initial window (inlineBody <= InitialWindow).
		if _, err := s.AcquireSendWindow(r.Context(), len(body)); err != nil {
			return b, err
		}
		b = wire.AppendFrame(b, wire.Data, wire.FlagEndStream, s.ID(), body)
	}
	return b, nil
}

// readFirst reads the first bytes of a request body: at least one byte,
// or the end of the body, or an error (the engine bounds the wait).
func readFirst(body io.Reader, p []byte) (int, error) {
	for range 100 {
		if n, err := body.Read(p); n > 0 || err != nil {
			return n, err
		}
	}
	return 0, io.ErrNoProgress
}

// bodyFailed answers a request whose body could not be read before it
// reached a worker.
func (d *Dispatcher) bodyFailed(w exchange.ResponseWriter, r *exchange.Request, err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The engine's body timeout (--body-timeout of inactivity): the
		// client announced a body, or was sent 100 Continue, and stopped
		// sending it. The engine closes the connection after this answer.
		d.log.Debug("the request body did not arrive in time", "err", err)
		errpage.Write(w, r, 408)
		return
	}
	// Malformed chunked framing: the engine answers 400 itself when no
	// response was written; a client that went away gets nothing.
	d.log.Debug("reading the request body failed", "err", err)
}

// received is the part of a request body read before a worker slot was
// taken, in pooled chunks: all chunks but the last are full.
type received struct {
	bufs  []*bodyBuf
	last  int   // bytes in the last chunk
	total int64 // bytes in all chunks
	eof   bool  // the body ended: it is all here, and valid
	d     *Dispatcher
}

// chunkSize is what one chunk counts against BufferMemory.
const chunkSize = int64(len(bodyBuf{}))

func (rc *received) release() {
	for i, b := range rc.bufs {
		bodyPool.Put(b)
		rc.bufs[i] = nil
	}
	if extra := len(rc.bufs) - 1; extra > 0 {
		rc.d.bufMem.Add(-int64(extra) * chunkSize)
	}
	rc.bufs = rc.bufs[:0]
}

// errTooLarge is a request body over MaxBody.
var errTooLarge = errors.New("dispatch: the request body is larger than --max-body-size")

// receive reads a request body of length cl (-1: chunked) before a worker
// slot is taken: at least its first bytes, and (unless firstOnly: an ASGI
// app) on until it ends or more than BufferBody bytes are in. Memory grows only as bytes arrive, one
// pooled chunk at a time. errTooLarge when more than MaxBody arrived.
func (d *Dispatcher) receive(body io.Reader, cl int64, firstOnly bool) (*received, error) {
	rc := &received{bufs: make([]*bodyBuf, 1, 4), d: d}
	rc.bufs[0] = bodyPool.Get().(*bodyBuf)
	n, err := readFirst(body, rc.bufs[0][wire.HeaderSize:])
	rc.last, rc.total = n, int64(n)
	for err == nil && rc.total <= d.bufBody && !firstOnly {
		if d.maxBody > 0 && rc.total > d.maxBody {
			break
		}
		if cl > 0 && rc.total >= cl {
			// All announced bytes are in (the engine checks no more).
			err = io.EOF
			break
		}
		if rc.last == inlineBody {
			// Every chunk after the first counts against BufferMemory;
			// past it, the rest of the body streams.
			if d.bufMem.Add(chunkSize) > d.bufLimit {
				d.bufMem.Add(-chunkSize)
				break
			}
			rc.bufs = append(rc.bufs, bodyPool.Get().(*bodyBuf))
			rc.last = 0
		}
		n, err = body.Read(rc.bufs[len(rc.bufs)-1][wire.HeaderSize+rc.last:])
		rc.last += n
		rc.total += int64(n)
	}
	if d.maxBody > 0 && rc.total > d.maxBody {
		err = errTooLarge
	}
	if err != nil && err != io.EOF {
		rc.release()
		return nil, err
	}
	rc.eof = err == io.EOF
	return rc, nil
}

// limitBody fails with errTooLarge once more than left bytes were read.
type limitBody struct {
	r    io.Reader
	left int64
}

func (l *limitBody) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return 0, errTooLarge
	}
	return n, err
}

// pump streams a large or chunked request body to the worker, within the
// stream's send window: first what receive read before the slot was
// taken, then (unless that was all of it) the rest of body. It releases
// rc. A body that passes MaxBody sets st.tooLarge and resets the stream.
func (d *Dispatcher) pump(ctx context.Context, s *worker.Stream, body io.Reader, rc *received, st *state, done chan<- struct{}) {
	defer close(done)
	defer rc.release()
	for i, buf := range rc.bufs {
		n, last := inlineBody, i == len(rc.bufs)-1
		if last {
			n = rc.last
		}
		if !sendChunk(ctx, s, buf, n, last && rc.eof) {
			return
		}
	}
	if rc.eof {
		return
	}
	if d.maxBody > 0 {
		body = &limitBody{r: body, left: d.maxBody - rc.total}
	}
	buf := rc.bufs[len(rc.bufs)-1]
	for {
		n, rerr := body.Read(buf[wire.HeaderSize:])
		eof := rerr == io.EOF
		if rerr != nil && !eof {
			if rerr == errTooLarge {
				st.tooLarge.Store(true)
			}
			d.log.Debug("reading the request body failed, resetting the stream", "err", rerr)
			s.Reset()
			return
		}
		if !sendChunk(ctx, s, buf, n, eof) || eof {
			return
		}
	}
}

// sendChunk sends buf's n payload bytes as DATA frames (END_STREAM on the
// last when eof), each piece's header written over the bytes just before
// it (already copied out by Send). false: the worker ended the stream or
// died, or ctx ended.
func sendChunk(ctx context.Context, s *worker.Stream, buf *bodyBuf, n int, eof bool) bool {
	start := wire.HeaderSize
	for n > 0 || eof {
		m := 0
		if n > 0 {
			var err error
			if m, err = s.AcquireSendWindow(ctx, n); err != nil {
				return false
			}
		}
		var flags uint8
		if eof && m == n {
			flags = wire.FlagEndStream
		}
		wire.PutHeader(buf[start-wire.HeaderSize:], m, wire.Data, flags, s.ID())
		if err := s.Send(buf[start-wire.HeaderSize : start+m]); err != nil {
			return false
		}
		start += m
		n -= m
		if flags != 0 {
			return true
		}
	}
	return true
}

// relay copies the worker's response to w until the stream ends. first,
// when not nil, holds frames already received (a WebSocket denial
// response). For ASGI the client's connection is watched from the start,
// so the app sees http.disconnect while it is still thinking.
func (d *Dispatcher) relay(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, st *state, asgi bool, first []byte) {
	started := false
	declared := int64(-1) // the length passed to WriteHeader
	// A HEAD response's Content-Length describes the GET's body (RFC 9110
	// §9.3.2) and a 204 or 304 has none: no body is owed for it.
	head := string(r.Method) == "HEAD"
	bodyless := head
	var written int64
	truncated := false
	// Every wait takes the request's context: it ends when the server
	// stops hard, and, once the connection is watched (r.Watch), when the
	// client leaves.
	ctx := r.Context()
	if d.timeout > 0 {
		// From the REQUEST, or from when the worker started the request
		// when it was recalled from its queue (awaitStart).
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, st.deadline)
		defer cancel()
	}
	// A streamed response (server-sent events, long polls) may wait long
	// for the app with nothing to write, so nothing would notice the
	// client leaving: once a response is streaming, watch the connection.
	// Plain responses never ask, so they pay nothing for it.
	watching := r.Watch == nil // nothing to start when the engine cannot watch
	// ASGI: an app that has not answered within goneDelay may be long-
	// polling; from then on the connection is watched. Quick answers
	// never pay for the watcher (it costs a third of a hello world's
	// throughput), and a client that left earlier is seen at once then.
	for {
		b, err := first, error(nil)
		if b == nil {
			if asgi && !watching {
				b, err = d.recvArming(ctx, s, st)
				if err == worker.ErrWake {
					watching = true
					r.Watch()
					b, err = s.Recv(ctx)
				}
			} else {
				b, err = s.Recv(ctx)
			}
		}
		first = nil
		if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			if d.timeout > 0 && r.Context().Err() == nil {
				d.timedOut(w, r, s, asgi, started)
				return
			}
			d.log.Debug("the client went away (or the server stopped) during a response, resetting the stream")
			s.Reset()
			w.Abort()
			return
		}
		if err == io.EOF {
			// We reset the stream: the client failed while sending the
			// body, or sent more than MaxBody.
			if st.tooLarge.Load() && !started {
				errpage.Write(w, r, 413)
				return
			}
			w.Abort()
			return
		}
		if err != nil {
			d.log.Warn("the worker died during a request", "method", string(r.Method), "path", string(r.Path),
				"stream", s.ID(), "err", err, "response_started", started)
			if started {
				w.Abort()
			} else {
				errpage.Write(w, r, 502)
			}
			return
		}
		credit := 0
		ended := false
		// A batch that does not end the stream may leave the worker
		// waiting for credit while a write blocks on a slow client: its
		// blocking writes are watched, and spooled past spoolAfter.
		arm := d.bufResp > 0 && !lastEnds(b)
		for len(b) > 0 {
			h, _ := wire.ParseHeader(b) // the worker's reader validated it
			p := b[wire.HeaderSize : wire.HeaderSize+int(h.Length)]
			b = b[wire.HeaderSize+int(h.Length):]
			ended = ended || h.End()
			switch h.Type {
			case wire.Response:
				resp, err := st.parser.Response(p)
				if err != nil {
					d.frameFailed(w, r, s, fmt.Errorf("RESPONSE: %w", err))
					return
				}
				for _, name := range resp.Dropped {
					d.log.Error("the application set a hop-by-hop header; dropped", "header", string(name))
				}
				status := resp.Status
				length := resp.ContentLength
				if length < 0 && !resp.Trailers {
					length = exactLength(h, b)
					if head && length == 0 {
						// An empty answer to HEAD says nothing of the GET's length.
						length = -1
					}
				}
				bodyless = bodyless || status == 204 || status == 304
				if err := w.WriteHeader(status, resp.Reason, resp.Headers, length); err != nil {
					d.clientFailed(w, s, err)
					return
				}
				started = true
				declared = length
			case wire.Data:
				credit += len(p)
				if declared >= 0 && int64(len(p)) > declared-written {
					if !truncated {
						truncated = true
						d.log.Warn("the application sent more body than its Content-Length; truncated", "content_length", declared)
					}
					p = p[:declared-written]
				}
				if len(p) > 0 {
					written += int64(len(p))
					if arm {
						st.sp.arm(d, s, ctx, b, credit, declared, written, truncated, bodyless)
					}
					_, err := w.Write(p)
					if arm && st.sp.disarm() {
						d.drain(w, r, s, st, asgi, watching, err, 0)
						return
					}
					if err != nil {
						d.clientFailed(w, s, err)
						return
					}
				}
			case wire.SendFile:
				if arm {
					st.sp.arm(d, s, ctx, b, credit, declared, written, truncated, bodyless)
				}
				n, err := d.sendFile(w, p)
				if arm && st.sp.disarm() {
					if err != nil {
						d.log.Error("SENDFILE failed", "err", err)
					}
					d.drain(w, r, s, st, asgi, watching, err, n)
					return
				}
				written += n
				if err != nil {
					d.log.Error("SENDFILE failed", "err", err)
					s.Reset()
					w.Abort()
					return
				}
			case wire.EarlyHint:
				hdrs, err := d.fieldList(st, p, "early hint")
				if err != nil {
					d.log.Error("invalid early hint from the application; dropped", "err", err)
					break
				}
				if err := w.WriteHeader(103, nil, hdrs, -1); err != nil {
					d.clientFailed(w, s, err)
					return
				}
			case wire.Trailers:
				hdrs, err := d.fieldList(st, p, "trailers")
				if err != nil {
					d.log.Error("invalid trailers from the application; dropped", "err", err)
					break
				}
				// Through the wrapper chain (access log): a type assertion
				// on w would miss the engine's TrailerWriter.
				if err := exchange.WriteTrailers(w, hdrs); err != nil && !errors.Is(err, exchange.ErrNotSupported) {
					d.clientFailed(w, s, err)
					return
				}
			case wire.WSAccept, wire.WSClose, wire.WSMessage:
				d.log.Error("the application sent a WebSocket message on an HTTP request", "frame", h.Type.String())
				s.Reset()
				if started {
					w.Abort()
				} else {
					errpage.Write(w, r, 500)
				}
				return
			case wire.Reset:
				d.log.Debug("the worker reset the stream", "reason", string(p), "response_started", started)
				if started {
					w.Abort()
				} else {
					errpage.Write(w, r, 500)
				}
				return
			}
		}
		if ended {
			if declared >= 0 && written < declared && !bodyless {
				d.log.Error("the application sent less body than its Content-Length", "content_length", declared, "sent", written)
				w.Abort()
			}
			return
		}
		if started {
			if arm {
				st.sp.arm(d, s, ctx, nil, credit, declared, written, truncated, bodyless)
			}
			err := w.Flush()
			if arm && st.sp.disarm() {
				d.drain(w, r, s, st, asgi, watching, err, 0)
				return
			}
			if err != nil {
				d.clientFailed(w, s, err)
				return
			}
			if !watching {
				watching = true
				r.Watch()
			}
		}
		if err := s.Credit(credit); err != nil {
			d.log.Debug("returning window credit failed", "err", err)
		}
	}
}

// timedOut ends a request that ran over --timeout: 504 (or an abort once
// the response started). An ASGI app's task is cancelled (RESET with a
// reason) and the worker goes on; a WSGI worker cannot stop a thread, so
// it is killed, and its other requests fail with an error naming this one.
func (d *Dispatcher) timedOut(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, asgi, started bool) {
	wk := s.Worker()
	if asgi {
		d.log.Warn("request exceeded --timeout; cancelling its task", "timeout", d.timeout,
			"method", string(r.Method), "path", string(r.Path), "worker", wk.ID(), "pid", wk.Pid(), "stream", s.ID())
		s.Cancel(fmt.Sprintf("the request exceeded --timeout %v", d.timeout))
	} else {
		d.log.Warn("request exceeded --timeout; killing its WSGI worker", "timeout", d.timeout,
			"method", string(r.Method), "path", string(r.Path), "worker", wk.ID(), "pid", wk.Pid(), "stream", s.ID())
		wk.KillFor(fmt.Errorf("request %s %s on stream %d exceeded --timeout %v", r.Method, r.Path, s.ID(), d.timeout))
	}
	if started {
		w.Abort()
	} else {
		errpage.Write(w, r, 504)
	}
}

// maxReturns bounds how often one request may be given back by workers
// (worker.ErrReturned) before it fails with 502: each return means it
// waited in a worker's queue while a thread elsewhere was free, so many
// in a row mean something is wrong.
const maxReturns = 100

// prefetchWatchDelay is how long a request may wait for its worker's
// first answer before the client's connection is watched (awaitStart).
// Quick answers never pay for the watcher; a client that left earlier is
// seen as soon as watching starts.
const prefetchWatchDelay = 100 * time.Millisecond

// startResult is what awaitStart saw.
type startResult int

const (
	startAnswered startResult = iota // the worker answered or the stream failed: relay takes over
	startReturned                    // given back unstarted: run it on another worker
	startTimedOut                    // over --timeout once started: answered 504 here
)

// awaitStart waits for a recallable stream's first answer, which tells
// whether the worker started it. Until then it may be waiting in the
// worker's own queue (prefetch): it may be recalled to run on a worker
// with a free thread (supervisor rebalancing), or the worker may die
// before it could start it; either way it comes back (startReturned)
// and the caller runs it elsewhere. --timeout must not charge it for
// that wait, nor kill its worker because of it: when the timeout passes
// with no answer the stream is recalled; if it comes back unstarted it
// is run again (its clock restarts), if the worker had started it (KEPT
// says how long ago) the deadline counts from that start, and only a
// request that ran over it is timed out (the WSGI worker killed). A
// worker that does not answer the RECALL within another --timeout is
// taken to run it. The hot path (an answer before any timeout) costs a
// reset and a stop of the state's pooled timer (armed for the watch
// delay or --timeout, whichever is first; not at all when neither
// applies) and a wait on the stream's state; relay's first Recv then
// finds the frames.
func (d *Dispatcher) awaitStart(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, st *state) startResult {
	ctx := r.Context()
	// One timer, set to the next of: watching the client's connection (a
	// request that waits in a worker's queue while its client leaves is
	// reset there, and the app never sees it), and --timeout.
	watchAt := time.Now().Add(prefetchWatchDelay)
	watching := r.Watch == nil
	if st.timer == nil {
		st.timer = time.NewTimer(time.Hour)
	}
	t := st.timer // pooled with the state: no allocation per request
	defer t.Stop()
	for {
		next := st.deadline
		if !watching && (d.timeout == 0 || watchAt.Before(next)) {
			next = watchAt
		}
		var wake <-chan time.Time
		if !watching || d.timeout > 0 {
			t.Reset(time.Until(next))
			wake = t.C
		}
		switch s.Await(ctx, wake) {
		case worker.Returned:
			return startReturned
		case worker.Answered, worker.Kept:
			return startAnswered
		}
		if ctx.Err() != nil {
			return startAnswered // relay sees it, resets the stream and aborts
		}
		if !watching && !time.Now().Before(watchAt) {
			watching = true
			r.Watch()
		}
		if d.timeout > 0 && !time.Now().Before(st.deadline) {
			break
		}
	}
	s.Recall()
	t.Reset(d.timeout)
	switch s.Await(ctx, t.C) {
	case worker.Returned:
		d.log.Info("a request waited --timeout in its worker's queue; running it again", "timeout", d.timeout,
			"method", string(r.Method), "path", string(r.Path), "worker", s.Worker().ID())
		return startReturned
	case worker.Kept:
		st.deadline = time.Now().Add(d.timeout - s.RunningFor())
		if time.Now().Before(st.deadline) {
			return startAnswered
		}
	case worker.Answered:
		// It started (it answered before our RECALL arrived); when is
		// unknown: give it a whole --timeout from now.
		st.deadline = time.Now().Add(d.timeout)
		return startAnswered
	default:
		if ctx.Err() != nil {
			return startAnswered
		}
	}
	d.timedOut(w, r, s, false, false)
	return startTimedOut
}

// goneDelay is how long an ASGI request may wait for the app before the
// client's connection is watched for a disconnect.
const goneDelay = 10 * time.Millisecond

// recvArming receives with the state's timer set to goneDelay: ErrWake
// means the app has not answered yet.
func (d *Dispatcher) recvArming(ctx context.Context, s *worker.Stream, st *state) ([]byte, error) {
	if st.timer == nil {
		st.timer = time.NewTimer(goneDelay)
	} else {
		st.timer.Reset(goneDelay)
	}
	b, err := s.RecvUntil(ctx, st.timer.C)
	st.timer.Stop()
	return b, err
}

// exactLength returns the body length when the frames after RESPONSE in
// this batch are the whole body (DATA only, the last one ending the
// stream), else -1.
func exactLength(resp wire.Header, rest []byte) int64 {
	if resp.End() {
		return 0
	}
	var n int64
	for len(rest) > 0 {
		h, _ := wire.ParseHeader(rest)
		if h.Type != wire.Data {
			return -1
		}
		n += int64(h.Length)
		rest = rest[wire.HeaderSize+int(h.Length):]
		if h.End() {
			return n
		}
	}
	return -1
}

func (d *Dispatcher) clientFailed(w exchange.ResponseWriter, s *worker.Stream, err error) {
	d.log.Debug("writing to the client failed, resetting the stream", "err", err)
	s.Reset()
	w.Abort()
}

// frameFailed answers a frame that opens a response but failed to decode,
// before anything was written: one that does not decode (wire.ErrProtocol)
// is reported to the worker layer, which kills and replaces the worker, and
// answered 502; one that is not valid HTTP (codec.ErrApp) is the app's
// error: the stream is reset and the answer is 500.
func (d *Dispatcher) frameFailed(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, err error) {
	if errors.Is(err, wire.ErrProtocol) {
		s.ProtocolError(fmt.Errorf("undecodable %w", err))
		errpage.Write(w, r, 502)
		return
	}
	d.log.Error("invalid response from the application", "err", err)
	s.Reset()
	errpage.Write(w, r, 500)
}

// fieldList decodes a TRAILERS or EARLY_HINT payload, reporting the
// fields the app may not set there.
func (d *Dispatcher) fieldList(st *state, p []byte, what string) ([]exchange.Header, error) {
	hdrs, dropped, err := st.parser.FieldList(p, what)
	for _, name := range dropped {
		d.log.Error("the application set a field it may not set here; dropped", "field", string(name), "in", what)
	}
	return hdrs, err
}

// sendFile serves a SENDFILE payload (path, offset, count).
func (d *Dispatcher) sendFile(w exchange.ResponseWriter, p []byte) (int64, error) {
	path, off, count, err := codec.SendFile(p)
	if err != nil {
		return 0, err
	}
	f, err := os.Open(string(path))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return w.SendFile(f, off, count)
}
