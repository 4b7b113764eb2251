package compress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// ErrBodyTooLong is returned by Write and SendFile when a compressed
// response gets more body than the Content-Length the handler declared
// (the engine cannot check it: it sees an unknown length).
var ErrBodyTooLong = errors.New("compress: body longer than the declared Content-Length")

const (
	outBufSize  = 8 << 10  // compressed bytes gathered per engine Write (one chunk)
	fileBufSize = 32 << 10 // SendFile reads per encoder Write
	maxKeptHdrs = 64       // header scratch larger than this is not pooled
)

// Compressor compresses responses; Wrap puts it in front of a handler.
// It is immutable after New and safe for concurrent use.
type Compressor struct {
	prefs   []coding
	minSize int64
	types   []typePattern
	enc     *encoderPools
	writers sync.Pool
}

// New validates cfg and returns a Compressor for it.
func New(cfg Config) (*Compressor, error) {
	prefs, types, err := cfg.compile()
	if err != nil {
		return nil, err
	}
	enc, err := newEncoderPools(&cfg, prefs)
	if err != nil {
		return nil, err
	}
	c := &Compressor{prefs: prefs, minSize: cfg.MinSize, types: types, enc: enc}
	c.writers.New = func() any { return new(writer) }
	return c, nil
}

// Wrap returns a handler that serves with h and compresses its responses.
// With no codings or no types configured it returns h itself.
func (c *Compressor) Wrap(h exchange.Handler) exchange.Handler {
	if len(c.prefs) == 0 || len(c.types) == 0 {
		return h
	}
	return &handler{c: c, next: h}
}

type handler struct {
	c    *Compressor
	next exchange.Handler
}

func (h *handler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	cw := h.c.writers.Get().(*writer)
	// The request's header slices are valid only during Serve: the choice
	// is made now and only the result is kept.
	cw.c, cw.base = h.c, w
	cw.coding = negotiate(r.Headers, h.c.prefs)
	cw.head = string(r.Method) == "HEAD"
	cw.state, cw.declared, cw.in = stateNew, -1, 0
	h.next.Serve(cw, r)
	cw.finish()
	cw.release()
	h.c.writers.Put(cw)
}

type state uint8

const (
	stateNew      state = iota // no final header yet
	statePass                  // everything goes to base unchanged
	stateCompress              // the body goes through enc
)

// writer decides at the final WriteHeader whether the response is
// compressed, and then either passes everything through or feeds the body
// to an encoder whose output goes to base (through out, so the engine gets
// a few large writes, not one per encoder block).
type writer struct {
	c      *Compressor
	base   exchange.ResponseWriter
	coding coding // negotiated from the request; none for identity
	head   bool
	state  state

	declared int64 // the handler's contentLength while compressing, else -1
	in       int64 // uncompressed body bytes taken while compressing

	enc  encoder
	out  *bufio.Writer
	sink sink

	hdrs    []exchange.Header // rewritten header fields
	etag    []byte            // weakened ETag value
	vary    []byte            // merged Vary value
	fileBuf []byte
}

var (
	_ exchange.ResponseWriter = (*writer)(nil)
	_ exchange.Unwrapper      = (*writer)(nil)
	_ exchange.TrailerWriter  = (*writer)(nil)
)

// sink is the encoder's destination: the wrapped writer.
type sink struct{ w exchange.ResponseWriter }

func (s *sink) Write(p []byte) (int, error) { return s.w.Write(p) }

// Unwrap implements exchange.Unwrapper. The writer does not implement
// Hijacker: a hijack happens before any header, when there is nothing to
// compress, so exchange.Hijack reaches the engine through Unwrap.
func (w *writer) Unwrap() exchange.ResponseWriter { return w.base }

// Static header fields; the engine only reads them.
var (
	hdrContentEncoding = []byte("Content-Encoding")
	hdrVary            = []byte("Vary")
	valAcceptEncoding  = []byte("Accept-Encoding")
)

// WriteHeader implements exchange.ResponseWriter. Interim responses (1xx)
// and a second final header pass through unchanged; the first final one
// decides.
func (w *writer) WriteHeader(status int, reason []byte, headers []exchange.Header, contentLength int64) error {
	if w.state != stateNew || status < 200 {
		return w.base.WriteHeader(status, reason, headers, contentLength)
	}
	f := scanFields(headers)
	if !w.c.eligible(status, &f, contentLength) {
		w.state = statePass
		return w.base.WriteHeader(status, reason, headers, contentLength)
	}
	// Eligible: what goes out now depends on Accept-Encoding, so it gets
	// Vary whether it is compressed or not. A HEAD response says what the
	// GET would carry; of unknown length, that cannot be known.
	compress := w.coding != none && (contentLength >= 0 || !w.head)
	hdrs := w.rewrite(headers, &f, compress)
	if !compress {
		w.state = statePass
		return w.base.WriteHeader(status, reason, hdrs, contentLength)
	}
	if err := w.base.WriteHeader(status, reason, hdrs, -1); err != nil {
		return err
	}
	if w.head {
		w.state = statePass // the engine discards a HEAD body
		return nil
	}
	if w.out == nil {
		w.out = bufio.NewWriterSize(&w.sink, outBufSize)
	}
	w.sink.w = w.base
	w.out.Reset(&w.sink)
	w.enc = w.c.enc.get(w.coding, w.out)
	w.declared = contentLength
	w.state = stateCompress
	return nil
}

