package static

import (
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// Content codings, in the server's order of preference when the client
// weighs several equally: brotli compresses web assets best, then zstd,
// then gzip.
const (
	codingIdentity = iota
	codingBr
	codingZstd
	codingGzip
	numCodings
)

// sidecar suffixes and Content-Encoding names, by coding.
var (
	codingExt  = [numCodings]string{"", ".br", ".zst", ".gz"}
	codingName = [numCodings]string{"", "br", "zstd", "gzip"}
	codingTag  = [numCodings]string{"", "-br", "-zst", "-gz"} // ETag suffix: each representation has its own
)

// acceptEncoding holds the weights (q × 1000) a request gives the codings;
// -1 means not mentioned.
type acceptEncoding struct {
	q    [numCodings]int
	star int
}

// parseAcceptEncoding reads every Accept-Encoding field of r without
// allocating. Malformed elements are skipped.
func parseAcceptEncoding(headers []exchange.Header) acceptEncoding {
	ae := acceptEncoding{q: [numCodings]int{-1, -1, -1, -1}, star: -1}
	for i := range headers {
		h := &headers[i]
		if !httpx.EqualFold(h.Name, "accept-encoding") {
			continue
		}
		httpx.ForEachElement(h.Value, func(elem []byte) {
			name, params := splitSemicolon(elem)
			name = httpx.TrimOWS(name)
			if len(name) == 0 {
				return
			}
			q := qvalue(params)
			if q < 0 {
				return // malformed weight: ignore the element
			}
			switch {
			case len(name) == 1 && name[0] == '*':
				ae.star = q
			case httpx.EqualFold(name, "br"):
				ae.q[codingBr] = q
			case httpx.EqualFold(name, "zstd"):
				ae.q[codingZstd] = q
			case httpx.EqualFold(name, "gzip"), httpx.EqualFold(name, "x-gzip"):
				ae.q[codingGzip] = q
			case httpx.EqualFold(name, "identity"):
				ae.q[codingIdentity] = q
			}
		})
	}
	return ae
}

// weight is the q (× 1000) the request gives coding c (RFC 9110 §12.5.3):
// its own weight, else the weight of "*", else 0 (not acceptable). So a
// request without Accept-Encoding gets identity: RFC 9110 would allow any
// coding, but clients that send none (curl, scripts) expect plain bytes.
func (ae *acceptEncoding) weight(c int) int {
	if ae.q[c] >= 0 {
		return ae.q[c]
	}
	if ae.star >= 0 {
		return ae.star
	}
	return 0
}

// choose returns the coding to send among those available (bit c of
// have set when coding c has a sidecar): the highest weight, the server's
// preference on ties; identity unless the client weighs a coding higher
// than identity's explicit weight.
func (ae *acceptEncoding) choose(have uint8) int {
	best, bestQ := codingIdentity, 0
	for c := codingBr; c < numCodings; c++ {
		if have&(1<<c) == 0 {
			continue
		}
		if q := ae.weight(c); q > bestQ {
			best, bestQ = c, q
		}
	}
	if best != codingIdentity && ae.q[codingIdentity] > bestQ {
		return codingIdentity
	}
	return best
}

// qvalue parses the parameters after a coding: ";q=0.5" gives 500, none
// gives 1000; -1 when malformed. Other parameters are ignored.
func qvalue(params []byte) int {
	q := 1000
	for len(params) > 0 {
		var p []byte
		p, params = splitSemicolon(params)
		p = httpx.TrimOWS(p)
		if len(p) < 2 || p[0]|0x20 != 'q' || p[1] != '=' {
			continue
		}
		n, ok := httpx.ParseQ(httpx.TrimOWS(p[2:]))
		if !ok {
			return -1
		}
		q = n
	}
	return q
}

func splitSemicolon(b []byte) (before, after []byte) {
	for i, c := range b {
		if c == ';' {
			return b[:i], b[i+1:]
		}
	}
	return b, nil
}
