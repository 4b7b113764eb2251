package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The frame filter sits between a client's HTTP/2 connection and the
// HTTP/2 server (golang.org/x/net/http2) and fixes two places where the
// Go server departs from RFC 9113, both found by h2spec:
//
//   - A SETTINGS frame that repeats a parameter is legal (the values apply
//     in order), but Go hangs up on it. The filter keeps the last value of
//     each parameter, which is what applying them in order leaves.
//   - A request with connection-specific fields (Connection, Keep-Alive,
//     Proxy-Connection, Transfer-Encoding, Upgrade, or TE other than
//     "trailers") is malformed and must be refused with PROTOCOL_ERROR
//     (RFC 9113 §8.2.2); Go answers it 400 instead. The filter decodes
//     every header block (with its own HPACK decoder, which follows the
//     same dynamic table) and, on such a field, ends the connection:
//     RFC 9113 §5.4.1 allows any stream error to be treated as a
//     connection error, and the server cannot be made to reset just that
//     stream from outside.
//
// Everything else passes through unchanged; DATA payloads are copied
// without being looked at. A frame larger than the 16 KiB the server
// accepts switches the filter to pass-through, and the server then
// answers FRAME_SIZE_ERROR itself.

const maxFilteredFrame = 16 << 10

var errMalformed = errors.New("h2: request with a connection-specific header field")

type frameFilter struct {
	net.Conn
	br      *bufio.Reader
	preface bool   // the client preface has been passed
	pass    bool   // stopped filtering: copy bytes through
	out     []byte // filtered bytes not yet returned
	through int    // payload bytes of the current frame to pass unread (DATA etc.)
	hdrBuf  [9]byte
	dec     *hpack.Decoder
	block   []byte
	inBlock bool
	err     error
}

func newFrameFilter(c net.Conn, sawPreface bool) *frameFilter {
	f := &frameFilter{Conn: c, br: bufio.NewReaderSize(c, 16<<10), preface: sawPreface}
	f.dec = hpack.NewDecoder(4096, nil) // 4096: the table size the server allows (its default)
	return f
}

// tlsFrameFilter keeps the TLS state visible to the HTTP/2 server (r.TLS).
type tlsFrameFilter struct {
	*frameFilter
	tc *tls.Conn
}

func (t tlsFrameFilter) ConnectionState() tls.ConnectionState { return t.tc.ConnectionState() }

// forbidden reports a connection-specific field (RFC 9113 §8.2.2).
func forbidden(hf hpack.HeaderField) bool {
	switch hf.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return hf.Value != "trailers"
	}
	return false
}

func (f *frameFilter) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.err != nil {
			return 0, f.err
		}
		if f.pass {
			return f.br.Read(p)
		}
		if f.through > 0 {
			n, err := f.br.Read(p[:min(len(p), f.through)])
			f.through -= n
			return n, err
		}
		f.err = f.next()
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	return n, nil
}

// next reads the preface or one frame into f.out, filtered.
func (f *frameFilter) next() error {
	if !f.preface {
		b := make([]byte, len(http2.ClientPreface))
		if _, err := io.ReadFull(f.br, b); err != nil {
			return err
		}
		f.preface = true
		f.out = b
		return nil
	}
	hdr := f.hdrBuf[:]
	if _, err := io.ReadFull(f.br, hdr); err != nil {
		return err
	}
	length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
	if length > maxFilteredFrame {
		f.pass = true
		f.out = hdr
		return nil
	}
	switch typ {
	case http2.FrameSettings, http2.FrameHeaders, http2.FrameContinuation:
	default:
		// Not looked at: the header now, the payload straight from the
		// connection in Read.
		f.out = hdr
		f.through = length
		return nil
	}
	payload := make([]byte, 9+length)
	copy(payload, hdr)
	if _, err := io.ReadFull(f.br, payload[9:]); err != nil {
		return err
	}
	switch typ {
	case http2.FrameSettings:
		if flags&http2.FlagSettingsAck == 0 && length%6 == 0 {
			payload = dedupeSettings(payload)
		}
	case http2.FrameHeaders:
		frag, ok := headersFragment(payload[9:], flags)
		if !ok {
			f.pass = true // malformed padding: the server reports it
			break
		}
		f.block = append(f.block[:0], frag...)
		f.inBlock = flags&http2.FlagHeadersEndHeaders == 0
		if !f.inBlock {
			if err := f.checkBlock(); err != nil {
				return err
			}
		}
	case http2.FrameContinuation:
		if f.inBlock {
			f.block = append(f.block, payload[9:]...)
			if flags&http2.FlagContinuationEndHeaders != 0 {
				f.inBlock = false
				if err := f.checkBlock(); err != nil {
					return err
				}
			}
		}
	}
	f.out = payload
	return nil
}

// checkBlock decodes a complete header block; a decoding error is left
// for the server to find (it decodes the same bytes), and filtering stops
// because the two tables may no longer agree.
func (f *frameFilter) checkBlock() error {
	fields, err := f.dec.DecodeFull(f.block)
	if err != nil {
		f.pass = true
		return nil
	}
	for _, hf := range fields {
		if forbidden(hf) {
			return errMalformed
		}
	}
	return nil
}

// headersFragment strips the padding and priority fields of a HEADERS payload.
func headersFragment(p []byte, flags http2.Flags) ([]byte, bool) {
	pad := 0
	if flags&http2.FlagHeadersPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad = int(p[0])
		p = p[1:]
	}
	if flags&http2.FlagHeadersPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// dedupeSettings keeps the last value of each parameter, in the order of
// their first appearance.
func dedupeSettings(frame []byte) []byte {
	body := frame[9:]
	n := len(body) / 6
	if n < 2 {
		return frame
	}
	last := map[uint16]uint32{}
	var order []uint16
	for i := range n {
		id := binary.BigEndian.Uint16(body[i*6:])
		if _, ok := last[id]; !ok {
			order = append(order, id)
		}
		last[id] = binary.BigEndian.Uint32(body[i*6+2:])
	}
	if len(order) == n {
		return frame
	}
	out := make([]byte, 9, 9+6*len(order))
	copy(out, frame[:9])
	for _, id := range order {
		out = binary.BigEndian.AppendUint16(out, id)
		out = binary.BigEndian.AppendUint32(out, last[id])
	}
	l := len(out) - 9
	out[0], out[1], out[2] = byte(l>>16), byte(l>>8), byte(l)
	return out
}

// configureHTTP2 serves HTTP/2 on srv with golang.org/x/net/http2 behind
// the frame filter, over TLS (ALPN "h2") and, when cleartext, with prior
// knowledge (net/http hands such connections over after the preface).
func configureHTTP2(srv *http.Server, h2s *http2.Server) error {
	if err := http2.ConfigureServer(srv, h2s); err != nil {
		return err
	}
	type baseContexter interface{ BaseContext() context.Context }
	opts := func(hs *http.Server, h http.Handler, saw bool) *http2.ServeConnOpts {
		o := &http2.ServeConnOpts{Handler: h, BaseConfig: hs, SawClientPreface: saw}
		if bc, ok := h.(baseContexter); ok {
			o.Context = bc.BaseContext() // net/http's per-connection context (LocalAddrContextKey)
		}
		return o
	}
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		h2s.ServeConn(tlsFrameFilter{newFrameFilter(c, false), c}, opts(hs, h, false))
	}
	srv.TLSNextProto["unencrypted_http2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		nc, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			_ = c.Close()
			return
		}
		h2s.ServeConn(newFrameFilter(nc.UnencryptedNetConn(), true), opts(hs, h, true))
	}
	return nil
}
