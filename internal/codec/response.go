package codec

import (
	"errors"
	"fmt"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/wire"
)

// ErrApp marks a payload that decodes but is not a valid HTTP response
// (or field list): the application's fault, answered with a 500 for its
// stream while the worker lives on. Errors wrapping wire.ErrProtocol, by
// contrast, mean the payload did not decode: the worker broke the
// protocol.
var ErrApp = errors.New("invalid response")

// MaxResponseHead is the largest response head an app may send, in bytes:
// the status (a WSGI status string as given, an ASGI status as its 3
// digits) plus len(name)+len(value)+4 for every header field, which is
// about what it costs on the wire. The same limit applies to the fields of
// TRAILERS and EARLY_HINT, and the adapter enforces it too (MAX_HEAD in
// python/krait_worker/protocol.py), so a head never comes near the frame
// limit (wire.MaxPayload): encoded, 64 KiB of fields is well under 1 MiB.
// It is 8 to 16 times what nginx's proxy_buffer_size (4-8 KiB) lets
// through, and as long as the longest header line Python's http.client
// reads (65536).
const MaxResponseHead = 64 << 10

// headOverLimit is the error for a head or field list over MaxResponseHead.
func headOverLimit(what string, size int) error {
	return fmt.Errorf("%w: the %s is over %d bytes (%d so far), krait's limit for a response head", ErrApp, what, MaxResponseHead, size)
}

// Parser decodes the worker's response frames. It is scratch memory, reused
// from request to request: the slices it returns alias the payload and the
// Parser, and are valid until its next call. A Parser is not safe for
// concurrent use; the zero value is ready.
type Parser struct {
	dec     wire.Decoder
	latin   []byte // latin-1 conversions of header values
	hdrs    []exchange.Header
	dropped [][]byte
}

// Response is a decoded RESPONSE.
type Response struct {
	Status  int
	Reason  []byte // WSGI: the status line's reason phrase, if any
	Headers []exchange.Header
	// ContentLength is the app's Content-Length, or -1.
	ContentLength int64
	// Trailers is whether the app announced trailers (ASGI 3-tuple).
	Trailers bool
	// Dropped names the hop-by-hop fields the app set, which are not in
	// Headers: the caller reports them (the engine owns the connection).
	Dropped [][]byte
}

// Response decodes and validates a RESPONSE payload: (status, headers), or
// (status, headers, trailers) from an ASGI worker. A status is an int of
// 100-999 or a WSGI status line; names must be tokens, values free of CR,
// LF and NUL, the head within MaxResponseHead; hop-by-hop fields are
// dropped (an ASGI response announcing trailers keeps its Trailer field);
// repeated Content-Lengths must agree.
func (ps *Parser) Response(p []byte) (Response, error) {
	resp := Response{ContentLength: -1}
	dec := &ps.dec
	dec.Reset(p)
	_, items, err := dec.Seq()
	if err == nil && items != 2 && items != 3 {
		err = fmt.Errorf("%w: RESPONSE is a sequence of %d items, want 2 or 3", wire.ErrProtocol, items)
	}
	if err != nil {
		return resp, err
	}
	latin := ps.room(len(p))

	k, err := dec.Peek()
	if err != nil {
		return resp, err
	}
	size := 0 // the head's size as MaxResponseHead counts it
	switch k {
	case wire.KindInt:
		v, err := dec.Int()
		if err != nil {
			return resp, err
		}
		if v < 100 || v > 999 {
			return resp, fmt.Errorf("%w: status %d", ErrApp, v)
		}
		resp.Status = int(v)
		size = 3
	case wire.KindStr, wire.KindBytes:
		var line []byte
		if line, latin, err = latinStr(dec, latin); err != nil {
			return resp, err
		}
		if size = len(line); size > MaxResponseHead {
			return resp, headOverLimit("response head", size)
		}
		if resp.Status, resp.Reason, err = ParseStatus(line); err != nil {
			return resp, err
		}
	default:
		return resp, fmt.Errorf("%w: status is a %s", ErrApp, k)
	}

	_, n, err := dec.Seq()
	if err != nil {
		return resp, err
	}
	hdrs, dropped := ps.hdrs[:0], ps.dropped[:0]
	for range n {
		var name, value []byte
		if name, value, latin, err = field(dec, latin, "header"); err != nil {
			return resp, err
		}
		// Counted before hop-by-hop fields are dropped, as the adapter counts.
		if size += len(name) + len(value) + 4; size > MaxResponseHead {
			return resp, headOverLimit("response head", size)
		}
		if !httpx.ValidToken(name) {
			return resp, fmt.Errorf("%w: header name %q", ErrApp, name)
		}
		if !httpx.SafeValue(value) {
			return resp, fmt.Errorf("%w: header %s has a value with CR, LF or NUL", ErrApp, name)
		}
		if httpx.HopByHop(name) && !(items == 3 && httpx.EqualFold(name, "Trailer")) {
			dropped = append(dropped, name)
			continue
		}
		if httpx.EqualFold(name, "Content-Length") {
			v, ok := httpx.ParseContentLength(value)
			if !ok || (resp.ContentLength >= 0 && v != resp.ContentLength) {
				return resp, fmt.Errorf("%w: Content-Length %q", ErrApp, value)
			}
			resp.ContentLength = v
		}
		hdrs = append(hdrs, exchange.Header{Name: name, Value: value})
	}
	if items == 3 {
		if resp.Trailers, err = dec.Bool(); err != nil {
			return resp, err
		}
	}
	if !dec.Done() {
		return resp, fmt.Errorf("%w: trailing bytes after RESPONSE", wire.ErrProtocol)
	}
	ps.keep(hdrs, dropped, latin)
	resp.Headers, resp.Dropped = hdrs, dropped
	return resp, nil
}

