package errpage

import (
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// Specificity of the media range that matched a kind (RFC 9110 §12.5.1:
// the most specific reference has precedence).
const (
	specNone  int8 = iota
	specAny        // */*
	specType       // text/*
	specExact      // text/html, application/json, */*+json
)

// match is the best range seen for one kind.
type match struct {
	spec  int8
	q     int16 // thousandths
	index int16 // position of the range in the Accept list
}

// Negotiate chooses the kind of page for a request with headers hs from
// its Accept fields (see the package documentation). Allocation-free.
func Negotiate(hs []exchange.Header) Kind {
	var m [numKinds]match
	index := 0
	for i := range hs {
		if !httpx.EqualFold(hs[i].Name, "accept") {
			continue
		}
		httpx.ForEachElement(hs[i].Value, func(e []byte) {
			consider(&m, e, index)
			if index < 1<<14 {
				index++
			}
		})
	}
	best := Text
	for k := Text; k < numKinds; k++ {
		if better(m[k], m[best]) {
			best = k
		}
	}
	if m[best].spec == specNone || m[best].q == 0 {
		return Text
	}
	return best
}

// better reports whether a beats b: higher q, then more specific, then
// listed earlier. Ties keep b (the kind earlier in Text, HTML, JSON).
func better(a, b match) bool {
	if a.spec == specNone || a.q == 0 {
		return false
	}
	if b.spec == specNone || b.q == 0 {
		return true
	}
	if a.q != b.q {
		return a.q > b.q
	}
	if a.spec != b.spec {
		return a.spec > b.spec
	}
	return a.index < b.index
}

// consider applies one media range ("type/subtype;params") to m.
func consider(m *[numKinds]match, e []byte, index int) {
	semi := len(e)
	for i, c := range e {
		if c == ';' {
			semi = i
			break
		}
	}
	mr := httpx.TrimOWS(e[:semi])
	slash := -1
	for i, c := range mr {
		if c == '/' {
			slash = i
			break
		}
	}
	if slash <= 0 || slash == len(mr)-1 {
		return
	}
	typ, sub := mr[:slash], mr[slash+1:]
	q, ok := qOf(e[semi:])
	if !ok {
		return
	}
	for k := Text; k < numKinds; k++ {
		s := specOf(k, typ, sub)
		if s == specNone {
			continue
		}
		cur := &m[k]
		switch {
		case s > cur.spec:
			*cur = match{spec: s, q: q, index: int16(index)}
		case s == cur.spec && q > cur.q:
			cur.q, cur.index = q, int16(index)
		}
	}
}

// specOf says how specifically the range typ/sub matches kind k.
func specOf(k Kind, typ, sub []byte) int8 {
	if len(typ) == 1 && typ[0] == '*' {
		if len(sub) == 1 && sub[0] == '*' {
			return specAny
		}
		if k == JSON && hasJSONSuffix(sub) {
			return specExact // */*+json
		}
		return specNone
	}
	switch k {
	case Text, HTML:
		if !httpx.EqualFold(typ, "text") {
			return specNone
		}
		if len(sub) == 1 && sub[0] == '*' {
			return specType
		}
		if k == Text && httpx.EqualFold(sub, "plain") || k == HTML && httpx.EqualFold(sub, "html") {
			return specExact
		}
	case JSON:
		if httpx.EqualFold(typ, "application") && (httpx.EqualFold(sub, "json") || len(sub) == 1 && sub[0] == '*') {
			if sub[0] == '*' {
				return specType
			}
			return specExact
		}
		if hasJSONSuffix(sub) {
			return specExact // application/problem+json, application/vnd.api+json
		}
	}
	return specNone
}

func hasJSONSuffix(sub []byte) bool {
	return len(sub) > 5 && httpx.EqualFold(sub[len(sub)-5:], "+json")
}

// qOf finds the q parameter in params (";a=b;q=0.5", whitespace allowed
// around ';' and '='): 1000 when absent; ok is false when it is malformed.
func qOf(params []byte) (q int16, ok bool) {
	q = 1000
	for len(params) > 0 {
		params = params[1:] // ';'
		j := 0
		for j < len(params) && params[j] != ';' {
			j++
		}
		p := httpx.TrimOWS(params[:j])
		params = params[j:]
		eq := -1
		for i, c := range p {
			if c == '=' {
				eq = i
				break
			}
		}
		if eq < 0 || !httpx.EqualFold(httpx.TrimOWS(p[:eq]), "q") {
			continue
		}
		w, good := httpx.ParseQ(httpx.TrimOWS(p[eq+1:]))
		if !good {
			return 0, false
		}
		q = int16(w)
	}
	return q, true
}
