package h1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

// Defaults for the memory limits of Config.
const (
	// DefaultMaxHeaderBytes caps a request head (request line, fields and
	// CRLFs): nginx's large_client_header_buffers (4 × 8 KiB) holds the
	// same. Go's net/http allows 1 MiB, which is what let 1,000 clients
	// hold a gigabyte with unfinished heads.
	DefaultMaxHeaderBytes = 32 << 10
	// DefaultMaxHeadMemory is the default budget for read-buffer memory
	// beyond each connection's first 4 KiB, summed over all connections.
	DefaultMaxHeadMemory = 64 << 20
)

// Config tunes a Server. The zero value is usable: every zero field takes
// the default given in its comment.
type Config struct {
	// MaxRequestLine is the longest request line accepted, in bytes without
	// the CRLF; 0 means 4094 (gunicorn's default). Longer lines get 414.
	MaxRequestLine int
	// MaxHeaderFields is the most header fields a request may have; 0 means
	// 100. More get 431. Trailer sections have the same limit.
	MaxHeaderFields int
	// MaxHeaderFieldSize is the longest header line, in bytes including its
	// CRLF (gunicorn's measure); 0 means 8190. Longer lines get 431.
	MaxHeaderFieldSize int
	// MaxHeaderBytes caps a whole request head, request line and CRLFs
	// included, and a trailer section likewise; 0 means
	// DefaultMaxHeaderBytes, or enough for a request line and one field
	// at their limits if that is more. Larger heads get 431.
	MaxHeaderBytes int
	// MaxHeadMemory is the most read-buffer memory, in bytes, all
	// connections together may hold beyond the first 4 KiB each, which
	// only heads (and trailer sections) larger than that need; 0 means
	// DefaultMaxHeadMemory. A connection whose head needs more while the
	// budget is spent gets 503 and is closed. Idle connections hold no
	// read buffer at all.
	MaxHeadMemory int64
	// HeaderTimeout is how long a client has to send a whole request head
	// once its first byte has arrived; 0 means 10s. A late head gets 408.
	// It is also the inactivity limit while reading a request body.
	HeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for the first
	// byte of its next request (and a new connection for its first); 0 means
	// 5s. The connection is then closed silently.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client; 0 means 60s.
	WriteTimeout time.Duration
	// Scheme is reported in Request.Scheme: "http" (the default) or "https".
	Scheme string
	// Log receives connection-level errors; nil means slog.Default().
	Log *slog.Logger
}

// Server serves HTTP/1.x on any number of listeners with one handler.
type Server struct {
	h      exchange.Handler
	cfg    Config
	lim    limits
	trlLim limits
	maxBuf int // cap on the read buffer's growth
	log    *slog.Logger
	// headMem is the read-buffer memory connections hold beyond
	// readBufSize each, against cfg.MaxHeadMemory; headPeak is its
	// highest value since the last reclaim, which reclaiming guards.
	headMem    atomic.Int64
	headPeak   atomic.Int64
	reclaiming atomic.Bool
	warnedAt   atomic.Int64 // unix nanoseconds of the last budget warning
	opt        parseOptions

	shutting atomic.Bool // Shutdown or Close called: finish what is in flight, take nothing new
	closing  atomic.Bool // Close called (or Shutdown's context ended)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
}