// FieldList decodes a TRAILERS or EARLY_HINT payload (what names it in
// errors): a list of (name, value) pairs of str or bytes, validated like
// response headers, within MaxResponseHead. Hop-by-hop fields and
// Content-Length, which a trailer or an early hint may not set, are
// dropped and named in dropped.
func (ps *Parser) FieldList(p []byte, what string) (hdrs []exchange.Header, dropped [][]byte, err error) {
	ps.dec.Reset(p)
	return ps.fieldList(len(p), what)
}

// fieldList decodes a field list at the decoder's position; room is the
// size of the payload's rest.
func (ps *Parser) fieldList(room int, what string) ([]exchange.Header, [][]byte, error) {
	dec := &ps.dec
	_, n, err := dec.Seq()
	if err != nil {
		return nil, nil, err
	}
	latin := ps.room(room)
	hdrs, dropped := ps.hdrs[:0], ps.dropped[:0]
	size := 0
	for range n {
		var name, value []byte
		if name, value, latin, err = field(dec, latin, what+" field"); err != nil {
			return nil, nil, err
		}
		if size += len(name) + len(value) + 4; size > MaxResponseHead {
			return nil, nil, headOverLimit(what, size)
		}
		if !httpx.ValidToken(name) {
			return nil, nil, fmt.Errorf("%w: %s field name %q", ErrApp, what, name)
		}
		if !httpx.SafeValue(value) {
			return nil, nil, fmt.Errorf("%w: %s field %s has a value with CR, LF or NUL", ErrApp, what, name)
		}
		if httpx.HopByHop(name) || httpx.EqualFold(name, "Content-Length") {
			dropped = append(dropped, name)
			continue
		}
		hdrs = append(hdrs, exchange.Header{Name: name, Value: value})
	}
	if !dec.Done() {
		return nil, nil, fmt.Errorf("%w: trailing bytes after %s", wire.ErrProtocol, what)
	}
	ps.keep(hdrs, dropped, latin)
	return hdrs, dropped, nil
}

// room returns the latin-1 buffer, emptied, with room for n bytes:
// latin-1 conversions never grow, so with room for all of a payload
// appends never move the bytes earlier headers point into.
func (ps *Parser) room(n int) []byte {
	if cap(ps.latin) < n {
		ps.latin = make([]byte, 0, n)
	}
	return ps.latin[:0]
}

// keep stores grown scratch for the next call.
func (ps *Parser) keep(hdrs []exchange.Header, dropped [][]byte, latin []byte) {
	ps.hdrs, ps.dropped, ps.latin = hdrs[:0], dropped[:0], latin[:0]
}

// field decodes one (name, value) pair as latin-1 bytes.
func field(dec *wire.Decoder, latin []byte, what string) (name, value, latinOut []byte, err error) {
	if _, m, err := dec.Seq(); err != nil || m != 2 {
		if err == nil {
			err = fmt.Errorf("%w: a %s is a sequence of %d items, want 2", ErrApp, what, m)
		}
		return nil, nil, latin, err
	}
	if name, latin, err = latinStr(dec, latin); err != nil {
		return nil, nil, latin, err
	}
	value, latin, err = latinStr(dec, latin)
	return name, value, latin, err
}

// latinStr decodes a str or bytes item as latin-1 bytes: the payload's own
// bytes when ASCII or bytes, else a conversion appended to latin.
func latinStr(dec *wire.Decoder, latin []byte) (s, latinOut []byte, err error) {
	k, raw, err := dec.Str()
	if err != nil {
		return nil, latin, err
	}
	if k == wire.KindBytes || wire.IsASCII(raw) {
		return raw, latin, nil
	}
	start := len(latin)
	latin, ok := wire.Latin1(latin, raw)
	if !ok {
		return nil, latin, fmt.Errorf("%w: %q is not latin-1", ErrApp, raw)
	}
	return latin[start:len(latin):len(latin)], latin, nil
}

// ParseStatus parses a WSGI status line: three digits (100-999), then
// optionally a space and a reason phrase free of CR, LF and NUL.
func ParseStatus(s []byte) (int, []byte, error) {
	if len(s) < 3 || (len(s) > 3 && s[3] != ' ') {
		return 0, nil, fmt.Errorf("%w: status %q", ErrApp, s)
	}
	code := 0
	for _, c := range s[:3] {
		if c < '0' || c > '9' {
			return 0, nil, fmt.Errorf("%w: status %q", ErrApp, s)
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return 0, nil, fmt.Errorf("%w: status %q", ErrApp, s)
	}
	var reason []byte
	if len(s) > 4 {
		reason = s[4:]
	}
	if !httpx.SafeValue(reason) {
		return 0, nil, fmt.Errorf("%w: status %q", ErrApp, s)
	}
	return code, reason, nil
}
