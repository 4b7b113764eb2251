package dispatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
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

var forbiddenBody = []byte("403 Forbidden\n")

// checkHandshake validates a WebSocket opening handshake (RFC 6455
// §4.2.1) before the app sees it: the app only ever accepts handshakes
// the WebSocket library can complete. status is 0 when it is valid, else
// the status to answer with and why.
func checkHandshake(r *exchange.Request) (status int, msg string) {
	switch {
	case string(r.Method) != "GET" || r.ProtoMajor != 1 || r.ProtoMinor < 1:
		return 400, "invalid WebSocket handshake: not an HTTP/1.1 GET request"
	case !hasToken(r.Headers, "Connection", "upgrade"):
		return 400, "invalid WebSocket handshake: Connection does not contain Upgrade"
	}
	var version, key []byte
	for i := range r.Headers {
		h := &r.Headers[i]
		switch {
		case equalFold(h.Name, "Sec-WebSocket-Version"):
			version = h.Value
		case equalFold(h.Name, "Sec-WebSocket-Key"):
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

// nextFrame splits the first raw frame off b (frames from Stream.Recv,
// already validated by the worker's reader).
func nextFrame(b []byte) (h wire.Header, p, rest []byte) {
	h, _ = wire.ParseHeader(b)
	end := wire.HeaderSize + int(h.Length)
	return h, b[wire.HeaderSize:end], b[end:]
}

// serveWebSocket runs a WebSocket handshake request whose REQUEST (scope
// type "websocket") was sent on s: it waits for the app's answer, then
// either completes the handshake and bridges messages both ways, or sends
// the app's refusal (403 for a close, or its denial response).
func (d *Dispatcher) serveWebSocket(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, st *state) {
	var gone <-chan struct{}
	if r.Gone != nil {
		gone = r.Gone()
	}
	b, err := s.Recv(gone)
	switch {
	case errors.Is(err, worker.ErrClientGone):
		d.log.Debug("the WebSocket client went away before the app accepted")
		d.wsDrain(s, closeAbnormal, "")
		w.Abort()
		return
	case err == io.EOF:
		w.Abort()
		return
	case err != nil:
		d.log.Warn("the worker died during a WebSocket handshake", "err", err)
		writeError(w, 502, errorHeaders, badGwBody)
		return
	}
	h, p, rest := nextFrame(b)
	switch h.Type {
	case wire.Response, wire.EarlyHint:
		// websocket.http.response.start: the denial response extension.
		d.relay(w, r, s, st, true, b)
	case wire.WSClose:
		// websocket.close before websocket.accept.
		writeError(w, 403, errorHeaders, forbiddenBody)
	case wire.WSAccept:
		d.acceptWebSocket(w, r, s, st, p, rest)
	case wire.Reset:
		d.log.Debug("the worker reset a WebSocket stream before accepting", "reason", string(p))
		writeError(w, 500, errorHeaders, internalBody)
	default:
		d.log.Error("unexpected frame from the application before WebSocket accept", "frame", h.Type.String())
		s.Reset()
		writeError(w, 500, errorHeaders, internalBody)
	}
}

// parseAccept decodes a WS_ACCEPT payload: (subprotocol str|None, headers).
func (d *Dispatcher) parseAccept(st *state, p []byte) (sub []byte, hasSub bool, hdrs []exchange.Header, err error) {
	dec := &st.dec
	dec.Reset(p)
	if _, n, err := dec.Seq(); err != nil || n != 2 {
		if err == nil {
			err = fmt.Errorf("%w: WS_ACCEPT is a sequence of %d items, want 2", wire.ErrProtocol, n)
		}
		return nil, false, nil, err
	}
	k, err := dec.Peek()
	if err != nil {
		return nil, false, nil, err
	}
	if k == wire.KindNone {
		if err := dec.Skip(); err != nil {
			return nil, false, nil, err
		}
	} else {
		if _, sub, err = dec.Str(); err != nil {
			return nil, false, nil, err
		}
		hasSub = true
	}
	// The rest is the field list.
	hdrs, err = d.parseFieldList(st, dec.Rest(), "websocket.accept headers")
	return sub, hasSub, hdrs, err
}

// acceptWebSocket completes the handshake the app accepted and bridges the
// connection. p is the WS_ACCEPT payload, rest the frames after it.
func (d *Dispatcher) acceptWebSocket(w exchange.ResponseWriter, r *exchange.Request, s *worker.Stream, st *state, p, rest []byte) {
	sub, hasSub, extra, err := d.parseAccept(st, p)
	if err != nil {
		if errors.Is(err, wire.ErrProtocol) {
			d.log.Error("undecodable WS_ACCEPT, killing the worker", "pid", s.Worker().Pid(), "err", err)
			s.Worker().Kill()
			writeError(w, 502, errorHeaders, badGwBody)
			return
		}
		d.log.Error("invalid websocket.accept from the application", "err", err)
		s.Reset()
		writeError(w, 500, errorHeaders, internalBody)
		return
	}
	// Through the wrapper chain (access log): a type assertion on w would
	// miss the engine's Hijacker.
	if !exchange.CanHijack(w) {
		d.log.Error("this connection cannot be upgraded to a WebSocket")
		d.wsDrain(s, closeAbnormal, "")
		writeError(w, 501, errorHeaders, []byte("501 Not Implemented: WebSocket over this protocol\n"))
		return
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
	if d.cfg.WSPerMessageDeflate {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	if hasSub {
		opts.Subprotocols = []string{string(sub)}
	}
	c, err := websocket.Accept(uw, hreq, opts)
	if err != nil {
		d.log.Debug("completing the WebSocket handshake failed", "err", err)
		if !uw.hijacked {
			status := uw.status
			if status < 400 {
				status = 500
			}
			writeError(w, status, errorHeaders, uw.body.Bytes())
		}
		d.wsDrain(s, closeAbnormal, "")
		return
	}
	c.SetReadLimit(d.cfg.WSMaxSize)
	d.wsSession(c, s, rest)
}

// upgradeWriter is the http.ResponseWriter the WebSocket library
// completes the handshake on: it collects the 101 header and writes it on
// the hijacked connection, or collects an error response for the engine.
type upgradeWriter struct {
	hdr      http.Header
	w        exchange.ResponseWriter // hijacked with exchange.Hijack
	status   int
	body     bytes.Buffer
	hijacked bool
}

var (
	_ http.ResponseWriter = (*upgradeWriter)(nil)
	_ http.Hijacker       = (*upgradeWriter)(nil)
)

func (u *upgradeWriter) Header() http.Header { return u.hdr }

func (u *upgradeWriter) WriteHeader(status int) {
	if u.status == 0 {
		u.status = status
	}
}

func (u *upgradeWriter) Write(p []byte) (int, error) {
	if u.status == 0 {
		u.status = 200
	}
	return u.body.Write(p)
}

var errNotUpgrading = errors.New("hijack without a 101 response")

// Hijack takes the connection over from the engine and writes the 101
// response collected so far.
func (u *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if u.status != http.StatusSwitchingProtocols {
		return nil, nil, errNotUpgrading
	}
	nc, brw, err := exchange.Hijack(u.w)
	if err != nil {
		return nil, nil, fmt.Errorf("hijacking the connection: %w", err)
	}
	u.hijacked = true
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	if err := u.hdr.Write(brw); err != nil {
		return nil, nil, fmt.Errorf("writing the 101 response: %w", err)
	}
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return nil, nil, fmt.Errorf("writing the 101 response: %w", err)
	}
	return nc, brw, nil
}

// appendClose appends a K → W WS_CLOSE frame.
func appendClose(b []byte, id uint32, code int, reason string) []byte {
	b, off := wire.BeginFrame(b)
	b = wire.AppendTupleStart(b, 2)
	b = wire.AppendInt(b, int64(code))
	b = wire.AppendUTF8Str(b, reason)
	_ = wire.FinishFrame(b, off, wire.WSClose, 0, id)
	return b
}

// parseClose decodes a WS_CLOSE payload (code, reason).
func parseClose(p []byte) (code int, reason string, err error) {
	dec := wire.NewDecoder(p)
	if _, n, err := dec.Seq(); err != nil || n != 2 {
		if err == nil {
			err = fmt.Errorf("%w: WS_CLOSE is a sequence of %d items, want 2", wire.ErrProtocol, n)
		}
		return 0, "", err
	}
	c, err := dec.Int()
	if err != nil {
		return 0, "", err
	}
	k, err := dec.Peek()
	if err != nil {
		return 0, "", err
	}
	if k == wire.KindNone {
		err = dec.Skip()
	} else {
		var r []byte
		_, r, err = dec.Str()
		reason = string(r)
	}
	return int(c), reason, err
}

// sendClose tells the worker the client closed (or the connection
// dropped), unless the worker already ended the stream.
func (d *Dispatcher) sendClose(s *worker.Stream, code int, reason string) {
	if s.Ended() {
		return
	}
	if err := s.Send(appendClose(nil, s.ID(), code, reason)); err != nil {
		d.log.Debug("sending WS_CLOSE failed", "err", err)
	}
}

// wsDrain tells the worker the connection is gone and waits for it to end
// the stream, returning credit for what it still sends.
func (d *Dispatcher) wsDrain(s *worker.Stream, code int, reason string) {
	d.sendClose(s, code, reason)
	for {
		b, err := s.Recv(nil)
		if err != nil {
			return
		}
		credit := 0
		for len(b) > 0 {
			var h wire.Header
			h, _, b = nextFrame(b)
			if h.Type == wire.Data || h.Type == wire.WSMessage {
				credit += int(h.Length)
			}
		}
		_ = s.Credit(credit)
	}
}

// wsFailed is set by the reader when it fails the connection for a client
// protocol violation the library does not close itself (invalid UTF-8,
// an unmasked frame): the close code the client must get, whatever close
// code the app answers with.
type wsFailed struct {
	mu     sync.Mutex
	code   int // 0: not failed
	reason string
}

func (f *wsFailed) set(code int, reason string) {
	f.mu.Lock()
	f.code, f.reason = code, reason
	f.mu.Unlock()
}

func (f *wsFailed) get() (code int, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.code, f.reason
}

// wsSession bridges an accepted WebSocket connection and its stream until
// the stream ends. first holds frames that arrived with WS_ACCEPT.
func (d *Dispatcher) wsSession(c *websocket.Conn, s *worker.Stream, first []byte) {
	if !d.trackWS(c) {
		_ = c.Close(closeRestart, "server shutting down")
		d.wsDrain(s, closeRestart, "server shutting down")
		return
	}
	defer d.untrackWS(c)
	ctx, cancel := context.WithCancel(context.Background())
	var failed wsFailed
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.wsReadLoop(ctx, c, s, &failed)
	}()
	if d.cfg.WSPingInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.wsPingLoop(ctx, c)
		}()
	}
	defer func() {
		cancel()
		_ = c.CloseNow()
		wg.Wait()
	}()

	// A message the worker sends in several pieces (FlagMore) is collected
	// here and written as one frame: the client gets exactly one frame per
	// message, as from uvicorn, never a fragment plus an empty final one.
	// Collected pieces are credited at once (the worker's window may be
	// smaller than the message); the memory is the app's own message size.
	var msg []byte
	var msgType websocket.MessageType
	collecting := false
	clientGone := false
	b := first
	for {
		if len(b) == 0 {
			var err error
			b, err = s.Recv(nil)
			if err == io.EOF {
				return // we reset the stream
			}
			if err != nil {
				d.log.Warn("the worker died during a WebSocket session", "err", err)
				_ = c.Close(closeInternalErr, "")
				return
			}
		}
		credit := 0
		ended := false
		for len(b) > 0 && !ended {
			var h wire.Header
			var p []byte
			h, p, b = nextFrame(b)
			switch h.Type {
			case wire.WSMessage:
				credit += len(p)
				if clientGone {
					continue
				}
				if !collecting {
					msgType = websocket.MessageText
					if h.Binary() {
						msgType = websocket.MessageBinary
					}
				}
				if h.More() {
					msg = append(msg, p...)
					collecting = true
					continue
				}
				data := p
				if collecting {
					msg = append(msg, p...)
					data = msg
				}
				// Conn.Write sends one frame (one compressed frame with
				// permessage-deflate); p aliases the receive buffer, valid
				// until the next Recv.
				err := c.Write(ctx, msgType, data)
				collecting = false
				if cap(msg) > wsKeepBuf {
					msg = nil // do not pin a large message's memory to an idle connection
				} else {
					msg = msg[:0]
				}
				if err != nil {
					// The reader sees the connection fail and tells the
					// worker; messages until the worker's close are dropped.
					d.log.Debug("writing a WebSocket message failed", "err", err)
					clientGone = true
				}
			case wire.WSClose:
				ended = true
				code, reason, err := parseClose(p)
				if err != nil {
					d.log.Error("undecodable WS_CLOSE, killing the worker", "pid", s.Worker().Pid(), "err", err)
					s.Worker().Kill()
					code, reason = closeInternalErr, ""
				}
				if !h.End() {
					d.log.Error("WS_CLOSE from the worker without END_STREAM", "stream", s.ID())
				}
				if fc, fr := failed.get(); fc != 0 {
					// The reader failed the connection: the client gets
					// that code, not the app's answer to it.
					code, reason = fc, fr
				}
				d.wsClose(c, code, reason)
			case wire.Reset:
				ended = true
				d.log.Debug("the worker reset a WebSocket stream", "reason", string(p))
				_ = c.Close(closeInternalErr, "")
			default:
				ended = true
				d.log.Error("unexpected frame from the application in a WebSocket session", "frame", h.Type.String())
				_ = c.Close(closeInternalErr, "")
			}
		}
		if ended {
			return
		}
		if err := s.Credit(credit); err != nil {
			d.log.Debug("returning window credit failed", "err", err)
		}
	}
}

// wsKeepBuf is the largest reassembly buffer a session keeps between
// messages.
const wsKeepBuf = 64 << 10

// wsClose sends the app's close frame, making an invalid code or an
// overlong reason valid rather than failing the close.
func (d *Dispatcher) wsClose(c *websocket.Conn, code int, reason string) {
	if !validCloseCode(code) {
		d.log.Error("the application closed a WebSocket with an invalid code; sent 1000", "code", code)
		code = closeNormal
	}
	if len(reason) > 123 {
		cut := 123
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	_ = c.Close(websocket.StatusCode(code), reason)
}

// validCloseCode reports whether code may be sent in a close frame.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// wsReadLoop forwards the client's messages to the worker, in pieces of
// at most one buffer within the stream's send window, until the client
// closes or the connection fails; it then sends WS_CLOSE with the code.
//
// Text messages are checked to be UTF-8 on the way, piece by piece (a code
// point may straddle two pieces): a piece with invalid UTF-8 is not
// forwarded, so the worker only ever gets the valid start of a message it
// never sees complete, and the connection fails with 1007 (RFC 6455 §8.1).
// Nothing a client sends reaches the worker in a form that breaks the
// protocol between them.
func (d *Dispatcher) wsReadLoop(ctx context.Context, c *websocket.Conn, s *worker.Stream, failed *wsFailed) {
	buf := bodyPool.Get().(*bodyBuf)
	defer bodyPool.Put(buf)
	id := s.ID()
	var text utf8Checker
	for {
		typ, rd, err := c.Reader(ctx)
		if err != nil {
			d.clientClosed(c, s, err, failed)
			return
		}
		var flags uint8
		if typ == websocket.MessageBinary {
			flags = wire.FlagBinary
		}
		text.reset()
		for {
			n, err := io.ReadFull(rd, buf[wire.HeaderSize:])
			last := err == io.EOF || err == io.ErrUnexpectedEOF
			if err != nil && !last {
				d.clientClosed(c, s, err, failed)
				return
			}
			if typ == websocket.MessageText && !text.check(buf[wire.HeaderSize:wire.HeaderSize+n], last) {
				d.failClient(c, s, failed, closeInvalidData, "invalid UTF-8 in a text message")
				return
			}
			start := wire.HeaderSize
			for {
				m := 0
				if n > 0 {
					if m, err = s.AcquireSendWindow(n); err != nil {
						return // the worker ended the stream or died
					}
				}
				fl := flags
				if !last || m < n {
					fl |= wire.FlagMore
				}
				wire.PutHeader(buf[start-wire.HeaderSize:], m, wire.WSMessage, fl, id)
				if err := s.Send(buf[start-wire.HeaderSize : start+m]); err != nil {
					return
				}
				start += m
				n -= m
				if n == 0 {
					break
				}
			}
			if last {
				break
			}
		}
	}
}

// errUnmaskedText is how github.com/coder/websocket (v1.8.15) reports an
// unmasked client frame: a plain error, with nothing sent to the client.
// It has no error value or type for it, so its text is matched.
const errUnmaskedText = "received unmasked frame from client"

// clientClosed maps the error that ended the client side to a close code
// for the worker: the client's own code, 1009 for an oversized message,
// 1006 when the connection dropped. An unmasked client frame, which the
// library reports without closing, fails the connection with 1002.
func (d *Dispatcher) clientClosed(c *websocket.Conn, s *worker.Stream, err error, failed *wsFailed) {
	code, reason := closeAbnormal, ""
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		code, reason = int(ce.Code), ce.Reason
	case errors.Is(err, websocket.ErrMessageTooBig):
		code = closeTooBig
	case strings.Contains(err.Error(), errUnmaskedText):
		d.failClient(c, s, failed, closeProtocolErr, "unmasked client frame")
		return
	case d.stoppingWS():
		// Shutdown closed this session with 1012; when the client's echo
		// of the close loses the race with the connection closing, the
		// read fails without a code, but the cause is still the restart.
		code, reason = closeRestart, "server shutting down"
	}
	d.log.Debug("the WebSocket client side ended", "code", code, "err", err)
	d.sendClose(s, code, reason)
}

// failClient fails the connection for a client protocol violation: the
// worker gets WS_CLOSE with code, then the client a close frame with code
// (Close waits a few seconds for the client's echo, reading and dropping
// anything else). failed makes the session send code even when the app
// answers the WS_CLOSE with another one first.
func (d *Dispatcher) failClient(c *websocket.Conn, s *worker.Stream, failed *wsFailed, code int, reason string) {
	d.log.Debug("failing a WebSocket connection", "code", code, "reason", reason)
	failed.set(code, reason)
	d.sendClose(s, code, reason)
	_ = c.Close(websocket.StatusCode(code), reason)
}

// utf8Checker validates a text message given in pieces: up to
// utf8.UTFMax-1 bytes of a code point cut by a piece boundary are carried
// to the next piece.
type utf8Checker struct {
	carry [utf8.UTFMax]byte
	n     int
}

func (u *utf8Checker) reset() { u.n = 0 }

// check reports whether p, following the pieces checked since reset, is
// still valid UTF-8; last says p ends the message (nothing may be carried).
func (u *utf8Checker) check(p []byte, last bool) bool {
	if u.n > 0 {
		// Complete the carried code point with the first bytes of p.
		for u.n < utf8.UTFMax && len(p) > 0 && !utf8.FullRune(u.carry[:u.n]) {
			u.carry[u.n] = p[0]
			u.n++
			p = p[1:]
		}
		if !utf8.FullRune(u.carry[:u.n]) {
			return !last // p ran out: still incomplete
		}
		if !utf8.Valid(u.carry[:u.n]) {
			return false
		}
		u.n = 0
	}
	cut := len(p)
	if !last {
		// Hold back an incomplete code point at the end of p.
		for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
			if utf8.RuneStart(p[i]) {
				if !utf8.FullRune(p[i:]) {
					cut = i
				}
				break
			}
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	u.n = copy(u.carry[:], p[cut:])
	return true
}

// wsPingLoop pings the client every WSPingInterval and drops the
// connection when a pong does not come within WSPingTimeout.
func (d *Dispatcher) wsPingLoop(ctx context.Context, c *websocket.Conn) {
	t := time.NewTicker(d.cfg.WSPingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, d.cfg.WSPingTimeout)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				d.log.Debug("WebSocket ping failed, dropping the connection", "err", err)
			}
			_ = c.CloseNow()
			return
		}
	}
}

func (d *Dispatcher) trackWS(c *websocket.Conn) bool {
	d.wsMu.Lock()
	defer d.wsMu.Unlock()
	if d.wsStopping {
		return false
	}
	if d.wsConns == nil {
		d.wsConns = map[*websocket.Conn]struct{}{}
	}
	d.wsConns[c] = struct{}{}
	return true
}

func (d *Dispatcher) stoppingWS() bool {
	d.wsMu.Lock()
	defer d.wsMu.Unlock()
	return d.wsStopping
}

func (d *Dispatcher) untrackWS(c *websocket.Conn) {
	d.wsMu.Lock()
	delete(d.wsConns, c)
	d.wsMu.Unlock()
}

// Shutdown starts closing every WebSocket session with code 1012 (service
// restart), as uvicorn does, and makes sessions accepted from now on close
// at once: the apps see websocket.disconnect and end, so the workers can
// finish their graceful stop. Call it when a graceful stop begins; it does
// not wait. HTTP requests are not affected.
func (d *Dispatcher) Shutdown() {
	d.wsMu.Lock()
	defer d.wsMu.Unlock()
	d.wsStopping = true
	for c := range d.wsConns {
		go func() { _ = c.Close(closeRestart, "server shutting down") }()
	}
}
