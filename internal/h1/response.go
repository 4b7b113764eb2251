package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// Errors the ResponseWriter returns to handlers.
var (
	ErrHeaderWritten   = errors.New("h1: response header already written")
	ErrBodyTooLong     = errors.New("h1: body longer than the declared Content-Length")
	ErrInvalidStatus   = errors.New("h1: invalid status code")
	ErrInvalidHeader   = errors.New("h1: invalid response header field")
	ErrUpgrade         = errors.New("h1: 101 Switching Protocols is not supported")
	ErrResponseDone    = errors.New("h1: response used after the handler returned")
	ErrBodyEnded       = errors.New("h1: body written after the trailers")
	ErrHijacked        = errors.New("h1: connection hijacked")
	ErrCannotHijack    = errors.New("h1: cannot hijack: a response header was written or the request body is unread")
	errBadContentLenHd = errors.New("h1: response Content-Length header does not match contentLength")
)

// response implements exchange.ResponseWriter for one request at a time.
type response struct {
	c          *conn
	headerDone bool  // final status line written
	status     int   // final status
	declared   int64 // Content-Length announced, -1 when unknown
	written    int64 // body bytes the handler wrote (counted even when not sent)
	chunked    bool
	noBody     bool // HEAD, 204, 304: count, never send
	isHead     bool
	aborted    bool
	finished   bool
	ended      bool // WriteTrailers wrote the final chunk
	minor      int
}

func (rw *response) reset(method []byte, hi *headInfo, minor int) {
	*rw = response{c: rw.c, minor: minor, declared: -1}
	rw.isHead = string(method) == "HEAD"
}

// statusLines caches "HTTP/1.1 NNN Reason\r\n" for the registered codes.
var statusLines [600][]byte

func init() {
	for code := 100; code < 600; code++ {
		if t := http.StatusText(code); t != "" {
			statusLines[code] = []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + t + "\r\n")
		}
	}
}

func statusLine(code int) []byte {
	if code >= 100 && code < 600 && statusLines[code] != nil {
		return statusLines[code]
	}
	return []byte("HTTP/1.1 " + strconv.Itoa(code) + " \r\n")
}

// The Date header value is formatted at most once per second, shared by all
// connections.
type dateCache struct {
	sec int64
	b   []byte // "Date: ...\r\n"
}

var curDate atomic.Pointer[dateCache]

func appendDate(dst []byte, now time.Time) []byte {
	sec := now.Unix()
	d := curDate.Load()
	if d == nil || d.sec != sec {
		b := make([]byte, 0, 37)
		b = append(b, "Date: "...)
		b = now.UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
		d = &dateCache{sec: sec, b: b}
		curDate.Store(d)
	}
	return append(dst, d.b...)
}

func appendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }

// WriteHeader implements exchange.ResponseWriter.
func (rw *response) WriteHeader(status int, reason []byte, headers []exchange.Header, contentLength int64) error {
	rw.c.wmu.Lock()
	defer rw.c.wmu.Unlock()
	return rw.writeHeader(status, reason, headers, contentLength)
}

func (rw *response) writeHeader(status int, reason []byte, headers []exchange.Header, contentLength int64) error {
	c := rw.c
	switch {
	case rw.finished:
		return ErrResponseDone
	case rw.headerDone:
		return ErrHeaderWritten
	case status < 100 || status > 999:
		return ErrInvalidStatus
	case status == 101:
		return ErrUpgrade
	}
	if !httpx.ValidFieldValue(reason) {
		return ErrInvalidHeader
	}
	var hasDate, hasServer bool
	lengthHdr := int64(-1)
	for i := range headers {
		h := &headers[i]
		if !httpx.ValidToken(h.Name) || !httpx.ValidFieldValue(h.Value) {
			return ErrInvalidHeader
		}
		switch len(h.Name) {
		case 4:
			hasDate = hasDate || httpx.EqualFold(h.Name, "date")
		case 6:
			hasServer = hasServer || httpx.EqualFold(h.Name, "server")
		case 10:
			if httpx.EqualFold(h.Name, "connection") {
				httpx.ForEachElement(h.Value, func(e []byte) {
					if httpx.EqualFold(e, "close") {
						c.closeAfter = true
					}
				})
			}
		case 14:
			if httpx.EqualFold(h.Name, "content-length") {
				n, ok := httpx.ParseContentLength(httpx.TrimOWS(h.Value))
				if !ok || lengthHdr >= 0 && n != lengthHdr {
					return errBadContentLenHd
				}
				lengthHdr = n
			}
		}
	}
	if lengthHdr >= 0 {
		if contentLength >= 0 && contentLength != lengthHdr {
			return errBadContentLenHd
		}
		contentLength = lengthHdr
	}

	if status < 200 {
		// Interim response (103 Early Hints, ...): never to HTTP/1.0
		// clients (RFC 9110 §15.2), flushed at once to be useful.
		if rw.minor == 0 {
			return nil
		}
		rw.appendStatus(status, reason)
		rw.appendFields(headers, true)
		c.out = append(c.out, "\r\n"...)
		return c.flush()
	}

	rw.headerDone = true
	rw.status = status
	rw.noBody = rw.isHead || status == 204 || status == 304
	bodyless := status == 204 || status == 304 // no framing headers at all
	rw.declared = contentLength

	// A client still owed 100 Continue has not sent its body: the
	// connection cannot be reused (RFC 9110 §10.1.1 allows closing).
	if c.body.continuePending || c.srv.shutting.Load() {
		c.closeAfter = true
	}
	if contentLength < 0 && !rw.noBody {
		if rw.minor == 1 {
			rw.chunked = true
		} else {
			c.closeAfter = true // HTTP/1.0: the body ends with the connection
		}
	}

	rw.appendStatus(status, reason)
	if !hasDate {
		c.out = appendDate(c.out, time.Now())
	}
	if !hasServer {
		c.out = append(c.out, "Server: krait\r\n"...)
	}
	rw.appendFields(headers, false)
	switch {
	case bodyless:
	case contentLength >= 0:
		if lengthHdr < 0 {
			c.out = append(c.out, "Content-Length: "...)
			c.out = appendInt(c.out, contentLength)
			c.out = append(c.out, "\r\n"...)
		}
	case rw.chunked:
		c.out = append(c.out, "Transfer-Encoding: chunked\r\n"...)
	}
	if c.closeAfter {
		c.out = append(c.out, "Connection: close\r\n\r\n"...)
	} else if rw.minor == 0 {
		c.out = append(c.out, "Connection: keep-alive\r\n\r\n"...)
	} else {
		c.out = append(c.out, "\r\n"...)
	}
	if len(c.out) >= writeBufSize {
		return c.flush()
	}
	return c.werr
}

