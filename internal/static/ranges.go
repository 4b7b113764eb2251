package static

import (
	"bytes"

	"github.com/krait-server/krait/internal/httpx"
)

// Range requests (RFC 9110 §14).

// byteRange is one satisfiable range: length bytes from start.
type byteRange struct{ start, length int64 }

// maxRanges bounds the ranges one request may ask for; a request asking
// for more is answered with the whole representation (RFC 9110 §14.2
// lets a server ignore Range), as are ranges that add up to more than
// the representation (overlapping ranges used to amplify a response).
const maxRanges = 16

type rangeResult uint8

const (
	rangeIgnore        rangeResult = iota // send the whole representation (200)
	rangeOK                               // send the ranges (206)
	rangeUnsatisfiable                    // 416
)

// parseRange parses a Range field value for a representation of size
// bytes, appending the satisfiable ranges to dst. A value that is not a
// valid bytes range-set, or that uses another unit, is ignored.
func parseRange(dst []byteRange, v []byte, size int64) ([]byteRange, rangeResult) {
	v = httpx.TrimOWS(v)
	if len(v) < 6 || !httpx.EqualFold(v[:6], "bytes=") {
		return dst, rangeIgnore
	}
	if size == 0 {
		// Nothing to select in an empty representation: send it whole.
		return dst, rangeIgnore
	}
	v = v[6:]
	specs := 0
	var total int64
	for len(v) > 0 {
		var spec []byte
		if j := bytes.IndexByte(v, ','); j >= 0 {
			spec, v = v[:j], v[j+1:]
		} else {
			spec, v = v, nil
		}
		spec = httpx.TrimOWS(spec)
		if len(spec) == 0 {
			continue // empty list elements are allowed (RFC 9110 §5.6.1)
		}
		if specs++; specs > maxRanges {
			return dst[:0], rangeIgnore
		}
		dash := -1
		for i, c := range spec {
			if c == '-' {
				dash = i
				break
			}
		}
		if dash < 0 {
			return dst[:0], rangeIgnore
		}
		// first-pos, last-pos and suffix-length are 1*DIGIT, the grammar
		// of Content-Length, which httpx parses bounded against overflow.
		first, last := spec[:dash], spec[dash+1:]
		var r byteRange
		if len(first) == 0 {
			// suffix-range: the last n bytes.
			n, ok := httpx.ParseContentLength(last)
			if !ok {
				return dst[:0], rangeIgnore
			}
			if n == 0 {
				continue // unsatisfiable
			}
			n = min(n, size)
			r = byteRange{size - n, n}
		} else {
			a, ok := httpx.ParseContentLength(first)
			if !ok {
				return dst[:0], rangeIgnore
			}
			b := size - 1
			if len(last) > 0 {
				if b, ok = httpx.ParseContentLength(last); !ok || b < a {
					return dst[:0], rangeIgnore
				}
			}
			if a >= size {
				continue // unsatisfiable
			}
			b = min(b, size-1)
			r = byteRange{a, b - a + 1}
		}
		total += r.length
		dst = append(dst, r)
	}
	if specs == 0 {
		return dst[:0], rangeIgnore
	}
	if len(dst) == 0 {
		return dst, rangeUnsatisfiable
	}
	if total > size {
		return dst[:0], rangeIgnore
	}
	return dst, rangeOK
}
