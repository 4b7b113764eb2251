package exchange

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
)

// Header is one header field. Name and Value are the bytes as they appear on
// the wire (Value without leading/trailing whitespace). In a Request they may
// point into the engine's read buffer: valid only until Handler.Serve returns.
type Header struct {
	Name  []byte
	Value []byte
}

// Request is the engine-neutral view of one HTTP request.
//
// All byte slices may alias the engine's buffers and are valid only until
// Handler.Serve returns; a handler that needs them longer must copy them.
type Request struct {
	Method []byte // e.g. "GET"
	Target []byte // the raw request-target exactly as received ("/a%20b?x=1")
	Path   []byte // the part of Target before '?', still percent-encoded
	Query  []byte // the part of Target after the first '?', raw; nil/empty when none

	ProtoMajor int // 1
	ProtoMinor int // 0 or 1

	// Headers holds every header field in the order received, names as sent
	// (case preserved). Repeated fields appear repeatedly.
	Headers []Header

	// Host is the Host header value (or the authority of an absolute-form
	// target); empty when absent.
	Host []byte

	// ContentLength is the declared body length, or -1 when the body length
	// is not known in advance (chunked transfer coding). 0 means no body.
	ContentLength int64

	// Body yields the request body, decoded from any transfer coding, and
	// io.EOF at its end. Never nil (an empty reader when there is no body).
	// The first Read sends "100 Continue" when the client asked for it.
	Body io.Reader

	// Trailers holds chunked-body trailer fields; filled once Body returned io.EOF.
	Trailers []Header

	Scheme     string // "http" or "https"
	RemoteAddr string // client IP ("" for a unix socket peer)
	RemotePort int    // client port (0 for a unix socket peer)
	LocalAddr  string // the IP the connection was accepted on ("" for unix sockets)
	LocalPort  int    // the port the connection was accepted on (0 for unix sockets)

	// Ctx is the request's context, set by the engine; read it with
	// Context. See Context for when it is cancelled.
	Ctx context.Context

	// Watch asks the engine to watch the client connection for the rest
	// of the request: once the client is known gone, Context is
	// cancelled. The engine watches only when asked (the watcher costs a
	// goroutine and a read), so handlers that never need early disconnect
	// detection pay nothing for it. Calling it before the body has been
	// read to EOF is allowed; the engine watches after the body is
	// consumed. nil when the engine cannot watch; calling it again is
	// free.
	Watch func()
}

// Context returns the request's context: context.Background() when the
// engine set none. The engine cancels it (Err is context.Canceled)
//   - when the client is known gone, once Watch was called;
//   - when the server stops hard (Close, or a graceful stop running out of
//     time); a graceful stop lets requests finish with it live.
//
// It carries no deadline and no values: a handler layers a per-request
// timeout with context.WithTimeout(r.Context(), d). Like the rest of the
// Request it is valid only until Handler.Serve returns: an engine may
// reuse it for the connection's next request, so a goroutine outliving
// Serve must not keep it (derive a context, and cancel it, before
// returning). Waiting on it costs nothing until Done is first called.
func (r *Request) Context() context.Context {
	if r.Ctx == nil {
		return context.Background()
	}
	return r.Ctx
}

// ResponseWriter is where a handler writes one response. Methods are not
// safe for concurrent use.
type ResponseWriter interface {
	// WriteHeader sends the status line and header fields. status is
	// 100..999; reason may be empty (the engine uses the standard phrase).
	// Headers must already be valid (token names, no CR/LF/NUL in values)
	// and contain no hop-by-hop fields; the engine adds Date, Connection,
	// Transfer-Encoding and Content-Length as the protocol needs.
	// contentLength is the body length when known, else -1; when the
	// headers carry Content-Length the handler passes the same value.
	// A 1xx status (except 101) may be written several times before the
	// final one.
	WriteHeader(status int, reason []byte, headers []Header, contentLength int64) error

	// Write appends body bytes. For HEAD requests and 204/304 responses the
	// bytes are counted but not sent. Writing more than a declared
	// contentLength is an error.
	Write(p []byte) (int, error)

	// SendFile sends count bytes of f starting at offset as body bytes
	// (sendfile(2) where possible). count < 0 means up to EOF.
	SendFile(f *os.File, offset, count int64) (int64, error)

	// Flush pushes buffered bytes to the client now.
	Flush() error

	// Abort ends the response abnormally: the connection is closed without
	// a clean end of the body (no final chunk), so the client can tell the
	// response is incomplete.
	Abort()
}

// Handler serves requests. Serve is called on the connection's goroutine;
// when it returns the response is complete (the engine finishes a chunked
// body and, if the handler wrote no header, answers 500).
type Handler interface {
	Serve(w ResponseWriter, r *Request)
}

// Hijacker is implemented by a ResponseWriter whose connection a handler
// may take over, to speak another protocol on it after an HTTP/1.1
// Upgrade (WebSocket). Reach it with the package's Hijack and CanHijack
// functions, not a type assertion: a wrapper (the access log) would hide it.
type Hijacker interface {
	// Hijack hands the connection to the caller: the engine writes
	// nothing more on it (the caller writes the 101 response itself).
	// The returned reader holds bytes the client sent after the request
	// head. It fails once a header was written, or when the request body
	// has not been read to its end. Engines may keep ownership of the
	// connection's lifetime: see the engine's documentation for whether
	// the caller must be done with it before Serve returns.
	Hijack() (net.Conn, *bufio.ReadWriter, error)
}

// TrailerWriter is implemented by a ResponseWriter that can send trailer
// fields after the body (HTTP/1.1 chunked responses). Reach it with the
// package's WriteTrailers function, not a type assertion: a wrapper would
// hide it.
type TrailerWriter interface {
	// WriteTrailers ends the body and sends fields as trailers. Fields
	// must be valid header fields. When the response has no chunked body
	// (a known Content-Length, HEAD, HTTP/1.0) the trailers are dropped
	// and nil is returned. After it, the body is complete: Write fails.
	WriteTrailers(fields []Header) error
}
