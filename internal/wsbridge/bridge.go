package wsbridge

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/krait-server/krait/internal/codec"
	"github.com/krait-server/krait/internal/errpage"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
)

// Config tunes the Bridge.
type Config struct {
	// MaxSize is the largest WebSocket message a client may send, in
	// bytes; a larger one closes the connection with code 1009
	// (0 = DefaultMaxSize).
	MaxSize int64
	// PingInterval is how often krait pings an idle WebSocket client
	// (0 = never).
	PingInterval time.Duration
	// PingTimeout is how long a ping may wait for its pong before the
	// connection is dropped (0 = DefaultPingTimeout).
	PingTimeout time.Duration
	// PerMessageDeflate enables the permessage-deflate extension when the
	// client offers it (without context takeover, so an idle connection
	// holds no compressor state).
	PerMessageDeflate bool
	// Log receives protocol problems and app errors (nil = slog.Default()).
	Log *slog.Logger
}

// Defaults for the settings of Config whose zero value means "default"
// (the command line's own defaults are declared in internal/config).
const (
	DefaultMaxSize     = 16 << 20
	DefaultPingTimeout = 20 * time.Second
)

// WebSocket close codes krait uses itself (RFC 6455 §7.4.1).
const (
	closeNormal      = 1000
	closeProtocolErr = 1002
	closeAbnormal    = 1006 // never on the wire: the connection dropped
	closeInvalidData = 1007 // a text message that is not UTF-8 (RFC 6455 §8.1)
	closeTooBig      = 1009
	closeInternalErr = 1011
	closeRestart     = 1012 // service restart: sent to clients on shutdown
)

// Bridge completes WebSocket handshakes an ASGI app accepted and bridges
// the sessions to their worker streams; it tracks the live sessions so
// Shutdown can close them.
type Bridge struct {
	cfg Config
	log *slog.Logger

	mu       sync.Mutex
	conns    map[*websocket.Conn]struct{} // live sessions
	stopping bool
}

// New returns a Bridge.
func New(cfg Config) *Bridge {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = DefaultMaxSize
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = DefaultPingTimeout
	}
	return &Bridge{cfg: cfg, log: cfg.Log}
}

// IsUpgrade reports whether r asks for a WebSocket ("Upgrade: websocket").
func IsUpgrade(r *exchange.Request) bool {
	return httpx.HasToken(r.Headers, "Upgrade", "websocket")
}

var (
	hdrText        = exchange.Header{Name: []byte("Content-Type"), Value: []byte("text/plain; charset=utf-8")}
	errorHeaders   = []exchange.Header{hdrText}
	upgradeHeaders = []exchange.Header{hdrText, {Name: []byte("Sec-WebSocket-Version"), Value: []byte("13")}}
)

// CheckHandshake validates a WebSocket opening handshake (RFC 6455
// §4.2.1) before the app sees it: the app only ever accepts handshakes
// the WebSocket library can complete. status is 0 when it is valid, else
// the status to answer with and why.
func CheckHandshake(r *exchange.Request) (status int, msg string) {
	switch {
	case string(r.Method) != "GET" || r.ProtoMajor != 1 || r.ProtoMinor < 1:
		return 400, "invalid WebSocket handshake: not an HTTP/1.1 GET request"
	case !httpx.HasToken(r.Headers, "Connection", "upgrade"):
		return 400, "invalid WebSocket handshake: Connection does not contain Upgrade"
	}
	var version, key []byte
	for i := range r.Headers {
		h := &r.Headers[i]
		switch {
		case httpx.EqualFold(h.Name, "Sec-WebSocket-Version"):
			version = h.Value
		case httpx.EqualFold(h.Name, "Sec-WebSocket-Key"):
			key = h.Value
		}
	}
	if string(version) != "13" {
		return 426, "unsupported WebSocket version: krait speaks version 13"
	}
	if k, err := base64.StdEncoding.DecodeString(string(key)); err != nil || len(k) != 16 {
		return 400, "invalid WebSocket handshake: bad Sec-WebSocket-Key"
	}
	return 0, ""
}

// Refuse answers a handshake CheckHandshake refused (a 426 names the
// version krait speaks).
func Refuse(w exchange.ResponseWriter, status int, msg string) {
	hdrs := errorHeaders
	if status == 426 {
		hdrs = upgradeHeaders
	}
	httpx.WriteError(w, status, hdrs, []byte(msg+"\n"))
}

// nextFrame splits the first raw frame off b (frames from Stream.Recv,
// already validated by the worker's reader).
func nextFrame(b []byte) (h wire.Header, p, rest []byte) {
	h, _ = wire.ParseHeader(b)
	end := wire.HeaderSize + int(h.Length)
	return h, b[wire.HeaderSize:end], b[end:]
}

