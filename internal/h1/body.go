package h1

import (
	"bytes"
	"errors"
	"io"
)

// Body kinds.
const (
	bodyNone = iota
	bodyLength
	bodyChunked
)

// Chunked decoder states.
const (
	csSize     = iota // expecting a chunk-size line
	csData            // inside chunk data; remaining bytes left
	csDataCRLF        // expecting the CRLF after chunk data
	csTrailer         // expecting the trailer section
)

// directReadMin is the smallest caller buffer worth reading into directly
// rather than through the connection buffer.
const directReadMin = 2 << 10

var (
	errBodyClosed = errors.New("h1: request body read after the handler returned")
	noBody        = noBodyReader{}
)

type noBodyReader struct{}

func (noBodyReader) Read([]byte) (int, error) { return 0, io.EOF }

// bodyReader streams one request body out of the connection, decoding the
// chunked coding. It is reused for every request on a connection.
type bodyReader struct {
	c               *conn
	kind            int
	remaining       int64 // bodyLength: bytes left; bodyChunked: bytes left in the chunk
	state           int
	done            bool  // body read to its end
	closed          bool  // the handler returned
	err             error // sticky error; a *protoError for malformed framing
	continuePending bool  // send 100 Continue on the first Read
}

func (b *bodyReader) reset(hi *headInfo, minor int) {
	*b = bodyReader{c: b.c}
	switch {
	case hi.chunked:
		b.kind = bodyChunked
	case hi.contentLength > 0:
		b.kind = bodyLength
		b.remaining = hi.contentLength
	default:
		b.done = true
	}
	// RFC 9110 §10.1.1: ignore 100-continue from HTTP/1.0 clients and when
	// there is no body to wait for.
	b.continuePending = hi.expectContinue && minor == 1 && !b.done
}

func (b *bodyReader) reader() io.Reader {
	if b.kind == bodyNone {
		return noBody
	}
	return b
}

// Read implements io.Reader for Request.Body.
func (b *bodyReader) Read(p []byte) (int, error) {
	if b.closed {
		return 0, errBodyClosed
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.continuePending {
		if err := b.sendContinue(); err != nil {
			return 0, b.fail(err)
		}
	}
	var n int
	var err error
	if b.kind == bodyLength {
		n, err = b.readLength(p)
	} else {
		n, err = b.readChunked(p)
	}
	if err != nil && err != io.EOF {
		return n, b.fail(err)
	}
	return n, err
}

func (b *bodyReader) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	b.c.wmu.Lock()
	b.err = err
	b.c.closeAfter = true
	b.c.wmu.Unlock()
	return err
}

// sendContinue answers Expect: 100-continue on the first read, unless the
// final response has started (RFC 9110 §10.1.1).
func (b *bodyReader) sendContinue() error {
	c := b.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b.continuePending = false
	if c.rw.headerDone {
		return nil
	}
	c.out = append(c.out, "HTTP/1.1 100 Continue\r\n\r\n"...)
	return c.flush()
}

func (b *bodyReader) finish() {
	b.c.bodyDone() // sets done under the Gone lock: a handler goroutine may be calling Watch
}

func (b *bodyReader) readLength(p []byte) (int, error) {
	c := b.c
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	var n int
	if c.r == c.w {
		if len(p) >= directReadMin {
			var err error
			if n, err = c.readDirect(p); err != nil {
				return 0, err
			}
		} else if err := c.fill(); err != nil {
			return 0, err
		}
	}
	if n == 0 {
		n = copy(p, c.buf[c.r:c.w])
		c.r += n
	}
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.finish()
		return n, io.EOF
	}
	return n, nil
}

func (b *bodyReader) readChunked(p []byte) (int, error) {
	c := b.c
	for {
		switch b.state {
		case csSize:
			line, err := b.line()
			if err != nil {
				return 0, err
			}
			size, perr := parseChunkSize(line)
			if perr != nil {
				return 0, perr
			}
			if size == 0 {
				b.state = csTrailer
				continue
			}
			b.remaining = size
			b.state = csData
		case csData:
			q := p
			if int64(len(q)) > b.remaining {
				q = q[:b.remaining]
			}
			var n int
			if c.r == c.w {
				if len(q) >= directReadMin {
					var err error
					if n, err = c.readDirect(q); err != nil {
						return 0, err
					}
				} else if err := c.fill(); err != nil {
					return 0, err
				}
			}
			if n == 0 {
				n = copy(q, c.buf[c.r:c.w])
				c.r += n
			}
			b.remaining -= int64(n)
			if b.remaining == 0 {
				b.state = csDataCRLF
			}
			return n, nil
		case csDataCRLF:
			for c.w-c.r < 2 {
				if err := c.fill(); err != nil {
					return 0, err
				}
			}
			if c.buf[c.r] != '\r' || c.buf[c.r+1] != '\n' {
				return 0, errChunkCRLF
			}
			c.r += 2
			b.state = csSize
		case csTrailer:
			if err := b.trailers(); err != nil {
				return 0, err
			}
			b.finish()
			return 0, io.EOF
		}
	}
}

// line returns the next CRLF-terminated line (without CRLF) of the chunked
// framing and consumes it. The slice is valid until the next fill.
func (b *bodyReader) line() ([]byte, error) {
	c := b.c
	for {
		if i := bytes.IndexByte(c.buf[c.r:c.w], '\n'); i >= 0 {
			line := c.buf[c.r : c.r+i]
			if i == 0 || line[i-1] != '\r' {
				return nil, errBareLF
			}
			if i > maxChunkLine {
				return nil, errChunkLine
			}
			c.r += i + 1
			return line[:i-1], nil
		}
		if c.w-c.r > maxChunkLine {
			return nil, errChunkLine
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

// trailers reads the whole trailer section into the buffer before parsing
// it, so the Trailers slices stay put (nothing is read after them while the
// handler runs).
func (b *bodyReader) trailers() error {
	c := b.c
	scan := headScan{lines: 1} // no request line: the first empty line ends it
	for {
		n, perr := scan.scan(c.buf[c.r:c.w], &c.srv.trlLim)
		if perr != nil {
			return perr
		}
		if n > 0 {
			trl, perr := parseTrailers(c.buf[c.r:c.r+n], c.req.Trailers[:0], &c.srv.trlLim)
			if perr != nil {
				return perr
			}
			if len(trl) > 0 {
				c.req.Trailers = trl
			}
			c.r += n
			return nil
		}
		if err := c.fill(); err != nil {
			return err
		}
	}
}