func (rw *response) appendStatus(status int, reason []byte) {
	c := rw.c
	if len(reason) == 0 {
		c.out = append(c.out, statusLine(status)...)
		return
	}
	c.out = append(c.out, "HTTP/1.1 "...)
	c.out = appendInt(c.out, int64(status))
	c.out = append(c.out, ' ')
	c.out = append(c.out, reason...)
	c.out = append(c.out, "\r\n"...)
}

// appendFields writes the handler's fields, leaving out the hop-by-hop ones
// the engine manages itself.
func (rw *response) appendFields(headers []exchange.Header, interim bool) {
	c := rw.c
	for i := range headers {
		h := &headers[i]
		switch len(h.Name) {
		case 10:
			if httpx.EqualFold(h.Name, "connection") || httpx.EqualFold(h.Name, "keep-alive") {
				continue
			}
		case 17:
			if httpx.EqualFold(h.Name, "transfer-encoding") {
				continue
			}
		}
		c.out = append(c.out, h.Name...)
		c.out = append(c.out, ": "...)
		c.out = append(c.out, h.Value...)
		c.out = append(c.out, "\r\n"...)
	}
}

// Write implements exchange.ResponseWriter. Without a prior WriteHeader it
// sends 200 with an unknown length first.
func (rw *response) Write(p []byte) (int, error) {
	rw.c.wmu.Lock()
	defer rw.c.wmu.Unlock()
	return rw.write(p)
}

func (rw *response) write(p []byte) (int, error) {
	if rw.finished {
		return 0, ErrResponseDone
	}
	if rw.ended || rw.c.hijacked {
		return 0, ErrBodyEnded
	}
	if !rw.headerDone {
		if err := rw.writeHeader(200, nil, nil, -1); err != nil {
			return 0, err
		}
	}
	var err error
	if rw.declared >= 0 && rw.written+int64(len(p)) > rw.declared {
		p = p[:rw.declared-rw.written]
		err = ErrBodyTooLong
	}
	rw.written += int64(len(p))
	if rw.noBody || len(p) == 0 {
		return len(p), err
	}
	c := rw.c
	if c.werr != nil {
		return 0, c.werr
	}
	if rw.chunked {
		c.out = strconv.AppendInt(c.out, int64(len(p)), 16)
		c.out = append(c.out, "\r\n"...)
	}
	if len(c.out)+len(p) <= cap(c.out) {
		c.out = append(c.out, p...)
	} else if werr := c.writeDirect(p); werr != nil {
		return 0, werr
	}
	if rw.chunked {
		c.out = append(c.out, "\r\n"...)
	}
	return len(p), err
}

// SendFile implements exchange.ResponseWriter.
func (rw *response) SendFile(f *os.File, offset, count int64) (int64, error) {
	rw.c.wmu.Lock()
	defer rw.c.wmu.Unlock()
	return rw.sendFile(f, offset, count)
}

