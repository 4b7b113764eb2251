package compress

import "github.com/krait-server/krait/internal/exchange"

// coding is a content coding krait can apply; none means identity.
type coding uint8

const (
	none coding = iota
	zstdC
	brotliC
	gzipC
	numCodings
)

// codingNames are the Content-Encoding values, indexed by coding; names
// the same as field values.
var (
	codingNames = [numCodings]string{zstdC: Zstd, brotliC: Brotli, gzipC: Gzip}
	names       = [numCodings][]byte{zstdC: []byte(Zstd), brotliC: []byte(Brotli), gzipC: []byte(Gzip)}
)

func (c coding) String() string {
	if c == none {
		return "identity"
	}
	return codingNames[c]
}

func codingByName(s string) coding {
	for c := zstdC; c < numCodings; c++ {
		if codingNames[c] == s {
			return c
		}
	}
	return none
}

// Weights are in thousandths (qvalue has at most three decimals); unset
// means the coding was not listed.
const (
	unset   = -1
	qMax    = 1000
	slotID  = numCodings     // "identity"
	slotAny = numCodings + 1 // "*"
	slots   = numCodings + 2
)

// negotiate picks the coding for a request with these header fields,
// following RFC 9110 §12.5.3:
//
//   - No Accept-Encoding, or an empty one: identity (the RFC allows any
//     coding then, but clients that send nothing rarely decode anything).
//   - Names are case-insensitive; "x-gzip" is gzip (§8.4.1.3); several
//     Accept-Encoding fields are one list; a coding listed twice counts
//     with its lowest weight.
//   - q=0 excludes a coding; "*" weighs every coding not listed, identity
//     included; a malformed weight counts as q=0.
//   - The highest weight wins; among equal weights, the first in prefs.
//   - Identity wins when its weight (explicit, or that of "*") is higher
//     than the best coding's. Unlisted, it ranks below every coding the
//     client listed with q>0: a client that names a coding wants it.
func negotiate(headers []exchange.Header, prefs []coding) coding {
	var q [slots]int16
	for i := range q {
		q[i] = unset
	}
	found := false
	for i := range headers {
		h := &headers[i]
		if len(h.Name) != len("accept-encoding") || !equalFold(h.Name, "accept-encoding") {
			continue
		}
		found = true
		forEachElement(h.Value, func(e []byte) {
			name, w := splitWeight(e)
			slot := slots
			switch {
			case len(name) == 1 && name[0] == '*':
				slot = slotAny
			case equalFold(name, "identity"):
				slot = slotID
			case equalFold(name, "x-gzip"):
				slot = gzipC
			default:
				for c := zstdC; c < numCodings; c++ {
					if equalFold(name, codingNames[c]) {
						slot = c
						break
					}
				}
			}
			if slot < slots && (q[slot] == unset || w < q[slot]) {
				q[slot] = w
			}
		})
	}
	if !found {
		return none
	}
	best, bestQ := none, int16(0)
	for _, c := range prefs {
		w := q[c]
		if w == unset {
			w = q[slotAny]
		}
		if w > bestQ {
			best, bestQ = c, w
		}
	}
	if best == none {
		return none
	}
	id := q[slotID]
	if id == unset {
		id = q[slotAny]
	}
	if id > bestQ {
		return none
	}
	return best
}

// splitWeight splits one list element, "name" or "name;q=0.5" (with
// optional whitespace around ';'), into the name and its weight in
// thousandths. Parameters other than q are ignored.
func splitWeight(e []byte) ([]byte, int16) {
	i := 0
	for i < len(e) && e[i] != ';' {
		i++
	}
	name := trimOWS(e[:i])
	w := int16(qMax)
	for i < len(e) {
		i++ // ';'
		j := i
		for j < len(e) && e[j] != ';' {
			j++
		}
		p := trimOWS(e[i:j])
		if len(p) >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' {
			w = parseQ(p[2:])
		}
		i = j
	}
	return name, w
}

// parseQ parses a qvalue ("0", "0.5", "1.000"); a malformed one is 0.
func parseQ(b []byte) int16 {
	if len(b) == 0 || len(b) > 5 || (b[0] != '0' && b[0] != '1') {
		return 0
	}
	w := int16(b[0]-'0') * qMax
	if len(b) == 1 {
		return w
	}
	if b[1] != '.' {
		return 0
	}
	scale := int16(100)
	for _, ch := range b[2:] {
		if ch < '0' || ch > '9' {
			return 0
		}
		w += int16(ch-'0') * scale
		scale /= 10
	}
	if w > qMax {
		return 0 // "1.5"
	}
	return w
}

// forEachElement calls fn for each non-empty element of a comma-separated
// list, without surrounding whitespace.
func forEachElement(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		if e := trimOWS(v[:i]); len(e) > 0 {
			fn(e)
		}
		if i == len(v) {
			return
		}
		v = v[i+1:]
	}
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
	for i := 0; i < len(b); i++ {
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

// hasSuffixFold reports whether b ends with the lower-case string s,
// ignoring ASCII case in b.
func hasSuffixFold(b []byte, s string) bool {
	return len(b) >= len(s) && equalFold(b[len(b)-len(s):], s)
}
