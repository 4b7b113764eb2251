package exchange

import (
	"bufio"
	"net"
	"os"
)

// Recorder is the wrapper the access log and the metrics share: it passes
// everything through to the writer it wraps and remembers the final status
// and the number of body bytes. It follows the wrapper convention: Unwrap
// exposes the writer it wraps, and it implements Hijacker and
// TrailerWriter only to observe them, forwarding with Hijack and
// WriteTrailers on Unwrap(), so wrapping never hides what the engine can
// do. A Recorder is not safe for concurrent use (one per exchange, reused
// from a pool: Reset before each).
type Recorder struct {
	ResponseWriter
	// Status is the final status sent: 0 until one is, 101 after a
	// successful Hijack, 200 when trailers were the first thing written.
	Status int
	// Bytes counts the body bytes Write and SendFile passed on.
	Bytes int64
}

var (
	_ ResponseWriter = (*Recorder)(nil)
	_ Unwrapper      = (*Recorder)(nil)
	_ Hijacker       = (*Recorder)(nil)
	_ TrailerWriter  = (*Recorder)(nil)
)

// Reset makes r record a new exchange written to w; Reset(nil) drops the
// reference before r goes back to a pool.
func (r *Recorder) Reset(w ResponseWriter) { r.ResponseWriter, r.Status, r.Bytes = w, 0, 0 }

// Unwrap implements Unwrapper.
func (r *Recorder) Unwrap() ResponseWriter { return r.ResponseWriter }

// Hijack records a successful hijack as 101: the handler writes the
// Switching Protocols response itself on the hijacked connection, so
// WriteHeader never sees it. What goes over the connection afterwards is
// not a response body and is not counted.
func (r *Recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := Hijack(r.ResponseWriter)
	if err == nil {
		r.Status = 101
	}
	return nc, brw, err
}

// WriteTrailers forwards the trailers; when they are the first thing
// written, the engine sends an implicit 200 header first.
func (r *Recorder) WriteTrailers(fields []Header) error {
	err := WriteTrailers(r.ResponseWriter, fields)
	if r.Status == 0 && err == nil {
		r.Status = 200
	}
	return err
}

// WriteHeader records final statuses (and 101), not 1xx interim ones.
func (r *Recorder) WriteHeader(status int, reason []byte, headers []Header, contentLength int64) error {
	if status >= 200 || status == 101 {
		r.Status = status
	}
	return r.ResponseWriter.WriteHeader(status, reason, headers, contentLength)
}

func (r *Recorder) Write(p []byte) (int, error) {
	n, err := r.ResponseWriter.Write(p)
	r.Bytes += int64(n)
	return n, err
}

func (r *Recorder) SendFile(f *os.File, offset, count int64) (int64, error) {
	n, err := r.ResponseWriter.SendFile(f, offset, count)
	r.Bytes += n
	return n, err
}