func (rw *response) sendFile(f *os.File, offset, count int64) (int64, error) {
	if rw.finished {
		return 0, ErrResponseDone
	}
	if rw.ended || rw.c.hijacked {
		return 0, ErrBodyEnded
	}
	if count < 0 {
		fi, err := f.Stat()
		if err != nil {
			return 0, err
		}
		count = max(fi.Size()-offset, 0)
	}
	if !rw.headerDone {
		if err := rw.writeHeader(200, nil, nil, -1); err != nil {
			return 0, err
		}
	}
	if rw.declared >= 0 && rw.written+count > rw.declared {
		return 0, ErrBodyTooLong
	}
	if rw.noBody || count == 0 {
		rw.written += count
		return count, nil
	}
	c := rw.c
	if c.werr != nil {
		return 0, c.werr
	}
	if rw.chunked {
		c.out = strconv.AppendInt(c.out, count, 16)
		c.out = append(c.out, "\r\n"...)
	}
	n, err := c.copyFile(f, offset, count)
	rw.written += n
	if err != nil {
		// The framing is broken now: the client must see an incomplete body.
		rw.aborted = true
		return n, err
	}
	if rw.chunked {
		c.out = append(c.out, "\r\n"...)
	}
	return n, nil
}

// Flush implements exchange.ResponseWriter.
func (rw *response) Flush() error {
	rw.c.wmu.Lock()
	defer rw.c.wmu.Unlock()
	if rw.finished {
		return ErrResponseDone
	}
	return rw.c.flush()
}

// Abort implements exchange.ResponseWriter.
func (rw *response) Abort() {
	rw.c.wmu.Lock()
	defer rw.c.wmu.Unlock()
	if !rw.finished {
		rw.aborted = true
	}
}

// finish completes the response after the handler returned.
func (rw *response) finish() {
	c := rw.c
	defer func() { rw.finished = true }()
	if !rw.headerDone {
		// Nothing of a response has gone out. A malformed body (bad
		// chunk framing, forbidden trailers, a trailer section over the
		// limits) is answered like a malformed head, also when the
		// handler gave up with Abort: a proxying handler that pumps the
		// body on another goroutine learns of the error only as a failed
		// stream, and Abort is all it can do. The error is read under
		// wmu, which fail sets it under, in case that goroutine is late.
		c.wmu.Lock()
		berr := c.body.err
		c.wmu.Unlock()
		var pe *protoError
		switch {
		case errors.As(berr, &pe):
			c.writeError(pe.status, pe.msg)
		case rw.aborted || berr != nil:
			_ = c.flush()       // interim responses, if any
			c.closeAfter = true // the client went away mid-body, or the handler gave up
		default:
			c.writeError(500, "internal server error")
		}
		return
	}
	if rw.aborted {
		_ = c.flush()
		c.closeAfter = true
		return
	}
	switch {
	case rw.ended:
	case rw.chunked:
		c.out = append(c.out, "0\r\n\r\n"...)
	case !rw.noBody && rw.declared >= 0 && rw.written < rw.declared:
		// Short body: only closing tells the client the response is cut.
		c.closeAfter = true
	}
}

// WriteTrailers implements exchange.TrailerWriter: on a chunked body it
// writes the last chunk followed by fields; otherwise it drops them.
func (rw *response) WriteTrailers(fields []exchange.Header) error {
	rw.c.wmu.Lock()
	defer rw.c.wmu.Unlock()
	switch {
	case rw.finished:
		return ErrResponseDone
	case rw.ended || rw.c.hijacked:
		return ErrBodyEnded
	case !rw.headerDone:
		if err := rw.writeHeader(200, nil, nil, -1); err != nil {
			return err
		}
	}
	for i := range fields {
		h := &fields[i]
		if !httpx.ValidToken(h.Name) || !httpx.ValidFieldValue(h.Value) {
			return ErrInvalidHeader
		}
	}
	if !rw.chunked {
		return nil
	}
	rw.ended = true
	c := rw.c
	c.out = append(c.out, "0\r\n"...)
	rw.appendFields(fields, true)
	c.out = append(c.out, "\r\n"...)
	if len(c.out) >= writeBufSize {
		return c.flush()
	}
	return c.werr
}

// Hijack implements exchange.Hijacker. The connection stays the engine's
// in one respect: it is tracked until the handler returns (Server.Shutdown
// waits for it, Server.Close closes it) and the engine closes it when the
// handler returns, so the handler must be done with it before then.
func (rw *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := rw.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case rw.finished:
		return nil, nil, ErrResponseDone
	case c.hijacked:
		return nil, nil, ErrHijacked
	case rw.headerDone || !c.body.done:
		return nil, nil, ErrCannotHijack
	}
	ahead, _ := c.takeGone()
	if err := c.flush(); err != nil {
		return nil, nil, err
	}
	c.hijacked = true
	c.closeAfter = true
	c.rdl, c.wdl = time.Time{}, time.Time{}
	_ = c.nc.SetDeadline(time.Time{})
	pending := make([]byte, 0, c.w-c.r+len(ahead))
	pending = append(append(pending, c.buf[c.r:c.w]...), ahead...)
	c.r = c.w
	var src io.Reader = c.nc
	if len(pending) > 0 {
		src = io.MultiReader(bytes.NewReader(pending), c.nc)
	}
	br := bufio.NewReaderSize(src, max(4096, len(pending)))
	if len(pending) > 0 {
		// Make the bytes already received count as buffered, as
		// net/http's Hijack does: callers read them via Buffered/Peek.
		_, _ = br.Peek(len(pending))
	}
	return c.nc, bufio.NewReadWriter(br, bufio.NewWriterSize(c.nc, 4096)), nil
}
