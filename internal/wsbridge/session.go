package wsbridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/coder/websocket"

	"github.com/krait-server/krait/internal/codec"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
)

// sendClose tells the worker the client closed (or the connection
// dropped), unless the worker already ended the stream.
func (br *Bridge) sendClose(s *worker.Stream, code int, reason string) {
	if s.Ended() {
		return
	}
	if err := s.Send(codec.AppendClose(nil, s.ID(), code, reason)); err != nil {
		br.log.Debug("sending WS_CLOSE failed", "err", err)
	}
}

// drain tells the worker the connection is gone and waits for it to end
// the stream, returning credit for what it still sends. The wait takes no
// request context: it runs when the client (or the server) is already
// gone, and the worker, told to close, ends the stream itself (or is
// killed at the graceful timeout).
func (br *Bridge) drain(s *worker.Stream, code int, reason string) {
	br.sendClose(s, code, reason)
	for {
		b, err := s.Recv(context.Background())
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
// the stream ends, or the request's context rctx ends (the server stopped
// hard). first holds frames that arrived with WS_ACCEPT.
func (br *Bridge) session(rctx context.Context, c *websocket.Conn, s *worker.Stream, first []byte) {
	if !br.track(c) {
		_ = c.Close(closeRestart, "server shutting down")
		br.drain(s, closeRestart, "server shutting down")
		return
	}
	defer br.untrack(c)
	ctx, cancel := context.WithCancel(rctx)
	// The library's reads and writes get a context that never ends: with a
	// cancellable one it arms and disarms a context.AfterFunc on every
	// frame read and written (a few µs a message, in profiles). The
	// session's ctx closes the connection once instead, which ends any
	// read or write in progress as that per-call hook would have.
	stopClose := context.AfterFunc(ctx, func() { _ = c.CloseNow() })
	var failed wsFailed
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		br.readLoop(ctx, c, s, &failed)
	}()
	if br.cfg.PingInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br.pingLoop(ctx, c)
		}()
	}
	defer func() {
		cancel()
		stopClose()
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
	// Credit for the worker's messages is returned in batches of
	// creditBatch bytes, not per message: one WINDOW frame (and one write
	// on the worker socket) saved per message. The worker is never stalled
	// by it: it waits only with a whole window outstanding, and what we
	// hold back is always less than creditBatch, so the rest of that window
	// is still on its way and pushes owed over the mark when it arrives.
	owed := 0
	b := first
	for {
		if len(b) == 0 {
			var err error
			b, err = s.Recv(ctx)
			if err == io.EOF {
				return // we reset the stream
			}
			if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				br.log.Debug("the server stopped during a WebSocket session")
				return // the caller resets the stream
			}
			if err != nil {
				br.log.Warn("the worker died during a WebSocket session", "err", err)
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
				err := c.Write(noCancel, msgType, data)
				collecting = false
				if cap(msg) > wsKeepBuf {
					msg = nil // do not pin a large message's memory to an idle connection
				} else {
					msg = msg[:0]
				}
				if err != nil {
					// The reader sees the connection fail and tells the
					// worker; messages until the worker's close are dropped.
					br.log.Debug("writing a WebSocket message failed", "err", err)
					clientGone = true
				}
			case wire.WSClose:
				ended = true
				code, reason, err := codec.ParseClose(p)
				if err != nil {
					s.ProtocolError(fmt.Errorf("undecodable WS_CLOSE: %w", err))
					code, reason = closeInternalErr, ""
				}
				if !h.End() {
					br.log.Error("WS_CLOSE from the worker without END_STREAM", "stream", s.ID())
				}
				if fc, fr := failed.get(); fc != 0 {
					// The reader failed the connection: the client gets
					// that code, not the app's answer to it.
					code, reason = fc, fr
				}
				br.closeWith(c, code, reason)
			case wire.Reset:
				ended = true
				br.log.Debug("the worker reset a WebSocket stream", "reason", string(p))
				_ = c.Close(closeInternalErr, "")
			default:
				ended = true
				br.log.Error("unexpected frame from the application in a WebSocket session", "frame", h.Type.String())
				_ = c.Close(closeInternalErr, "")
			}
		}
		if ended {
			return
		}
		if owed += credit; owed >= creditBatch {
			if err := s.Credit(owed); err != nil {
				br.log.Debug("returning window credit failed", "err", err)
			}
			owed = 0
		}
	}
}