// Write implements exchange.ResponseWriter.
func (w *writer) Write(p []byte) (int, error) {
	switch w.state {
	case stateCompress:
		var err error
		if w.declared >= 0 && int64(len(p)) > w.declared-w.in {
			p, err = p[:w.declared-w.in], ErrBodyTooLong
		}
		n, werr := w.enc.Write(p)
		w.in += int64(n)
		if werr != nil {
			return n, werr
		}
		return n, err
	case stateNew:
		w.state = statePass // the engine sends 200 without a Content-Type
	}
	return w.base.Write(p)
}

// SendFile implements exchange.ResponseWriter: compressed, the file is
// read and fed to the encoder; otherwise the engine sends it (sendfile).
func (w *writer) SendFile(f *os.File, offset, count int64) (int64, error) {
	switch w.state {
	case stateNew:
		w.state = statePass
		fallthrough
	case statePass:
		return w.base.SendFile(f, offset, count)
	}
	if count < 0 {
		fi, err := f.Stat()
		if err != nil {
			return 0, fmt.Errorf("compress: %w", err)
		}
		count = max(fi.Size()-offset, 0)
	}
	if w.declared >= 0 && count > w.declared-w.in {
		return 0, ErrBodyTooLong
	}
	if w.fileBuf == nil {
		w.fileBuf = make([]byte, fileBufSize)
	}
	var n int64
	for n < count {
		chunk := w.fileBuf[:min(int64(len(w.fileBuf)), count-n)]
		m, err := f.ReadAt(chunk, offset+n)
		if m > 0 {
			k, werr := w.enc.Write(chunk[:m])
			n += int64(k)
			w.in += int64(k)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF && n < count {
			err = io.ErrUnexpectedEOF // the file shrank
		}
		if err != nil && err != io.EOF {
			return n, fmt.Errorf("compress: reading %s: %w", f.Name(), err)
		}
	}
	return n, nil
}

// Flush implements exchange.ResponseWriter: compressed, everything written
// so far is encoded and sent (a sync flush, decodable by the client), so a
// streamed response stays streamed.
func (w *writer) Flush() error {
	if w.state == stateCompress {
		if err := w.enc.Flush(); err != nil {
			return err
		}
		if err := w.out.Flush(); err != nil {
			return err
		}
	}
	return w.base.Flush()
}

// Abort implements exchange.ResponseWriter. The encoder's tail is never
// written: the client must see a cut body, not a complete short one.
func (w *writer) Abort() {
	w.dropEncoder()
	w.base.Abort()
}

// WriteTrailers implements exchange.TrailerWriter: it ends the compressed
// stream before the engine's final chunk, then forwards the trailers.
func (w *writer) WriteTrailers(fields []exchange.Header) error {
	switch w.state {
	case stateCompress:
		if err := w.end(); err != nil {
			return err
		}
	case stateNew:
		w.state = statePass
	}
	return exchange.WriteTrailers(w.base, fields)
}

// end closes the encoder and sends its tail.
func (w *writer) end() error {
	err := w.enc.Close()
	if err == nil {
		err = w.out.Flush()
	}
	w.c.enc.put(w.coding, w.enc)
	w.enc = nil
	w.state = statePass
	return err
}

func (w *writer) dropEncoder() {
	if w.state == stateCompress {
		w.c.enc.put(w.coding, w.enc) // Reset on its next use
		w.enc = nil
		w.state = statePass
	}
}

// finish ends the compressed stream once the handler returned.
func (w *writer) finish() {
	if w.state != stateCompress {
		return
	}
	if w.declared >= 0 && w.in < w.declared {
		// Short of its Content-Length: the engine would close the
		// connection, and a clean end of the stream would hide the cut.
		w.Abort()
		return
	}
	if err := w.end(); err != nil {
		w.base.Abort()
	}
}

// release drops every reference into the request before pooling.
func (w *writer) release() {
	w.base, w.sink.w, w.c = nil, nil, nil
	if w.out != nil {
		w.out.Reset(nil)
	}
	if cap(w.hdrs) > maxKeptHdrs {
		w.hdrs = nil
	}
	clear(w.hdrs)
	w.hdrs = w.hdrs[:0]
}

// fields is what WriteHeader needs to know of the handler's header.
type fields struct {
	contentType  []byte
	vary         int  // index of the first Vary field, -1 if none
	varyCovered  bool // a Vary field lists Accept-Encoding or "*"
	encoded      bool // Content-Encoding set by the handler
	ranged       bool // Content-Range
	noTransform  bool // Cache-Control: no-transform
	digest       bool // a digest of the content as sent would break
	lengthFields bool // Content-Length or Accept-Ranges to drop when compressing
	etag         bool
}

func scanFields(headers []exchange.Header) fields {
	f := fields{vary: -1}
	for i := range headers {
		n, v := headers[i].Name, headers[i].Value
		switch len(n) {
		case 4:
			switch {
			case httpx.EqualFold(n, "vary"):
				if f.vary < 0 {
					f.vary = i
				}
				httpx.ForEachElement(v, func(e []byte) {
					if httpx.EqualFold(e, "accept-encoding") || (len(e) == 1 && e[0] == '*') {
						f.varyCovered = true
					}
				})
			case httpx.EqualFold(n, "etag"):
				f.etag = true
			}
		case 6:
			f.digest = f.digest || httpx.EqualFold(n, "digest")
		case 11:
			f.digest = f.digest || httpx.EqualFold(n, "repr-digest") || httpx.EqualFold(n, "content-md5")
		case 12:
			if httpx.EqualFold(n, "content-type") {
				f.contentType = v
			}
		case 13:
			switch {
			case httpx.EqualFold(n, "content-range"):
				f.ranged = true
			case httpx.EqualFold(n, "cache-control"):
				httpx.ForEachElement(v, func(e []byte) {
					f.noTransform = f.noTransform || httpx.EqualFold(e, "no-transform")
				})
			case httpx.EqualFold(n, "accept-ranges"):
				f.lengthFields = true
			}
		case 14:
			switch {
			case httpx.EqualFold(n, "content-length"):
				f.lengthFields = true
			case httpx.EqualFold(n, "content-digest"):
				f.digest = true
			}
		case 16:
			f.encoded = f.encoded || httpx.EqualFold(n, "content-encoding")
		}
	}
	return f
}

// eligible reports whether a response could be compressed for some
// Accept-Encoding.
func (c *Compressor) eligible(status int, f *fields, contentLength int64) bool {
	switch {
	case status == 204 || status == 205 || status == 206 || status == 304:
		return false // no content, or a range of it
	case f.encoded || f.ranged || f.noTransform || f.digest:
		return false
	case contentLength == 0 || (contentLength > 0 && contentLength < c.minSize):
		return false
	}
	return c.compressible(f.contentType)
}

// compressible reports whether the media type of a Content-Type value is
// one of the configured types.
func (c *Compressor) compressible(ct []byte) bool {
	for i, ch := range ct {
		if ch == ';' {
			ct = ct[:i]
			break
		}
	}
	ct = httpx.TrimOWS(ct)
	slash := -1
	for i, ch := range ct {
		if ch == '/' {
			slash = i
			break
		}
	}
	if slash <= 0 {
		return false
	}
	typ, sub := ct[:slash], ct[slash+1:]
	for i := range c.types {
		p := &c.types[i]
		if !httpx.EqualFold(typ, p.typ) {
			continue
		}
		switch {
		case p.any:
			return true
		case p.suf:
			if len(sub) > len(p.sub) && hasSuffixFold(sub, p.sub) {
				return true
			}
		case httpx.EqualFold(sub, p.sub):
			return true
		}
	}
	return false
}

// rewrite returns the header fields to send for an eligible response:
// Vary gains Accept-Encoding; when compressed, Content-Length and
// Accept-Ranges go (the length is unknown, ranges of the compressed bytes
// are not served), a strong ETag is weakened (the bytes differ, the
// representation does not, as nginx does) and Content-Encoding is added.
// The values alias headers or w's buffers: valid until the next request.
func (w *writer) rewrite(headers []exchange.Header, f *fields, compress bool) []exchange.Header {
	hs := w.hdrs[:0]
	etagDone := false // one buffer: a second (invalid) ETag stays as it is
	for i, h := range headers {
		switch {
		case compress && f.lengthFields && (httpx.EqualFold(h.Name, "content-length") || httpx.EqualFold(h.Name, "accept-ranges")):
			continue
		case compress && f.etag && !etagDone && httpx.EqualFold(h.Name, "etag"):
			etagDone = true
			if v := httpx.TrimOWS(h.Value); len(v) > 0 && v[0] == '"' {
				w.etag = append(append(w.etag[:0], "W/"...), v...)
				h.Value = w.etag
			}
		case i == f.vary && !f.varyCovered:
			if v := httpx.TrimOWS(h.Value); len(v) > 0 {
				w.vary = append(append(append(w.vary[:0], v...), ", "...), valAcceptEncoding...)
				h.Value = w.vary
			} else {
				h.Value = valAcceptEncoding
			}
		}
		hs = append(hs, h)
	}
	if compress {
		hs = append(hs, exchange.Header{Name: hdrContentEncoding, Value: names[w.coding]})
	}
	if f.vary < 0 {
		hs = append(hs, exchange.Header{Name: hdrVary, Value: valAcceptEncoding})
	}
	w.hdrs = hs
	return hs
}
