package h1

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/rawio"
)

const (
	readBufSize  = 4 << 10   // initial read buffer; grows up to Server.maxBuf
	writeBufSize = 4 << 10   // response buffer; larger writes bypass it
	maxChunkLine = 4 << 10   // chunk-size line with extensions
	discardLimit = 256 << 10 // unread body the engine drains before keep-alive
	goneLimit    = 64 << 10  // bytes the Watch watcher reads ahead before giving up
	// idleGrace is how long an idle connection waits on the goroutine
	// that served its last request. After that it continues on a fresh
	// goroutine (handoff): the old one's stack, grown by the handler, is
	// freed, so a long-idle connection holds a minimal stack. Clients
	// sending their next request sooner never pay for the handoff.
	idleGrace = time.Second
)

// Connection states, for Shutdown.
const (
	stateActive int32 = iota // reading a request head or serving a request
	stateIdle                // waiting for the first byte of a request
	stateClosed              // closed by Shutdown while idle
)

var (
	readPool  = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
	writePool = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}
)

// conn is one client connection. All fields are owned by the connection's
// goroutine (the handler runs on it) except state, which Shutdown reads,
// gone, which has its own lock, and ctx, which has its own too (the
// watcher and Close cancel it).
type conn struct {
	srv *Server
	nc  net.Conn
	// sock does the per-request reads and writes of nc: raw system
	// calls where they apply (internal/rawio).
	sock rawio.Conn

	// The buffers are held only while a request is being read or served:
	// an idle connection gives both back (putBufs) and waits for its next
	// request with no buffer (readIdle).
	rbuf   *[]byte // pooled read buffer, nil once replaced by a grown one (or none held)
	buf    []byte  // read buffer; unread bytes are buf[r:w]; nil while idle
	r, w   int
	pin    int // while a handler runs, bytes below pin hold its request head: never moved
	grown  int // bytes of buf beyond readBufSize, reserved from the Server's HeadBudget
	wbuf   *[]byte
	out    []byte // pending response bytes; nil while idle
	state  atomic.Int32
	rc     syscall.RawConn       // nc's raw connection, nil when nc has none
	idleFn func(fd uintptr) bool // c.idleRead, bound once
	idleN  int                   // idleRead's result
	idleEr error                 // idleRead's error
	// Between requests: waiting is set from the first idle wait until
	// bytes arrive, idleSince is when that wait began, handoff asks
	// serve to continue on a fresh goroutine, handedOff says it did.
	waiting, handoff, handedOff bool
	idleSince                   time.Time

	rdl, wdl time.Time // read/write deadlines currently set on nc (zero: none)
	werr     error     // sticky write error

	req        exchange.Request
	hi         headInfo
	body       bodyReader
	rw         response
	closeAfter bool // close once the current response is out
	// wmu serializes the response side (out, werr, closeAfter, the
	// response state) between the handler writing and a goroutine of
	// the handler reading the body (which flushes pending output and
	// may answer 100 Continue) at the same time.
	wmu      sync.Mutex
	hijacked bool // the handler took the connection over (Hijack)

	remoteAddr, localAddr string
	remotePort, localPort int

	watchFn func() // bound once: Request.Watch costs nothing per request
	gone    goneWatch
	ctx     reqCtx // the current request's context (Request.Ctx)
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc}
	if c.rc = rawConn(nc); c.rc != nil {
		c.idleFn = c.idleRead
	}
	c.sock.Init(nc)
	c.body.c = c
	c.rw.c = c
	c.watchFn = c.watchGone
	c.remoteAddr, c.remotePort = splitAddr(nc.RemoteAddr())
	c.localAddr, c.localPort = splitAddr(nc.LocalAddr())
	c.req.Scheme = s.cfg.Scheme
	c.req.RemoteAddr, c.req.RemotePort = c.remoteAddr, c.remotePort
	c.req.LocalAddr, c.req.LocalPort = c.localAddr, c.localPort
	c.req.Watch = c.watchFn
	c.req.Ctx = &c.ctx
	c.state.Store(stateIdle)
	return c
}

// splitAddr gives the IP and port of a TCP address; "" and 0 otherwise
// (unix sockets).
func splitAddr(a net.Addr) (string, int) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String(), ta.Port
	}
	return "", 0
}

// release gives the buffers back when the connection closes.
func (c *conn) release() { c.putBufs() }

// getReadBuf takes a pooled read buffer.
func (c *conn) getReadBuf() {
	if c.buf == nil {
		c.rbuf = readPool.Get().(*[]byte)
		c.buf = *c.rbuf
	}
}

