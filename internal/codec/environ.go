package codec

import (
	"bytes"
	"strconv"
	"strings"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/version"
	"github.com/krait-server/krait/internal/wire"
)

// serverSoftware is the environ's SERVER_SOFTWARE (RFC 3875 §4.1.17,
// "name/version"), computed once: it is the same for every request.
var serverSoftware = "krait/" + version.String()

// The environ's constant keys, and the pairs that never change, encoded
// once: appending them is a copy, where wire.AppendStr would scan each
// one again for every request.
var (
	keyRequestMethod  = wire.AppendStr(nil, "REQUEST_METHOD")
	keyPathInfo       = wire.AppendStr(nil, "PATH_INFO")
	keyQueryString    = wire.AppendStr(nil, "QUERY_STRING")
	keyRawURI         = wire.AppendStr(nil, "RAW_URI")
	keyRequestURI     = wire.AppendStr(nil, "REQUEST_URI")
	keyServerProtocol = wire.AppendStr(nil, "SERVER_PROTOCOL")
	keyURLScheme      = wire.AppendStr(nil, "wsgi.url_scheme")
	keyRemoteAddr     = wire.AppendStr(nil, "REMOTE_ADDR")
	keyRemotePort     = wire.AppendStr(nil, "REMOTE_PORT")
	keyServerName     = wire.AppendStr(nil, "SERVER_NAME")
	keyServerPort     = wire.AppendStr(nil, "SERVER_PORT")
	// SCRIPT_NAME is always "" (krait mounts the app at the root);
	// SERVER_SOFTWARE is the same for every request.
	pairScriptName     = wire.AppendStrPair(nil, "SCRIPT_NAME", "")
	pairServerSoftware = wire.AppendStrPair(nil, "SERVER_SOFTWARE", serverSoftware)
)

// AppendEnviron appends the marshal dict of the WSGI environ strings for r
// (docs/protocol.md). scratch is reusable working memory; the returned
// scratch may have grown.
func AppendEnviron(b []byte, r *exchange.Request, scratch []byte) ([]byte, []byte) {
	b = wire.AppendDictStart(b)
	b = wire.AppendStr(append(b, keyRequestMethod...), r.Method)
	b = append(b, pairScriptName...)
	scratch = unescapePath(scratch[:0], requestPath(r.Path))
	b = wire.AppendStr(append(b, keyPathInfo...), scratch)
	b = wire.AppendStr(append(b, keyQueryString...), r.Query)
	b = wire.AppendStr(append(b, keyRawURI...), r.Target)
	b = wire.AppendStr(append(b, keyRequestURI...), r.Target)
	_, proto := httpVersion(r)
	b = wire.AppendStr(append(b, keyServerProtocol...), proto)
	b = append(b, pairServerSoftware...)
	scheme := schemeOf(r)
	b = wire.AppendStr(append(b, keyURLScheme...), scheme)

	var num [20]byte
	b = wire.AppendStr(append(b, keyRemoteAddr...), r.RemoteAddr)
	if r.RemoteAddr != "" || r.RemotePort != 0 {
		b = wire.AppendStr(append(b, keyRemotePort...), strconv.AppendInt(num[:0], int64(r.RemotePort), 10))
	} else {
		b = wire.AppendStr(append(b, keyRemotePort...), "")
	}

	// SERVER_NAME/SERVER_PORT: the Host header's host and port (IPv6
	// literals keep their brackets, so name:port stays a valid
	// authority), else the local address, else "localhost"; the port
	// defaults to the scheme's.
	name, port := splitHost(r.Host)
	if len(name) == 0 {
		switch {
		case strings.IndexByte(r.LocalAddr, ':') >= 0:
			b = append(b, keyServerName...)
			scratch = append(append(append(scratch[:0], '['), r.LocalAddr...), ']')
			b = wire.AppendStr(b, scratch)
		case r.LocalAddr != "":
			b = wire.AppendStr(append(b, keyServerName...), r.LocalAddr)
		default:
			b = wire.AppendStr(append(b, keyServerName...), "localhost")
		}
		if r.LocalPort != 0 {
			port = strconv.AppendInt(num[:0], int64(r.LocalPort), 10)
		}
	} else {
		b = wire.AppendStr(append(b, keyServerName...), name)
	}
	if len(port) == 0 {
		if scheme == "https" {
			port = []byte("443")
		} else {
			port = []byte("80")
		}
	}
	b = wire.AppendStr(append(b, keyServerPort...), port)

	if r.ContentLength > 0 {
		b = wire.AppendStrPair(b, "CONTENT_LENGTH", strconv.AppendInt(num[:0], r.ContentLength, 10))
	}
	hs := r.Headers
	for i := range hs {
		h := &hs[i]
		n := h.Name
		if len(n) == 0 || bytes.IndexByte(n, '_') >= 0 {
			// CGI cannot tell X-Foo from X_Foo: drop the ambiguous form,
			// as gunicorn and nginx do, so it cannot spoof the other.
			continue
		}
		if seenBefore(hs, i) {
			continue
		}
		switch {
		case httpx.EqualFold(n, "Content-Type"):
			b = wire.AppendStrPair(b, "CONTENT_TYPE", h.Value)
			continue
		case httpx.EqualFold(n, "Content-Length"):
			if r.ContentLength <= 0 {
				// A declared length the engine did not count as a body
				// ("0"), passed on as sent.
				b = wire.AppendStrPair(b, "CONTENT_LENGTH", h.Value)
			}
			continue
		}
		b = appendHeaderKey(b, n)
		if next := nextSame(hs, i); next < 0 {
			b = wire.AppendStr(b, h.Value)
		} else {
			sep := ", "
			if httpx.EqualFold(n, "Cookie") {
				sep = "; "
			}
			scratch = append(scratch[:0], h.Value...)
			for j := next; j < len(hs); j++ {
				if httpx.EqualFoldBytes(hs[j].Name, n) {
					scratch = append(append(scratch, sep...), hs[j].Value...)
				}
			}
			b = wire.AppendStr(b, scratch)
		}
	}
	return wire.AppendDictEnd(b), scratch
}

