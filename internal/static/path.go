package static

import "bytes"

// Path handling. The router hands over the raw, still percent-encoded
// request path (it never decodes: see internal/route). cleanPath decodes it
// exactly once, segment by segment, and refuses anything that could name a
// file other than the one the segments spell below the root: the checks
// run on the decoded bytes, so an encoded spelling ("%2e%2e", "%2F",
// "%5C", "%00") is refused like the plain one. os.Root then contains
// whatever symlinks the remaining path crosses.

// pathStatus says why a path was refused.
type pathStatus uint8

const (
	pathOK       pathStatus = iota
	pathNotFound            // a name that exists nowhere below the root (dotfile, "..", a directory form): 404
	pathBad                 // a malformed percent escape: 400
)

// wellKnown is the one dot-directory served (RFC 8615 /.well-known/,
// for ACME challenges, security.txt, ...), and only as the first segment
// below the mount, where it sits at the origin's root when the mount is
// "/".
const wellKnown = ".well-known"

// cleanPath appends to dst the file name rel (relative to the root,
// segments joined by '/') that the raw path names, and reports whether it
// may be served. raw is the request path after the mount prefix: "" or
// starting with '/'.
//
// Refused (404): empty segments ("//", a trailing '/': no directory is ever
// listed or indexed), "." and "..", any segment starting with '.' except a
// leading ".well-known", and segments whose decoded bytes contain '/',
// '\\', NUL or another control byte. A bad escape ("%zz", "%4") is 400.
func cleanPath(dst, raw []byte) ([]byte, pathStatus) {
	if len(raw) == 0 || raw[0] != '/' {
		return dst, pathNotFound
	}
	raw = raw[1:]
	first := true
	for {
		end := bytes.IndexByte(raw, '/')
		seg := raw
		if end >= 0 {
			seg = raw[:end]
		}
		if len(seg) == 0 {
			return dst, pathNotFound
		}
		if !first {
			dst = append(dst, '/')
		}
		start := len(dst)
		for i := 0; i < len(seg); i++ {
			c := seg[i]
			if c == '%' {
				if i+2 >= len(seg) {
					return dst, pathBad
				}
				hi, ok1 := unhex(seg[i+1])
				lo, ok2 := unhex(seg[i+2])
				if !ok1 || !ok2 {
					return dst, pathBad
				}
				c = hi<<4 | lo
				i += 2
			}
			// '/' here came from "%2F": it would split a segment the
			// router and the app saw as one.
			if c == '/' || c == '\\' || c < 0x20 || c == 0x7f {
				return dst, pathNotFound
			}
			dst = append(dst, c)
		}
		name := dst[start:]
		if name[0] == '.' && !(first && string(name) == wellKnown) {
			// ".", "..", and dotfiles (.env, .git/...).
			return dst, pathNotFound
		}
		if end < 0 {
			return dst, pathOK
		}
		raw = raw[end+1:]
		first = false
	}
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