// New returns a Server that passes requests to h.
func New(h exchange.Handler, cfg Config) *Server {
	if cfg.MaxRequestLine <= 0 {
		cfg.MaxRequestLine = 4094
	}
	if cfg.MaxHeaderFields <= 0 {
		cfg.MaxHeaderFields = 100
	}
	if cfg.MaxHeaderFieldSize <= 0 {
		cfg.MaxHeaderFieldSize = 8190
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = max(DefaultMaxHeaderBytes, cfg.MaxRequestLine+2+cfg.MaxHeaderFieldSize+2)
	}
	if cfg.MaxHeadMemory <= 0 {
		cfg.MaxHeadMemory = DefaultMaxHeadMemory
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 60 * time.Second
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "http"
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	s := &Server{
		h:   h,
		cfg: cfg,
		lim: limits{
			reqLine:   cfg.MaxRequestLine,
			fields:    cfg.MaxHeaderFields,
			fieldSize: cfg.MaxHeaderFieldSize,
			head:      cfg.MaxHeaderBytes,
		},
		log:       cfg.Log,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
	}
	s.trlLim = limits{reqLine: maxChunkLine, fields: cfg.MaxHeaderFields, fieldSize: cfg.MaxHeaderFieldSize, head: cfg.MaxHeaderBytes}
	// A head, plus (while its handler runs) a trailer section behind it.
	s.maxBuf = 2*cfg.MaxHeaderBytes + 2*readBufSize
	return s
}

// reserveHeadMem takes n bytes from the head-memory budget; false when
// that would exceed it.
func (s *Server) reserveHeadMem(n int) bool {
	for {
		cur := s.headMem.Load()
		if cur+int64(n) > s.cfg.MaxHeadMemory {
			return false
		}
		if s.headMem.CompareAndSwap(cur, cur+int64(n)) {
			for p := s.headPeak.Load(); cur+int64(n) > p && !s.headPeak.CompareAndSwap(p, cur+int64(n)); p = s.headPeak.Load() {
			}
			return true
		}
	}
}

// warnHeadMem logs that the head-memory budget refused a connection, at
// most every 10 seconds: under attack it would otherwise flood the log.
func (s *Server) warnHeadMem(remote string) {
	now := time.Now().UnixNano()
	last := s.warnedAt.Load()
	if now-last < int64(10*time.Second) || !s.warnedAt.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("h1: request-head memory budget spent; refusing large request heads with 503",
		"remote", remote, "budget", s.cfg.MaxHeadMemory)
}

// After a burst of large heads (reclaimHigh bytes or more at once) has
// drained below reclaimLow, the memory is handed back to the operating
// system: the Go runtime alone would keep it resident for minutes (until
// a forced GC, then a slow scavenge), since an idle server allocates
// nothing that would trigger a collection.
const (
	reclaimHigh  = 16 << 20
	reclaimLow   = 4 << 20
	reclaimDelay = time.Second // lets the rest of a burst's connections close first
)

// releaseHeadMem gives n bytes back to the head-memory budget.
func (s *Server) releaseHeadMem(n int) {
	left := s.headMem.Add(-int64(n))
	if left < reclaimLow && s.headPeak.Load() >= reclaimHigh && s.reclaiming.CompareAndSwap(false, true) {
		time.AfterFunc(reclaimDelay, s.reclaim)
	}
}

// reclaim collects the garbage a burst of large heads left and returns
// free memory to the operating system.
func (s *Server) reclaim() {
	s.headPeak.Store(s.headMem.Load())
	debug.FreeOSMemory()
	s.log.Debug("h1: returned large request-head buffers to the operating system")
	s.reclaiming.Store(false)
}

// HeadMemory returns the read-buffer bytes connections hold beyond their
// first 4 KiB, the figure Config.MaxHeadMemory bounds.
func (s *Server) HeadMemory() int64 { return s.headMem.Load() }

// Serve accepts connections on l and serves each on its own goroutine until
// Shutdown or Close; it then returns nil. Other accept errors are returned
// (after closing l). Serve may be called for several listeners at once.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait and retry
				// rather than spin or give up (net/http does the same).
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Error("h1: accept failed; retrying", "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			_ = l.Close()
			return fmt.Errorf("h1: accept: %w", err)
		}
		backoff = 0
		c := newConn(s, nc)
		if !s.track(c) {
			_ = nc.Close()
			c.release()
			return nil
		}
		go c.serve()
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE, ...).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// ActiveConns returns the number of open client connections.
func (s *Server) ActiveConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops the server gracefully: it closes the listeners, closes
// connections waiting for a request at once, lets requests in flight finish
// (their responses carry "Connection: close") and returns nil once every
// connection is closed. When ctx ends first it closes everything and returns
// ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.closeListeners()
	wait := time.Millisecond
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			_ = s.Close()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// Close closes the listeners and every connection now; handlers still
// running see their writes fail.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.nc.Close()
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for l := range s.listeners {
		_ = l.Close() // Serve sees the error and returns nil
	}
}

// closeIdle closes the connections waiting for a request and returns how
// many connections remain open.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			_ = c.nc.Close()
		}
	}
	return len(s.conns)
}
