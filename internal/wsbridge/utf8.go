package wsbridge

import "unicode/utf8"

// utf8Checker validates a text message given in pieces: up to
// utf8.UTFMax-1 bytes of a code point cut by a piece boundary are carried
// to the next piece.
type utf8Checker struct {
	carry [utf8.UTFMax]byte
	n     int
}

func (u *utf8Checker) reset() { u.n = 0 }

// check reports whether p, following the pieces checked since reset, is
// still valid UTF-8; last says p ends the message (nothing may be carried).
func (u *utf8Checker) check(p []byte, last bool) bool {
	if u.n > 0 {
		// Complete the carried code point with the first bytes of p.
		for u.n < utf8.UTFMax && len(p) > 0 && !utf8.FullRune(u.carry[:u.n]) {
			u.carry[u.n] = p[0]
			u.n++
			p = p[1:]
		}
		if !utf8.FullRune(u.carry[:u.n]) {
			return !last // p ran out: still incomplete
		}
		if !utf8.Valid(u.carry[:u.n]) {
			return false
		}
		u.n = 0
	}
	cut := len(p)
	if !last {
		// Hold back an incomplete code point at the end of p.
		for i := len(p) - 1; i >= 0 && i >= len(p)-(utf8.UTFMax-1); i-- {
			if utf8.RuneStart(p[i]) {
				if !utf8.FullRune(p[i:]) {
					cut = i
				}
				break
			}
		}
	}
	if !utf8.Valid(p[:cut]) {
		return false
	}
	u.n = copy(u.carry[:], p[cut:])
	return true
}
