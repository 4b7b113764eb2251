package accesslog

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

// Logger writes access log lines to an io.Writer, one Write call per line so
// concurrent lines never interleave.
type Logger struct {
	mu  sync.Mutex
	out io.Writer
	buf []byte

	now      func() time.Time
	stampSec int64  // the second stamp was formatted for
	stamp    []byte // "[24/Nov/2026:15:04:05 +0000]"
}

// New returns a Logger writing to out.
func New(out io.Writer) *Logger {
	return &Logger{out: out, now: time.Now}
}

// Wrap returns a handler that serves with h and then logs the request.
func (l *Logger) Wrap(h exchange.Handler) exchange.Handler {
	return &handler{log: l, next: h}
}

type handler struct {
	log  *Logger
	next exchange.Handler
}

// recorderPool holds the exchange.Recorders that see each response's
// final status and body bytes (the %>s and %b of the line).
var recorderPool = sync.Pool{New: func() any { return new(exchange.Recorder) }}

func (h *handler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	rec := recorderPool.Get().(*exchange.Recorder)
	rec.Reset(w)
	h.next.Serve(rec, r)
	h.log.write(r, rec.Status, rec.Bytes)
	rec.Reset(nil)
	recorderPool.Put(rec)
}

func (l *Logger) write(r *exchange.Request, status int, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buf[:0]
	if r.RemoteAddr != "" {
		b = append(b, r.RemoteAddr...)
	} else {
		b = append(b, '-')
	}
	b = append(b, " - - "...)
	b = append(b, l.timestamp()...)
	b = append(b, " \""...)
	b = appendEscaped(b, r.Method)
	b = append(b, ' ')
	b = appendEscaped(b, r.Target)
	b = append(b, " HTTP/"...)
	b = strconv.AppendInt(b, int64(r.ProtoMajor), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(r.ProtoMinor), 10)
	b = append(b, "\" "...)
	if status == 0 {
		// The handler never answered (the client went away first); nginx
		// logs such requests as 499.
		status = 499
	}
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if n == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, n, 10)
	}
	b = append(b, " \""...)
	b = appendHeader(b, r.Headers, "referer")
	b = append(b, "\" \""...)
	b = appendHeader(b, r.Headers, "user-agent")
	b = append(b, "\" \""...)
	b = appendHeader(b, r.Headers, "x-request-id")
	b = append(b, "\"\n"...)
	l.buf = b
	_, _ = l.out.Write(b) // a failing access log must not fail requests
}

// timestamp returns the bracketed time, formatted at most once per second.
func (l *Logger) timestamp() []byte {
	now := l.now()
	if sec := now.Unix(); sec != l.stampSec || l.stamp == nil {
		l.stampSec = sec
		l.stamp = now.AppendFormat(append(l.stamp[:0], '['), "02/Jan/2006:15:04:05 -0700")
		l.stamp = append(l.stamp, ']')
	}
	return l.stamp
}

func appendHeader(b []byte, hs []exchange.Header, lowerName string) []byte {
	for _, h := range hs {
		if len(h.Name) == len(lowerName) && bytes.EqualFold(h.Name, []byte(lowerName)) {
			return appendEscaped(b, h.Value)
		}
	}
	return append(b, '-')
}

const hexDigits = "0123456789ABCDEF"

// appendEscaped copies s, writing quotes, backslashes and non-printable
// bytes as \xHH the way nginx does, so a client cannot forge log lines.
func appendEscaped(b, s []byte) []byte {
	for _, c := range s {
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			b = append(b, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}
