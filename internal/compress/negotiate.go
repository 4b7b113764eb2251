package compress

import (
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

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
		if len(h.Name) != len("accept-encoding") || !httpx.EqualFold(h.Name, "accept-encoding") {
			continue
		}
		found = true
		httpx.ForEachElement(h.Value, func(e []byte) {
			name, w := splitWeight(e)
			slot := slots
			switch {
			case len(name) == 1 && name[0] == '*':
				slot = slotAny
			case httpx.EqualFold(name, "identity"):
				slot = slotID
			case httpx.EqualFold(name, "x-gzip"):
				slot = gzipC
			default:
				for c := zstdC; c < numCodings; c++ {
					if httpx.EqualFold(name, codingNames[c]) {
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
	name := httpx.TrimOWS(e[:i])
	w := int16(qMax)
	for i < len(e) {
		i++ // ';'
		j := i
		for j < len(e) && e[j] != ';' {
			j++
		}
		p := httpx.TrimOWS(e[i:j])
		if len(p) >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=' {
			// A malformed weight counts as 0: the coding is excluded.
			q, _ := httpx.ParseQ(p[2:])
			w = int16(q)
		}
		i = j
	}
	return name, w
}

// hasSuffixFold reports whether b ends with the lower-case string s,
// ignoring ASCII case in b.
func hasSuffixFold(b []byte, s string) bool {
	return len(b) >= len(s) && httpx.EqualFold(b[len(b)-len(s):], s)
}