// getWriteBuf takes a pooled response buffer.
func (c *conn) getWriteBuf() {
	if c.out == nil {
		c.wbuf = writePool.Get().(*[]byte)
		c.out = (*c.wbuf)[:0]
	}
}

// putBufs gives both buffers back: pooled ones to their pools, a grown
// read buffer to the GC (and its bytes to the head-memory budget). The
// caller has flushed the output and holds no unread input. The last
// request's slices may still alias the read buffer; they are dead, as
// they would be once the next request overwrote it.
func (c *conn) putBufs() {
	if c.rbuf != nil {
		readPool.Put(c.rbuf)
	}
	if c.grown > 0 {
		c.srv.budget.release(c.grown, c.srv.log)
		c.grown = 0
	}
	c.rbuf, c.buf = nil, nil
	c.r, c.w, c.pin = 0, 0, 0
	if c.wbuf != nil && cap(c.out) == writeBufSize {
		*c.wbuf = c.out[:0]
		writePool.Put(c.wbuf)
	}
	c.wbuf, c.out = nil, nil
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		if handedOff {
			return // the connection lives on in another goroutine
		}
		if v := recover(); v != nil {
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.log.Error("h1: handler panic; connection closed", "panic", v, "stack", string(buf))
		}
		c.stopGone()
		_ = c.nc.Close()
		c.srv.untrack(c)
		c.release()
	}()
	for {
		if !c.readHead() {
			if c.handoff {
				c.handoff = false
				c.req.Headers = nil // 768 bytes an idle connection need not hold
				handedOff = true
				go c.serve()
			}
			return
		}
		c.serveRequest()
		if c.hijacked {
			return
		}
		if c.closeAfter || c.werr != nil || c.srv.shutting.Load() {
			_ = c.flush()
			return
		}
	}
}

