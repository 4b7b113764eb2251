package h1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/exchange"
)

// Config tunes a Server. Its limits and timeouts are krait's HTTP settings
// (config.HTTP), passed whole; their defaults are declared once, in
// config.Default. A zero field takes that default (until every caller
// passes a complete config.HTTP).
type Config struct {
	// HTTP holds the limits and timeouts. LimitRequestLine is the longest
	// request line, without its CRLF (414 beyond); LimitRequestFields the
	// most header fields, trailers alike (431 beyond);
	// LimitRequestFieldSize the longest header line with its CRLF,
	// gunicorn's measure (431 beyond). MaxHeaderBytes caps a whole head
	// or trailer section, raised to hold a request line and one field at
	// their limits (431 beyond); KeepAlive is how long a keep-alive
	// connection may wait for its next request's first byte (and a new
	// one for its first; then it is closed silently); HeaderTimeout is
	// how long a client has to send a whole head once its first byte
	// arrived (408 beyond); BodyTimeout the inactivity limit while reading
	// a body; WriteTimeout bounds each write. MaxHeadMemory sizes the budget New
	// makes when HeadBudget is nil.
	config.HTTP
	// HeadBudget bounds the read-buffer memory all connections together
	// hold beyond their first 4 KiB, which only heads (and trailer
	// sections) larger than that need: a connection whose head needs more
	// while it is spent gets 503 and is closed. Idle connections hold no
	// read buffer at all. Servers given the same budget share it; nil
	// gives the Server its own, of MaxHeadMemory bytes.
	HeadBudget *HeadBudget
	// ConnLimit bounds the open connections of every Server sharing it
	// (nil: no bound). At the bound a Server stops accepting until a
	// connection closes: new clients wait in the kernel's listen backlog
	// instead of being refused.
	ConnLimit *ConnLimit
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
	budget *HeadBudget
	opt    parseOptions

	shutting atomic.Bool   // Shutdown or Close called: finish what is in flight, take nothing new
	stop     chan struct{} // closed with the listeners: ends a wait for a ConnLimit slot
	stopOnce sync.Once
	closing  atomic.Bool // Close called (or Shutdown's context ended)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
}

// fillDefaults sets every zero field of h from config.Default.
func fillDefaults(h *config.HTTP) {
	def := config.Default().HTTP
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&h.LimitRequestLine, def.LimitRequestLine)
	set(&h.LimitRequestFields, def.LimitRequestFields)
	set(&h.LimitRequestFieldSize, def.LimitRequestFieldSize)
	set(&h.MaxHeaderBytes, def.MaxHeaderBytes)
	setD(&h.KeepAlive, def.KeepAlive)
	setD(&h.HeaderTimeout, def.HeaderTimeout)
	setD(&h.WriteTimeout, def.WriteTimeout)
	setD(&h.BodyTimeout, h.HeaderTimeout)
	if h.MaxHeadMemory <= 0 {
		h.MaxHeadMemory = def.MaxHeadMemory
	}
}

// New returns a Server that passes requests to h.
func New(h exchange.Handler, cfg Config) *Server {
	fillDefaults(&cfg.HTTP)
	// A request line and one field at their limits always fit.
	cfg.MaxHeaderBytes = max(cfg.MaxHeaderBytes, cfg.LimitRequestLine+2+cfg.LimitRequestFieldSize+2)
	if cfg.HeadBudget == nil {
		cfg.HeadBudget = NewHeadBudget(cfg.MaxHeadMemory)
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
			reqLine:   cfg.LimitRequestLine,
			fields:    cfg.LimitRequestFields,
			fieldSize: cfg.LimitRequestFieldSize,
			head:      cfg.MaxHeaderBytes,
		},
		log:       cfg.Log,
		budget:    cfg.HeadBudget,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		stop:      make(chan struct{}),
	}
	s.trlLim = limits{reqLine: maxChunkLine, fields: cfg.LimitRequestFields, fieldSize: cfg.LimitRequestFieldSize, head: cfg.MaxHeaderBytes}
	// A head, plus (while its handler runs) a trailer section behind it.
	s.maxBuf = 2*cfg.MaxHeaderBytes + 2*readBufSize
	return s
}

// HeadMemory returns the read-buffer bytes connections hold beyond their
// first 4 KiB, the figure the head budget bounds (summed over every
// Server sharing it).
func (s *Server) HeadMemory() int64 { return s.budget.InUse() }

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
	lim := s.cfg.ConnLimit
	for {
		// At the connection bound, stop accepting until one closes.
		if lim != nil {
			select {
			case lim.sem <- struct{}{}:
			case <-s.stop:
				return nil
			}
		}
		nc, err := l.Accept()
		if err != nil {
			lim.release()
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
			lim.release()
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
	s.cfg.ConnLimit.release()
}

// ConnLimit bounds the connections open at once over every Server that
// shares it (Config.ConnLimit). It is safe for concurrent use.
type ConnLimit struct {
	sem chan struct{} // one token per open connection
}

// NewConnLimit returns a bound of n connections (n > 0).
func NewConnLimit(n int) *ConnLimit {
	if n <= 0 {
		panic("h1: NewConnLimit: the bound must be positive")
	}
	return &ConnLimit{sem: make(chan struct{}, n)}
}

// Open returns the number of connections holding a slot now.
func (l *ConnLimit) Open() int { return len(l.sem) }

func (l *ConnLimit) release() {
	if l != nil {
		<-l.sem
	}
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

// Close closes the listeners and every connection now and cancels the
// context of every request in flight; handlers still running see their
// writes fail.
func (s *Server) Close() error {
	s.shutting.Store(true)
	// Before the contexts are cancelled: a connection starting a request
	// after this sees closing and cancels its own (see serveRequest).
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.ctx.cancel()
		_ = c.nc.Close()
	}
	return nil
}

func (s *Server) closeListeners() {
	s.stopOnce.Do(func() { close(s.stop) })
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
