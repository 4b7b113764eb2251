package httpx

import (
	"bytes"

	"github.com/krait-server/krait/internal/exchange"
)

// Byte classes, indexed by byte value; written only by init.
var (
	tchar   [256]bool // RFC 9110 §5.6.2 token characters
	valueOK [256]bool // RFC 9110 §5.5 field-value bytes: VCHAR, SP, HTAB, obs-text
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
		tchar[c] = alnum || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0
		valueOK[c] = b == '\t' || b >= 0x20 && b != 0x7f
	}
}

// IsTChar reports whether c may appear in a token (RFC 9110 §5.6.2), such
// as a method or a field name.
func IsTChar(c byte) bool { return tchar[c] }

// IsFieldValueChar reports whether c may appear in a field value (RFC 9110
// §5.5): VCHAR, SP, HTAB and obs-text, not NUL, CR, LF, other controls or
// DEL.
func IsFieldValueChar(c byte) bool { return valueOK[c] }

// ValidToken reports whether b is a non-empty token: a valid field name.
func ValidToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether every byte of v may appear in a field
// value (IsFieldValueChar). It does not trim: callers strip OWS first.
func ValidFieldValue(v []byte) bool {
	for _, c := range v {
		if !valueOK[c] {
			return false
		}
	}
	return true
}

// SafeValue reports whether v holds none of CR, LF and NUL, the bytes that
// would end or split a header line. It is the check applied to values an
// application sets, which may carry other controls as gunicorn allows.
func SafeValue(v []byte) bool {
	for _, c := range v {
		if c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// Lower returns c lower-cased if it is an ASCII upper-case letter.
func Lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

// EqualFold reports whether b and s are equal under ASCII case folding.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		// Names are mostly compared with their own spelling: equal bytes
		// need no folding.
		if x, y := b[i], s[i]; x != y && Lower(x) != Lower(y) {
			return false
		}
	}
	return true
}

// EqualFoldBytes is EqualFold for two byte slices (two field names).
func EqualFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if Lower(a[i]) != Lower(b[i]) {
			return false
		}
	}
	return true
}

// TrimOWS removes optional whitespace (SP, HTAB) from both ends of v.
func TrimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// ForEachElement calls f on each non-empty, OWS-trimmed element of a
// comma-separated list (RFC 9110 §5.6.1): "a, ,b" has the elements "a" and
// "b".
func ForEachElement(v []byte, f func([]byte)) {
	for len(v) > 0 {
		var e []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			e, v = v[:i], v[i+1:]
		} else {
			e, v = v, nil
		}
		if e = TrimOWS(e); len(e) > 0 {
			f(e)
		}
	}
}

// HasToken reports whether any field of hs named name (case-insensitive)
// lists token (case-insensitive) among its comma-separated elements, as
// "Connection: keep-alive, Upgrade" lists "upgrade".
func HasToken(hs []exchange.Header, name, token string) bool {
	found := false
	for i := range hs {
		if EqualFold(hs[i].Name, name) {
			ForEachElement(hs[i].Value, func(e []byte) {
				if EqualFold(e, token) {
					found = true
				}
			})
		}
	}
	return found
}

// HopByHop reports whether name is a connection-specific field an
// application may not set on a response (RFC 9110 §7.6.1): Connection,
// Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade, TE and
// Trailer. The server that owns the connection writes them.
func HopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return EqualFold(name, "te")
	case 7:
		return EqualFold(name, "upgrade") || EqualFold(name, "trailer")
	case 10:
		return EqualFold(name, "connection") || EqualFold(name, "keep-alive")
	case 16:
		return EqualFold(name, "proxy-connection")
	case 17:
		return EqualFold(name, "transfer-encoding")
	}
	return false
}

// ParseContentLength parses a Content-Length value: 1*DIGIT only, no sign,
// spaces, lists or separators, and at most 18 digits so it cannot overflow
// an int64.
func ParseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// ParseQ parses a qvalue, the weight of an Accept or Accept-Encoding
// element (RFC 9110 §12.4.2), into thousandths:
//
//	qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
//
// "0.5" is 500, "1" and "1.000" are 1000. ok is false for anything else
// ("1.5", "0.0001", ".5", " 1"); callers decide whether a malformed weight
// drops the element or counts as 0. b must already be free of OWS.
func ParseQ(b []byte) (q int, ok bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] != '0' && b[0] != '1') {
		return 0, false
	}
	q = int(b[0]-'0') * 1000
	if len(b) == 1 {
		return q, true
	}
	if b[1] != '.' {
		return 0, false
	}
	scale := 100
	for _, c := range b[2:] {
		if c < '0' || c > '9' {
			return 0, false
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	if q > 1000 {
		return 0, false // "1.5": only zeros may follow a 1
	}
	return q, true
}

// WriteError answers with status, headers and a short plain-text body of
// an exact length. A failed write is left to the engine: the connection
// is then closed.
func WriteError(w exchange.ResponseWriter, status int, headers []exchange.Header, body []byte) {
	if err := w.WriteHeader(status, nil, headers, int64(len(body))); err != nil {
		return
	}
	_, _ = w.Write(body)
}
