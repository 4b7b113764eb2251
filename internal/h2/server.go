package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"golang.org/x/net/http2"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxConcurrentStreams = 100
	DefaultMaxHeaderBytes       = 64 << 10
)

// Config configures a Server. The zero value serves cleartext HTTP/1.1 only.
type Config struct {
	// TLS, when set, makes the listener a TLS one (HTTP/1.1 and HTTP/2 by
	// ALPN). It must provide certificates (Certificates or
	// GetCertificate); it is cloned, and "h2" and "http/1.1" are added to
	// its NextProtos.
	TLS *tls.Config
	// DisableHTTP2 turns HTTP/2 off on a TLS listener (ALPN offers
	// http/1.1 only).
	DisableHTTP2 bool
	// Cleartext enables HTTP/2 with prior knowledge (h2c) on a cleartext
	// listener, beside HTTP/1.1.
	Cleartext bool
	// MaxConcurrentStreams caps the open streams of one HTTP/2 connection
	// (0 = DefaultMaxConcurrentStreams).
	MaxConcurrentStreams int
	// MaxHeaderBytes caps a request head (0 = DefaultMaxHeaderBytes).
	MaxHeaderBytes int
	// HeaderTimeout bounds reading a request head; IdleTimeout is how long
	// an idle connection is kept open (0 = no limit).
	HeaderTimeout, IdleTimeout time.Duration
	// HSTS, when > 0, sends Strict-Transport-Security: max-age=HSTS (in
	// whole seconds) on every response over TLS.
	HSTS time.Duration
	Log  *slog.Logger
}

// Server is the net/http-based engine for one listener.
type Server struct {
	h    exchange.Handler
	srv  *http.Server
	tls  bool
	hsts string
	log  *slog.Logger
}

// New builds an engine that serves h.
func New(h exchange.Handler, cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxConcurrentStreams <= 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	s := &Server{h: h, tls: cfg.TLS != nil, log: cfg.Log}
	if cfg.HSTS > 0 && cfg.TLS != nil {
		s.hsts = "max-age=" + strconv.FormatInt(int64(cfg.HSTS/time.Second), 10)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	if cfg.TLS != nil {
		protos.SetHTTP2(!cfg.DisableHTTP2)
	} else {
		protos.SetUnencryptedHTTP2(cfg.Cleartext)
	}
	s.srv = &http.Server{
		Handler:           s,
		TLSConfig:         cfg.TLS.Clone(),
		Protocols:         &protos,
		ReadHeaderTimeout: cfg.HeaderTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		// TLS handshake failures and the like are the client's problem:
		// debug level, or a scanner would flood the error log.
		ErrorLog: slog.NewLogLogger(cfg.Log.Handler(), slog.LevelDebug),
	}
	if protos.HTTP2() || protos.UnencryptedHTTP2() {
		// golang.org/x/net/http2 behind the frame filter (filter.go)
		// rather than net/http's bundled copy, which cannot be filtered.
		h2s := &http2.Server{
			MaxConcurrentStreams: uint32(cfg.MaxConcurrentStreams),
			// RFC 9113's default frame size rather than Go's 1 MiB: a
			// HEADERS frame larger than 16 KiB is then the
			// FRAME_SIZE_ERROR peers (and h2spec 4.2/3) expect.
			MaxReadFrameSize: maxFilteredFrame,
			IdleTimeout:      cfg.IdleTimeout,
		}
		if err := configureHTTP2(s.srv, h2s); err != nil {
			// A TLS config without the ciphers HTTP/2 requires.
			return nil, fmt.Errorf("h2: %w", err)
		}
	}
	return s, nil
}

// Serve serves l until Shutdown or Close, and then returns nil.
func (s *Server) Serve(l net.Listener) error {
	var err error
	if s.tls {
		err = s.srv.ServeTLS(l, "", "")
	} else {
		err = s.srv.Serve(l)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("h2: %w", err)
	}
	return nil
}

// Shutdown stops accepting, closes idle connections (HTTP/2 ones get
// GOAWAY), waits for requests in flight and returns nil, or closes
// everything and returns ctx.Err() when ctx ends first.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("h2: shutdown: %w", err)
	}
	return nil
}

// Close closes the listener and every connection now.
func (s *Server) Close() error {
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("h2: close: %w", err)
	}
	return nil
}

// Redirect is an engine for a plain listener that sends every request to
// https: 301 for GET and HEAD, 308 (method and body kept) otherwise.
type Redirect struct {
	srv *http.Server
}

// NewRedirect builds a redirecting engine; httpsPort is the port of the
// TLS listener ("443" or "" leaves it out of the Location).
func NewRedirect(httpsPort string, headerTimeout, idleTimeout time.Duration, log *slog.Logger) *Redirect {
	if log == nil {
		log = slog.Default()
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "" {
			http.Error(w, "400 Bad Request: no Host\n", http.StatusBadRequest)
			return
		}
		if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
			host = "[" + host + "]"
		}
		if httpsPort != "" && httpsPort != "443" {
			host += ":" + httpsPort
		}
		code := http.StatusPermanentRedirect
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			code = http.StatusMovedPermanently
		}
		uri := r.RequestURI
		if uri == "" || uri[0] != '/' {
			uri = r.URL.RequestURI() // absolute-form: keep path and query only
		}
		w.Header().Set("Location", "https://"+host+uri)
		w.Header().Set("Content-Length", "0")
		w.Header().Set("Connection", "close") // the client moves to https
		w.WriteHeader(code)
	})
	return &Redirect{srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: headerTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    DefaultMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}}
}

// Serve serves l until Shutdown or Close, and then returns nil.
func (r *Redirect) Serve(l net.Listener) error {
	if err := r.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("h2: redirect: %w", err)
	}
	return nil
}

// Shutdown stops the redirect listener gracefully.
func (r *Redirect) Shutdown(ctx context.Context) error {
	if err := r.srv.Shutdown(ctx); err != nil {
		_ = r.srv.Close()
		return fmt.Errorf("h2: redirect shutdown: %w", err)
	}
	return nil
}

// Close closes the redirect listener and its connections now.
func (r *Redirect) Close() error {
	if err := r.srv.Close(); err != nil {
		return fmt.Errorf("h2: redirect close: %w", err)
	}
	return nil
}