// requestPath strips the scheme and authority of an absolute-form target.
func requestPath(p []byte) []byte {
	if len(p) > 0 && p[0] == '/' {
		return p
	}
	if i := bytes.Index(p, []byte("://")); i > 0 {
		rest := p[i+3:]
		if j := bytes.IndexByte(rest, '/'); j >= 0 {
			return rest[j:]
		}
		return []byte("/")
	}
	return p
}

// appendHeaderKey appends "HTTP_" + the name upper-cased with '-' as '_',
// as a marshal ASCII str.
func appendHeaderKey(b []byte, name []byte) []byte {
	n := len(name) + 5
	if n < 256 {
		b = append(b, 'z', byte(n))
	} else {
		b = append(b, 'a', byte(n), byte(n>>8), byte(n>>16), byte(n>>24))
	}
	b = append(b, "HTTP_"...)
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		case c == '-':
			c = '_'
		case c >= 0x80:
			c = '?' // not a token; the engine should have refused it
		}
		b = append(b, c)
	}
	return b
}

func seenBefore(hs []exchange.Header, i int) bool {
	for j := 0; j < i; j++ {
		if httpx.EqualFoldBytes(hs[j].Name, hs[i].Name) {
			return true
		}
	}
	return false
}

func nextSame(hs []exchange.Header, i int) int {
	for j := i + 1; j < len(hs); j++ {
		if httpx.EqualFoldBytes(hs[j].Name, hs[i].Name) {
			return j
		}
	}
	return -1
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// unescapePath percent-decodes p; an invalid escape stays as it is.
func unescapePath(dst, p []byte) []byte {
	if bytes.IndexByte(p, '%') < 0 {
		return append(dst, p...)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '%' && i+2 < len(p) {
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if ok1 && ok2 {
				dst = append(dst, hi<<4|lo)
				i += 2
				continue
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// splitHost splits a Host value into host and port ("" when absent).
func splitHost(h []byte) (name, port []byte) {
	if len(h) == 0 {
		return nil, nil
	}
	if h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 0 {
			return h, nil
		}
		name, rest := h[:end+1], h[end+1:]
		if len(rest) > 1 && rest[0] == ':' {
			return name, rest[1:]
		}
		return name, nil
	}
	if i := bytes.LastIndexByte(h, ':'); i >= 0 {
		return h[:i], h[i+1:]
	}
	return h, nil
}

// httpVersion is r's HTTP version as the scope's http_version and as
// the environ's SERVER_PROTOCOL: 1.0, else 1.1.
func httpVersion(r *exchange.Request) (version, protocol string) {
	if r.ProtoMajor == 1 && r.ProtoMinor == 0 {
		return "1.0", "HTTP/1.0"
	}
	if r.ProtoMajor == 2 {
		return "2", "HTTP/2"
	}
	return "1.1", "HTTP/1.1"
}

// schemeOf is r's scheme, "http" when the engine left it unset.
func schemeOf(r *exchange.Request) string {
	if r.Scheme == "" {
		return "http"
	}
	return r.Scheme
}