// readHead reads and parses the next request head. It answers malformed
// heads itself and reports false when the connection must close.
func (c *conn) readHead() bool {
	var scan headScan
	var headStart time.Time // when the head's first byte arrived
	for {
		if scan.pos == 0 {
			// RFC 9112 §2.2: ignore empty lines before a request line.
			for c.w-c.r >= 2 && c.buf[c.r] == '\r' && c.buf[c.r+1] == '\n' {
				c.r += 2
			}
		}
		if c.w > c.r {
			n, perr := scan.scan(c.buf[c.r:c.w], &c.srv.lim)
			if perr != nil {
				c.reject(perr)
				return false
			}
			if n > 0 {
				head := c.buf[c.r : c.r+n]
				c.r += n
				if perr := parseHead(head, &c.req, &c.hi, &c.srv.lim, c.srv.opt); perr != nil {
					c.reject(perr)
					return false
				}
				return true
			}
		}

		// Need more bytes.
		idle := c.w == c.r
		if idle {
			c.r, c.w = 0, 0
			if !c.state.CompareAndSwap(stateActive, stateIdle) && c.state.Load() == stateClosed {
				return false
			}
			if c.srv.shutting.Load() {
				return false
			}
		} else if c.w == len(c.buf) {
			if perr := c.makeRoom(); perr != nil {
				// The scanner refuses a head before it outgrows maxBuf;
				// this is the head-memory budget running out.
				c.reject(perr)
				return false
			}
		}
		now := time.Now()
		if err := c.flushAt(now); err != nil {
			return false
		}
		var n int
		var err error
		if idle {
			if !c.waiting {
				c.waiting, c.idleSince = true, now
			}
			c.putBufs()
			// First wait idleGrace on this goroutine, then (handoff)
			// the rest of IdleTimeout on a fresh one.
			grace := c.rc != nil && !c.handedOff && c.srv.cfg.KeepAlive > 2*idleGrace
			if grace {
				c.setReadDeadline(now, c.idleSince.Add(idleGrace), idleGrace)
			} else {
				c.setReadDeadline(now, c.idleSince.Add(c.srv.cfg.KeepAlive), c.srv.cfg.KeepAlive)
			}
			n, err = c.readIdle()
			if n == 0 && grace && isTimeout(err) {
				c.handoff, c.handedOff = true, true
				return false
			}
			c.w = n
			if n > 0 {
				if !c.state.CompareAndSwap(stateIdle, stateActive) {
					return false // Shutdown closed us while the bytes arrived
				}
				c.waiting, c.handedOff = false, false
				c.getWriteBuf()
				if c.req.Headers == nil {
					c.req.Headers = make([]exchange.Header, 0, 16)
				}
			}
		} else {
			if headStart.IsZero() {
				headStart = now
			}
			c.setReadDeadline(now, headStart.Add(c.srv.cfg.HeaderTimeout), 0)
			n, err = c.sock.Read(c.buf[c.w:])
			c.w += n
		}
		if err != nil && n == 0 {
			if c.w > c.r && isTimeout(err) {
				c.reject(&protoError{408, "request head not received in time"})
			}
			return false
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readIdle waits for the first bytes of a request without holding a
// buffer: on a raw socket it waits for readability and only then takes a
// pooled read buffer for the read (idleRead), so 10,000 idle keep-alive
// connections cost no buffer memory. Other connections read into a pooled
// buffer. The read buffer is held afterwards whatever the result.
func (c *conn) readIdle() (int, error) {
	if c.rc == nil {
		c.getReadBuf()
		return c.nc.Read(c.buf)
	}
	c.idleN, c.idleEr = 0, nil
	if err := c.rc.Read(c.idleFn); err != nil {
		// Deadline or close while waiting (idleRead returned false).
		c.getReadBuf()
		return 0, err
	}
	return c.idleN, c.idleEr
}

// setReadDeadline sets the read deadline to dl unless the one in force is
// at most slack earlier: re-arming the timer for every request costs more
// than a slightly early timeout is worth.
func (c *conn) setReadDeadline(now, dl time.Time, timeout time.Duration) {
	if !c.rdl.IsZero() && !dl.Before(c.rdl) && dl.Sub(c.rdl) < timeout/8 && c.rdl.After(now) {
		return
	}
	c.rdl = dl
	_ = c.nc.SetReadDeadline(dl)
}

// makeRoom frees space at the end of buf: it moves the unread bytes down to
// pin, or grows the buffer when that frees nothing, within maxBuf (431
// beyond) and the server's head-memory budget (503 beyond).
func (c *conn) makeRoom() *protoError {
	if c.r > c.pin {
		copy(c.buf[c.pin:], c.buf[c.r:c.w])
		c.w -= c.r - c.pin
		c.r = c.pin
		if c.w < len(c.buf) {
			return nil
		}
	}
	n := 2 * len(c.buf)
	if n > c.srv.maxBuf {
		n = c.srv.maxBuf
	}
	if n <= len(c.buf) {
		return errHeadTooLarge
	}
	more := n - readBufSize - c.grown
	if !c.srv.budget.reserve(more) {
		c.srv.budget.warn(c.srv.log, c.remoteAddr)
		return errHeadMemory
	}
	c.grown += more
	nb := make([]byte, n)
	copy(nb, c.buf[:c.w])
	// The old array may hold the running request's head (pin > 0), which
	// the handler's slices alias: it is left to the GC, not reused.
	if c.rbuf != nil && c.pin == 0 {
		readPool.Put(c.rbuf)
	}
	c.rbuf = nil
	c.buf = nb
	return nil
}

// fill reads at least one more byte into buf during a request (body, chunk
// lines, trailers). Pending output is flushed first: the client may wait
// for it before sending more.
func (c *conn) fill() error {
	if c.r == c.w {
		c.r, c.w = c.pin, c.pin
	}
	if c.w == len(c.buf) {
		if perr := c.makeRoom(); perr != nil {
			return perr
		}
	}
	now := time.Now()
	if err := c.lockedFlushAt(now); err != nil {
		return err
	}
	// Body bytes: an idle limit of its own (--body-timeout), re-armed on
	// every read, so a steady slow upload is not cut but a stalled one is.
	t := c.srv.cfg.BodyTimeout
	c.setReadDeadline(now, now.Add(t), t)
	n, err := c.sock.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	return bodyReadErr(err)
}

// bodyReadErr maps a failed read in the middle of a request: the peer's EOF
// there is a truncated body, never a clean end.
func bodyReadErr(err error) error {
	if err == nil {
		return io.ErrNoProgress
	}
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readDirect reads body bytes straight into p, bypassing buf (which must be
// empty): large uploads are not copied twice.
func (c *conn) readDirect(p []byte) (int, error) {
	c.r, c.w = c.pin, c.pin
	now := time.Now()
	if err := c.lockedFlushAt(now); err != nil {
		return 0, err
	}
	// Body bytes: an idle limit of its own (--body-timeout), re-armed on
	// every read, so a steady slow upload is not cut but a stalled one is.
	t := c.srv.cfg.BodyTimeout
	c.setReadDeadline(now, now.Add(t), t)
	n, err := c.nc.Read(p)
	if n > 0 {
		return n, nil
	}
	return 0, bodyReadErr(err)
}

// flush writes the pending response bytes.
func (c *conn) flush() error {
	if len(c.out) == 0 {
		return c.werr
	}
	return c.flushAt(time.Now())
}

func (c *conn) flushAt(now time.Time) error {
	if len(c.out) == 0 || c.werr != nil {
		c.out = c.out[:0]
		return c.werr
	}
	c.setWriteDeadline(now)
	err := c.sock.Writev(c.out, nil)
	c.out = c.out[:0]
	if err != nil {
		c.werr = err
	}
	return err
}

// lockedFlushAt is flushAt for the body reader, which may run on another
// goroutine than the handler's writes.
func (c *conn) lockedFlushAt(now time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushAt(now)
}

// writeDirect sends p after the pending bytes without copying it.
func (c *conn) writeDirect(p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	c.setWriteDeadline(time.Now())
	var err error
	if len(c.out) > 0 {
		// One writev for the pending head and the body: one TCP push
		// instead of two.
		err = c.sock.Writev(c.out, p)
		c.out = c.out[:0]
	} else {
		err = c.sock.Writev(p, nil)
	}
	if err != nil {
		c.werr = err
		return err
	}
	return nil
}

func (c *conn) setWriteDeadline(now time.Time) {
	t := c.srv.cfg.WriteTimeout
	dl := now.Add(t)
	if !c.wdl.IsZero() && !dl.Before(c.wdl) && dl.Sub(c.wdl) < t/8 {
		return
	}
	c.wdl = dl
	_ = c.nc.SetWriteDeadline(dl)
}

// reject answers a request the engine refuses and marks the connection for
// closing. The handler never sees such a request.
func (c *conn) reject(e *protoError) {
	c.srv.log.Debug("h1: request rejected", "remote", c.remoteAddr, "status", e.status, "reason", e.msg)
	c.writeError(e.status, e.msg)
}

// writeError writes a short text/plain error response with Connection: close.
func (c *conn) writeError(status int, msg string) {
	c.closeAfter = true
	c.out = append(c.out, statusLine(status)...)
	c.out = appendDate(c.out, time.Now())
	c.out = append(c.out, "Server: krait\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	c.out = appendInt(c.out, int64(len(msg)+1))
	c.out = append(c.out, "\r\n\r\n"...)
	c.out = append(c.out, msg...)
	c.out = append(c.out, '\n')
	_ = c.flush()
}

// serveRequest runs the handler for the parsed head and completes the
// response and the request body afterwards.
func (c *conn) serveRequest() {
	c.pin = c.r
	c.body.reset(&c.hi, c.req.ProtoMinor)
	c.req.Body = c.body.reader()
	c.rw.reset(c.req.Method, &c.hi, c.req.ProtoMinor)
	if !c.hi.close && c.req.ProtoMinor == 0 && !c.hi.keepAlive {
		c.closeAfter = true
	}
	if c.hi.close {
		c.closeAfter = true
	}
	c.ctx.reset()
	if c.srv.closing.Load() {
		// Close ran before reset: it cancelled the previous request.
		c.ctx.cancel()
	}

	c.srv.h.Serve(&c.rw, &c.req)

	if c.hijacked {
		// The handler spoke another protocol on the connection, which
		// is closed now: nothing of HTTP is left to finish.
		c.rw.finished = true
		c.pin = 0
		c.req.Trailers = nil
		c.req.Body = nil
		return
	}
	c.stopGone()
	c.rw.finish()
	if !c.closeAfter && !c.body.done {
		c.drainBody()
	}
	c.body.closed = true
	c.pin = 0
	c.req.Trailers = nil
	c.req.Body = nil // drop references into the handler's world
}

// drainBody discards what the handler left of the request body so the next
// request can be read, or marks the connection for closing when that would
// cost too much.
func (c *conn) drainBody() {
	b := &c.body
	if b.err != nil || b.continuePending {
		// The client waits for 100 Continue it will never get (or the body
		// is broken): closing is the only clean end.
		c.closeAfter = true
		return
	}
	var total int64
	if b.kind == bodyLength {
		if b.remaining > discardLimit {
			c.closeAfter = true
			return
		}
		for b.remaining > 0 {
			if c.r == c.w {
				if err := c.fill(); err != nil {
					c.closeAfter = true
					return
				}
			}
			k := int64(c.w - c.r)
			if k > b.remaining {
				k = b.remaining
			}
			c.r += int(k)
			b.remaining -= k
		}
		b.done = true
		return
	}
	// A pooled buffer, not one per connection: draining chunked bodies
	// is rare and an idle connection should hold nothing.
	sp := readPool.Get().(*[]byte)
	defer readPool.Put(sp)
	for !b.done {
		n, err := b.Read(*sp)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil || total > discardLimit {
			c.closeAfter = true
			return
		}
	}
}

// goneWatch is the lazily started watcher behind Request.Watch: when it
// finds the client gone it cancels the request's context.
type goneWatch struct {
	mu       sync.Mutex
	want     bool // Watch was called for this request
	started  bool
	stopping bool
	eof      bool          // the client closed (or the connection failed)
	done     chan struct{} // closed when the watcher goroutine exits
	ahead    []byte        // bytes read by the watcher: the next request's start
}

// watchGone implements Request.Watch.
func (c *conn) watchGone() {
	g := &c.gone
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.want {
		g.want = true
		if c.body.done {
			c.startGoneLocked()
		}
	}
}

// bodyDone is called when the request body reached its end.
func (c *conn) bodyDone() {
	g := &c.gone
	g.mu.Lock()
	c.body.done = true
	if g.want && !g.started {
		c.startGoneLocked()
	}
	g.mu.Unlock()
}

func (c *conn) startGoneLocked() {
	g := &c.gone
	g.started = true
	g.done = make(chan struct{})
	c.rdl = time.Time{}
	_ = c.nc.SetReadDeadline(time.Time{})
	go c.watch(g.done)
}

// watch reads from the connection until it fails (the client is gone: the
// request's context is cancelled) or stopGone interrupts it. Bytes read
// are kept for the next request.
func (c *conn) watch(done chan struct{}) {
	defer close(done)
	g := &c.gone
	buf := make([]byte, 1024)
	for {
		n, err := c.nc.Read(buf)
		g.mu.Lock()
		g.ahead = append(g.ahead, buf[:n]...)
		if err != nil {
			if !g.stopping {
				g.eof = true
				c.ctx.cancel()
			}
			g.mu.Unlock()
			return
		}
		full := len(g.ahead) >= goneLimit
		g.mu.Unlock()
		if full {
			return // a client this busy is not gone; stop buffering for it
		}
	}
}

// stopGone ends the watcher of the request that just finished, keeps the
// bytes it read ahead, and resets the state for the next request.
func (c *conn) stopGone() {
	ahead, eof := c.takeGone()
	if eof {
		c.closeAfter = true
	}
	if len(ahead) > 0 {
		c.pin = 0
		if c.r == c.w {
			c.r, c.w = 0, 0
		}
		for len(c.buf)-c.w < len(ahead) {
			if perr := c.makeRoom(); perr != nil {
				c.closeAfter = true
				return
			}
		}
		c.w += copy(c.buf[c.w:], ahead)
	}
}

// takeGone ends the watcher of the current request, if any, and returns
// the bytes it read ahead and whether the client was gone.
func (c *conn) takeGone() (ahead []byte, eof bool) {
	g := &c.gone
	g.mu.Lock()
	if !g.want {
		g.mu.Unlock()
		return nil, false
	}
	started, done := g.started, g.done
	g.stopping = true
	g.mu.Unlock()
	if started {
		_ = c.nc.SetReadDeadline(time.Unix(1, 0)) // wakes the watcher's Read
		<-done
		c.rdl = time.Time{}
	}
	g.mu.Lock()
	ahead, eof = g.ahead, g.eof
	g.done, g.ahead = nil, nil
	g.want, g.started, g.stopping, g.eof = false, false, false, false
	g.mu.Unlock()
	return ahead, eof
}

// sendFileChunk bounds each sendfile call so the write deadline can be
// renewed between them.
const sendFileChunk = 4 << 20

// copyFile sends n bytes of f from offset straight to the socket; Go uses
// sendfile(2) for *os.File to TCP and unix connections.
func (c *conn) copyFile(f *os.File, offset, n int64) (int64, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, err
	}
	var sent int64
	for sent < n {
		k := min(n-sent, sendFileChunk)
		c.setWriteDeadline(time.Now())
		m, err := io.Copy(c.nc, &io.LimitedReader{R: f, N: k})
		sent += m
		if err != nil {
			c.werr = err
			return sent, err
		}
		if m < k {
			return sent, io.ErrUnexpectedEOF // file shorter than announced
		}
	}
	return sent, nil
}
