package static

import "github.com/krait-server/krait/internal/exchange"

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
		if !equalFold(h.Name, "accept-encoding") {
			continue
		}
		v := h.Value
		for len(v) > 0 {
			var elem []byte
			if j := indexComma(v); j >= 0 {
				elem, v = v[:j], v[j+1:]
			} else {
				elem, v = v, nil
			}
			name, params := splitSemicolon(elem)
			name = trimOWS(name)
			if len(name) == 0 {
				continue
			}
			q := qvalue(params)
			if q < 0 {
				continue // malformed weight: ignore the element
			}
			switch {
			case len(name) == 1 && name[0] == '*':
				ae.star = q
			case equalFold(name, "br"):
				ae.q[codingBr] = q
			case equalFold(name, "zstd"):
				ae.q[codingZstd] = q
			case equalFold(name, "gzip"), equalFold(name, "x-gzip"):
				ae.q[codingGzip] = q
			case equalFold(name, "identity"):
				ae.q[codingIdentity] = q
			}
		}
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
		p = trimOWS(p)
		if len(p) < 2 || p[0]|0x20 != 'q' || p[1] != '=' {
			continue
		}
		v := trimOWS(p[2:])
		// qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
		if len(v) == 0 || v[0] != '0' && v[0] != '1' || len(v) > 5 {
			return -1
		}
		n := int(v[0]-'0') * 1000
		if len(v) > 1 {
			if v[1] != '.' {
				return -1
			}
			scale := 100
			for _, d := range v[2:] {
				if d < '0' || d > '9' {
					return -1
				}
				n += int(d-'0') * scale
				scale /= 10
			}
		}
		if n > 1000 {
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

func indexComma(b []byte) int {
	for i, c := range b {
		if c == ',' {
			return i
		}
	}
	return -1
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// equalFold reports whether b equals the lower-case ASCII string s,
// ignoring ASCII case in b.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
