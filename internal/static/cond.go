package static

import (
	"net/http"
	"time"
)

// Conditional requests (RFC 9110 §13). Validators are strong: the ETag is
// built from the representation's modification time and size (and coding),
// like nginx's, and Last-Modified is its mtime.

// etagListMatch reports whether the If-Match/If-None-Match list v matches
// etag (a quoted strong tag, `"..."`): "*" matches any current
// representation. weak selects weak comparison (If-None-Match: W/"x"
// matches "x"); strong comparison (If-Match) never matches a weak tag.
func etagListMatch(v, etag []byte, weak bool) bool {
	for {
		// Skip separators.
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t' || v[0] == ',') {
			v = v[1:]
		}
		if len(v) == 0 {
			return false
		}
		if v[0] == '*' {
			return true
		}
		isWeak := false
		if len(v) >= 2 && v[0] == 'W' && v[1] == '/' {
			isWeak = true
			v = v[2:]
		}
		if len(v) == 0 || v[0] != '"' {
			return false // malformed: stop at what cannot be parsed
		}
		end := -1
		for i := 1; i < len(v); i++ {
			if v[i] == '"' {
				end = i
				break
			}
		}
		if end < 0 {
			return false
		}
		tag := v[:end+1]
		v = v[end+1:]
		if (weak || !isWeak) && string(tag) == string(etag) {
			return true
		}
	}
}

// dateCmp compares the HTTP date v with the representation's
// Last-Modified (lastMod formatted, mod the time): -1, 0 or 1 as mod is
// before, equal to or after v; ok is false when v is not a valid date.
// The common case, a client echoing the Last-Modified it got, is a byte
// comparison and does not allocate.
func dateCmp(v, lastMod []byte, mod time.Time) (cmp int, ok bool) {
	if string(v) == string(lastMod) {
		return 0, true
	}
	t, err := http.ParseTime(string(v))
	if err != nil {
		return 0, false
	}
	m := mod.Truncate(time.Second) // HTTP dates have one-second resolution
	switch {
	case m.Before(t):
		return -1, true
	case m.After(t):
		return 1, true
	}
	return 0, true
}