// Serve runs a WebSocket handshake request whose REQUEST (scope type
// "websocket") was sent on s: it waits for the app's answer, then either
// completes the handshake and bridges messages both ways until the stream
// ends, or sends the app's refusal (403 for a close). Two answers are the
// caller's to write: a denial response (RESPONSE or EARLY_HINT first),
// returned as deny, the frames received, to relay as plain HTTP; and a
// WS_ACCEPT that does not decode (an error wrapping wire.ErrProtocol) or is
// invalid (codec.ErrApp), returned as err, nothing written yet. The caller
// closes s.
func (br *Bridge) Serve(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream) (deny []byte, err error) {
	// Watched from the start: an app may take its time to accept, and a
	// handshake is rare enough that the watcher's cost does not matter.
	ctx := r.Context()
	if r.Watch != nil {
		r.Watch()
	}
	b, rerr := s.Recv(ctx)
	switch {
	case rerr != nil && ctx.Err() != nil && errors.Is(rerr, ctx.Err()):
		br.log.Debug("the WebSocket client went away (or the server stopped) before the app accepted")
		br.drain(s, closeAbnormal, "")
		w.Abort()
		return nil, nil
	case rerr == io.EOF:
		w.Abort()
		return nil, nil
	case rerr != nil:
		br.log.Warn("the worker died during a WebSocket handshake", "err", rerr)
		errpage.Write(w, r, 502)
		return nil, nil
	}
	h, p, rest := nextFrame(b)
	switch h.Type {
	case wire.Response, wire.EarlyHint:
		// websocket.http.response.start: the denial response extension.
		return b, nil
	case wire.WSClose:
		// websocket.close before websocket.accept.
		errpage.Write(w, r, 403)
	case wire.WSAccept:
		return nil, br.accept(w, r, s, p, rest)
	case wire.Reset:
		br.log.Debug("the worker reset a WebSocket stream before accepting", "reason", string(p))
		errpage.Write(w, r, 500)
	default:
		br.log.Error("unexpected frame from the application before WebSocket accept", "frame", h.Type.String())
		s.Reset()
		errpage.Write(w, r, 500)
	}
	return nil, nil
}

// accept completes the handshake the app accepted and bridges the
// connection. p is the WS_ACCEPT payload, rest the frames after it. An
// undecodable or invalid WS_ACCEPT is returned unanswered.
func (br *Bridge) accept(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, p, rest []byte) error {
	var ps codec.Parser
	sub, hasSub, extra, dropped, err := ps.Accept(p)
	if err != nil {
		return fmt.Errorf("WS_ACCEPT: %w", err)
	}
	for _, name := range dropped {
		br.log.Error("the application set a field it may not set here; dropped", "field", string(name), "in", "websocket.accept headers")
	}
	// Through the wrapper chain (access log): a type assertion on w would
	// miss the engine's Hijacker.
	if !exchange.CanHijack(w) {
		br.log.Error("this connection cannot be upgraded to a WebSocket")
		br.drain(s, closeAbnormal, "")
		httpx.WriteError(w, 501, errorHeaders, []byte("501 Not Implemented: WebSocket over this protocol\n"))
		return nil
	}
	hreq := &http.Request{Method: "GET", ProtoMajor: 1, ProtoMinor: 1, Proto: "HTTP/1.1",
		Header: make(http.Header, len(r.Headers)), Host: string(r.Host)}
	for _, h := range r.Headers {
		hreq.Header.Add(string(h.Name), string(h.Value))
	}
	uw := &upgradeWriter{hdr: make(http.Header, len(extra)+4), w: w}
	for _, h := range extra {
		uw.hdr.Add(string(h.Name), string(h.Value))
	}
	opts := &websocket.AcceptOptions{
		// Origin checks are the app's business, as with uvicorn: it sees
		// the Origin header in the scope and may refuse.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	}
	if br.cfg.PerMessageDeflate {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	if hasSub {
		opts.Subprotocols = []string{string(sub)}
	}
	c, err := websocket.Accept(uw, hreq, opts)
	if err != nil {
		br.log.Debug("completing the WebSocket handshake failed", "err", err)
		if !uw.hijacked {
			status := uw.status
			if status < 400 {
				status = 500
			}
			httpx.WriteError(w, status, errorHeaders, uw.body.Bytes())
		}
		br.drain(s, closeAbnormal, "")
		return nil
	}
	c.SetReadLimit(br.cfg.MaxSize)
	br.session(r.Context(), c, s, rest)
	return nil
}

// bufSize is the largest piece of a client message sent to the worker in
// one WS_MESSAGE frame.
const bufSize = 64 << 10

// msgBuf is a reader's buffer: room for a frame header before the piece.
type msgBuf [wire.HeaderSize + bufSize]byte

var bufPool = sync.Pool{New: func() any { return new(msgBuf) }}