// creditBatch is how many bytes of the worker's WS_MESSAGE payload a
// session consumes before it returns them as credit, in one WINDOW frame
// (docs/protocol.md, ASGI, "WebSocket"). At most the window: beyond it
// the worker would wait for credit that never comes.
const creditBatch = wire.InitialWindow / 2

// noCancel is the context of the library's reads and writes: it never
// ends, so they arm no per-call cancellation hook; session closes the
// connection when its own context ends.
var noCancel = context.Background()

// wsKeepBuf is the largest reassembly buffer a session keeps between
// messages.
const wsKeepBuf = 64 << 10

// closeWith sends the app's close frame, making an invalid code or an
// overlong reason valid rather than failing the close.
func (br *Bridge) closeWith(c *websocket.Conn, code int, reason string) {
	if !codec.ValidCloseCode(code) {
		br.log.Error("the application closed a WebSocket with an invalid code; sent 1000", "code", code)
		code = closeNormal
	}
	_ = c.Close(websocket.StatusCode(code), codec.CloseReason(reason))
}

// readLoop forwards the client's messages to the worker, in pieces of
// at most one buffer within the stream's send window, until the client
// closes or the connection fails; it then sends WS_CLOSE with the code.
//
// Text messages are checked to be UTF-8 on the way, piece by piece (a code
// point may straddle two pieces): a piece with invalid UTF-8 is not
// forwarded, so the worker only ever gets the valid start of a message it
// never sees complete, and the connection fails with 1007 (RFC 6455 §8.1).
// Nothing a client sends reaches the worker in a form that breaks the
// protocol between them.
func (br *Bridge) readLoop(ctx context.Context, c *websocket.Conn, s *worker.Stream, failed *wsFailed) {
	buf := bufPool.Get().(*msgBuf)
	defer bufPool.Put(buf)
	id := s.ID()
	var text utf8Checker
	for {
		typ, rd, err := c.Reader(noCancel)
		if err != nil {
			br.clientClosed(c, s, err, failed)
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
				br.clientClosed(c, s, err, failed)
				return
			}
			if typ == websocket.MessageText && !text.check(buf[wire.HeaderSize:wire.HeaderSize+n], last) {
				br.failClient(c, s, failed, closeInvalidData, "invalid UTF-8 in a text message")
				return
			}
			start := wire.HeaderSize
			for {
				m := 0
				if n > 0 {
					if m, err = s.AcquireSendWindow(ctx, n); err != nil {
						return // the worker ended the stream or died, or the session ended
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
func (br *Bridge) clientClosed(c *websocket.Conn, s *worker.Stream, err error, failed *wsFailed) {
	code, reason := closeAbnormal, ""
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		code, reason = int(ce.Code), ce.Reason
	case errors.Is(err, websocket.ErrMessageTooBig):
		code = closeTooBig
	case strings.Contains(err.Error(), errUnmaskedText):
		br.failClient(c, s, failed, closeProtocolErr, "unmasked client frame")
		return
	case br.isStopping():
		// Shutdown closed this session with 1012; when the client's echo
		// of the close loses the race with the connection closing, the
		// read fails without a code, but the cause is still the restart.
		code, reason = closeRestart, "server shutting down"
	}
	br.log.Debug("the WebSocket client side ended", "code", code, "err", err)
	br.sendClose(s, code, reason)
}

// failClient fails the connection for a client protocol violation: the
// worker gets WS_CLOSE with code, then the client a close frame with code
// (Close waits a few seconds for the client's echo, reading and dropping
// anything else). failed makes the session send code even when the app
// answers the WS_CLOSE with another one first.
func (br *Bridge) failClient(c *websocket.Conn, s *worker.Stream, failed *wsFailed, code int, reason string) {
	br.log.Debug("failing a WebSocket connection", "code", code, "reason", reason)
	failed.set(code, reason)
	br.sendClose(s, code, reason)
	_ = c.Close(websocket.StatusCode(code), reason)
}
