package h1

import (
	"bytes"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// protoError is a request the engine refuses: status is what the client gets.
type protoError struct {
	status int
	msg    string
}

func (e *protoError) Error() string { return e.msg }

// The parse errors. They are values, not formatted per request, so rejecting
// garbage costs no allocation.
var (
	errBareLF         = &protoError{400, "line not terminated by CRLF"}
	errRequestLine    = &protoError{400, "malformed request line"}
	errMethod         = &protoError{400, "invalid method"}
	errTarget         = &protoError{400, "invalid request target"}
	errVersion        = &protoError{400, "malformed HTTP version"}
	errVersionSupport = &protoError{505, "HTTP version not supported"}
	errLineTooLong    = &protoError{414, "request line too long"}
	errFieldTooLong   = &protoError{431, "header field too large"}
	errTooManyFields  = &protoError{431, "too many header fields"}
	errObsFold        = &protoError{400, "obsolete line folding"}
	errFieldName      = &protoError{400, "invalid header field name"}
	errFieldValue     = &protoError{400, "invalid header field value"}
	errNoHost         = &protoError{400, "missing Host header"}
	errDupHost        = &protoError{400, "multiple Host headers"}
	errDupField       = &protoError{400, "repeated singleton header field"}
	errContentLength  = &protoError{400, "invalid Content-Length"}
	errDupLength      = &protoError{400, "multiple Content-Length headers"}
	errTEAndCL        = &protoError{400, "both Transfer-Encoding and Content-Length"}
	errTENotChunked   = &protoError{400, "chunked is not the final transfer coding"}
	errTEHTTP10       = &protoError{400, "Transfer-Encoding in an HTTP/1.0 request"}
	errTEUnknown      = &protoError{501, "unsupported transfer coding"}
	errExpect         = &protoError{417, "unsupported expectation"}
	errChunkSize      = &protoError{400, "invalid chunk size"}
	errChunkExt       = &protoError{400, "invalid chunk extension"}
	errChunkCRLF      = &protoError{400, "chunk data not followed by CRLF"}
	errChunkLine      = &protoError{400, "chunk size line too long"}
	errTrailerField   = &protoError{400, "forbidden trailer field"}
	errHeadTooLarge   = &protoError{431, "request header section too large"}
	errHeadMemory     = &protoError{503, "server busy: too many large request heads"}
)

// maxMethod is the longest method accepted. The longest registered method
// (UPDATEREDIRECTREF, RFC 3253) has 17 bytes; 32 leaves room for private
// extensions while refusing the kilobytes-long "methods" of probes, which
// would otherwise reach the application and its logs.
const maxMethod = 32

// limits are the size limits a head (or a trailer section) must respect.
type limits struct {
	reqLine   int // bytes of the request line, CRLF excluded
	fields    int // number of header fields
	fieldSize int // bytes of one header line, CRLF included (gunicorn's measure)
	head      int // bytes of the whole head, final CRLF included; 0: no limit
}

// Byte classes, indexed by byte value (tokens and field values:
// internal/httpx).
var (
	targetOK [256]bool // request-target bytes: VCHAR
	regName  [256]bool // RFC 3986 unreserved / sub-delims / '%' (reg-name, userinfo)
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
		// RFC 9112 §3.2 builds request-target from RFC 3986 characters,
		// which are all VCHAR: no CTLs, SP, DEL or bytes >= 0x80 (raw
		// UTF-8 must be percent-encoded). VCHARs outside RFC 3986 ("<>\^`{|}
		// and '#') are tolerated, as h11, net/http and nginx do: real
		// clients send them unencoded.
		targetOK[c] = b > 0x20 && b < 0x7f
		regName[c] = alnum || bytes.IndexByte([]byte("-._~!$&'()*+,;=%"), b) >= 0
	}
}

// headScan finds the end of a request head (or trailer section) as bytes
// arrive, enforcing the line limits before the whole head is buffered so an
// oversized head is refused without buffering it. It is resumable: pos and
// lines carry over between calls on a growing buffer.
type headScan struct {
	pos   int // start of the first line not yet complete, relative to the head start
	lines int // complete lines so far (the request line counts as one)
}

// scan looks at b (the bytes received so far, starting at the request line)
// and returns the length of the head including the final empty line, or 0
// when more bytes are needed.
func (s *headScan) scan(b []byte, lim *limits) (int, *protoError) {
	for {
		i := bytes.IndexByte(b[s.pos:], '\n')
		if i < 0 {
			// The longest partial line that can still fit: the limit's
			// worth of bytes, plus its CR when that has arrived.
			partial := len(b) - s.pos
			limit := lim.fieldSize - 2
			if s.lines == 0 {
				limit = lim.reqLine
			}
			if partial > limit && !(partial == limit+1 && b[len(b)-1] == '\r') {
				if s.lines == 0 {
					return 0, errLineTooLong
				}
				return 0, errFieldTooLong
			}
			// No end yet and already head-limit bytes: the head cannot
			// fit. (A buffer of lim.head bytes therefore always suffices.)
			if lim.head > 0 && len(b) >= lim.head {
				return 0, errHeadTooLarge
			}
			return 0, nil
		}
		end := s.pos + i
		if i == 0 || b[end-1] != '\r' {
			return 0, errBareLF
		}
		n := i - 1 // line length without CRLF
		switch {
		case s.lines == 0:
			if n > lim.reqLine {
				return 0, errLineTooLong
			}
		case n == 0:
			if lim.head > 0 && end+1 > lim.head {
				return 0, errHeadTooLarge
			}
			return end + 1, nil
		case n+2 > lim.fieldSize:
			return 0, errFieldTooLong
		case s.lines > lim.fields:
			return 0, errTooManyFields
		}
		s.lines++
		s.pos = end + 1
	}
}

// headInfo is what the engine needs from a head beyond exchange.Request.
type headInfo struct {
	chunked        bool  // body uses the chunked transfer coding
	contentLength  int64 // -1 when absent
	close          bool  // Connection: close
	keepAlive      bool  // Connection: keep-alive
	expectContinue bool  // Expect: 100-continue
}

// parseOptions are the parser switches that are not limits.
type parseOptions struct {
	allowNoHost bool // accept HTTP/1.1 without Host (conformance tests only)
}

var (
	slashPath = []byte("/")
	methodOPT = []byte("OPTIONS")
	methodCON = []byte("CONNECT")
)

// parseHead parses a complete request head b (request line, fields and the
// final empty line, all CRLF-terminated) into req and hi. req's slices alias
// b. req.Headers is appended to from req.Headers[:0] so its array is reused.
// It validates everything itself (the scanner only bounds sizes), so it is
// safe on arbitrary input.
func parseHead(b []byte, req *exchange.Request, hi *headInfo, lim *limits, opt parseOptions) *protoError {
	*hi = headInfo{contentLength: -1}
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return errBareLF
	}
	line := b[:i-1]
	rest := b[i+1:]
	if len(line) > lim.reqLine {
		return errLineTooLong
	}

	// request-line = method SP request-target SP HTTP-version (RFC 9112 §3),
	// single spaces only.
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return errRequestLine
	}
	method := line[:sp]
	if len(method) == 0 {
		return errRequestLine
	}
	if len(method) > maxMethod {
		return errMethod
	}
	for _, c := range method {
		// Lowercase methods are refused as gunicorn and nginx do: no real
		// client sends them and they hide typos and smuggling probes.
		if !httpx.IsTChar(c) || c >= 'a' && c <= 'z' {
			return errMethod
		}
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errRequestLine
	}
	target := line[:sp]
	ver := line[sp+1:]
	if len(ver) != 8 || string(ver[:5]) != "HTTP/" || !isDigit(ver[5]) || ver[6] != '.' || !isDigit(ver[7]) {
		return errVersion
	}
	if ver[5] != '1' || ver[7] > '1' {
		return errVersionSupport
	}
	req.Method = method
	req.Target = target
	req.ProtoMajor = 1
	req.ProtoMinor = int(ver[7] - '0')
	req.Host = nil
	req.Query = nil
	req.Path = nil
	req.ContentLength = 0
	req.Trailers = nil
	for _, c := range target {
		if !targetOK[c] {
			return errTarget
		}
	}
	isConnect := bytes.Equal(method, methodCON)
	var authority []byte
	switch {
	case target[0] == '/':
		req.Path, req.Query = splitPathQuery(target)
	case isConnect:
		// authority-form (RFC 9112 §3.2.3): host:port, only for CONNECT.
		if !validAuthority(target, true) {
			return errTarget
		}
		authority = target
	case len(target) == 1 && target[0] == '*':
		// asterisk-form (RFC 9112 §3.2.4): only for OPTIONS.
		if !bytes.Equal(method, methodOPT) {
			return errTarget
		}
		req.Path = target
	default:
		// absolute-form (RFC 9112 §3.2.2): http(s)://authority[path][?query]
		var ok bool
		authority, req.Path, req.Query, ok = parseAbsolute(target)
		if !ok {
			return errTarget
		}
	}
	if isConnect && authority == nil {
		return errTarget
	}

	hdrs := req.Headers[:0]
	var (
		nfields    int
		seenHost   bool
		seenCT     bool
		teSeen     bool // a Transfer-Encoding field with a non-identity coding
		teChunked  bool
		teOther    bool
		hasLength  bool
		teBadOrder bool
		teUnknown  bool
	)
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 1 || rest[i-1] != '\r' {
			return errBareLF
		}
		line := rest[:i-1]
		rest = rest[i+1:]
		if len(line) == 0 {
			break
		}
		name, value, drop, perr := parseField(line)
		if perr != nil {
			return perr
		}
		nfields++
		if nfields > lim.fields {
			return errTooManyFields
		}
		if drop {
			continue
		}
		hdrs = append(hdrs, exchange.Header{Name: name, Value: value})
		switch len(name) {
		case 4:
			if httpx.EqualFold(name, "host") {
				if seenHost {
					return errDupHost
				}
				seenHost = true
				req.Host = value
			}
		case 6:
			if httpx.EqualFold(name, "expect") {
				if !httpx.EqualFold(value, "100-continue") {
					return errExpect
				}
				hi.expectContinue = true
			}
		case 10:
			if httpx.EqualFold(name, "connection") {
				httpx.ForEachElement(value, func(e []byte) {
					if httpx.EqualFold(e, "close") {
						hi.close = true
					} else if httpx.EqualFold(e, "keep-alive") {
						hi.keepAlive = true
					}
				})
			}
		case 12:
			if httpx.EqualFold(name, "content-type") {
				// Two Content-Types would reach WSGI as one ambiguous
				// CONTENT_TYPE; gunicorn refuses them too.
				if seenCT {
					return errDupField
				}
				seenCT = true
			}
		case 14:
			if httpx.EqualFold(name, "content-length") {
				// Any repeat is refused, even an identical one (RFC 9112
				// §6.3 allows either): it only ever comes from broken or
				// hostile senders.
				if hasLength {
					return errDupLength
				}
				n, ok := httpx.ParseContentLength(value)
				if !ok {
					return errContentLength
				}
				hasLength = true
				hi.contentLength = n
			}
		case 17:
			if httpx.EqualFold(name, "transfer-encoding") {
				httpx.ForEachElement(value, func(e []byte) {
					switch {
					case teChunked:
						teBadOrder = true // anything after chunked
					case httpx.EqualFold(e, "chunked"):
						teChunked = true
					case httpx.EqualFold(e, "identity"):
						// historic no-op coding: ignored (gunicorn corpus)
					case knownCoding(e):
						teOther = true
					default:
						teUnknown = true
					}
				})
				teSeen = teSeen || teChunked || teOther || teUnknown || teBadOrder
			}
		}
	}
	if len(rest) != 0 {
		return errRequestLine // bytes after the empty line: caller bug or garbage
	}
	req.Headers = hdrs

	if teSeen {
		switch {
		case teBadOrder || !teChunked && teOther:
			// RFC 9112 §6.3: chunked must be the final coding of a request.
			return errTENotChunked
		case teUnknown:
			return errTEUnknown
		case req.ProtoMinor == 0:
			return errTEHTTP10
		case hasLength:
			return errTEAndCL
		}
		hi.chunked = true
		hi.contentLength = -1
		req.ContentLength = -1
	} else if hasLength {
		req.ContentLength = hi.contentLength
	}

	if authority != nil {
		// RFC 9112 §3.2.2: the target's authority wins over Host.
		req.Host = stripUserinfo(authority)
	}
	if !seenHost && req.ProtoMinor == 1 && !opt.allowNoHost {
		return errNoHost // RFC 9112 §3.2
	}
	return nil
}

// parseField splits one header line (no CRLF) into name and trimmed value.
// drop reports a valid field the engine ignores: names with '_', which CGI
// and WSGI would confuse with '-' (gunicorn's and nginx's default).
func parseField(line []byte) (name, value []byte, drop bool, err *protoError) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, false, errObsFold // RFC 9112 §5.2
	}
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, false, errFieldName
	}
	name = line[:colon]
	for _, c := range name {
		if !httpx.IsTChar(c) { // includes whitespace before the colon (RFC 9112 §5.1)
			return nil, nil, false, errFieldName
		}
		if c == '_' {
			drop = true
		}
	}
	value = line[colon+1:]
	if !httpx.ValidFieldValue(value) { // NUL, CR, other CTLs, DEL (RFC 9110 §5.5)
		return nil, nil, false, errFieldValue
	}
	return name, httpx.TrimOWS(value), drop, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// knownCoding reports the registered content codings a request may carry
// before a final chunked; the engine removes only chunked and passes the
// others to the application untouched (gunicorn's behaviour).
func knownCoding(e []byte) bool {
	return httpx.EqualFold(e, "gzip") || httpx.EqualFold(e, "x-gzip") || httpx.EqualFold(e, "deflate") ||
		httpx.EqualFold(e, "compress") || httpx.EqualFold(e, "x-compress")
}

// splitPathQuery splits an origin-form target at the first '?' and drops a
// fragment (which clients must not send, but some do).
func splitPathQuery(t []byte) (path, query []byte) {
	if h := bytes.IndexByte(t, '#'); h >= 0 {
		t = t[:h]
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		return t[:q], t[q+1:]
	}
	return t, nil
}

// parseAbsolute splits an absolute-form target. Only http and https are
// accepted: krait is an origin server, not a proxy.
func parseAbsolute(t []byte) (authority, path, query []byte, ok bool) {
	i := bytes.Index(t, []byte("://"))
	if i <= 0 || !(httpx.EqualFold(t[:i], "http") || httpx.EqualFold(t[:i], "https")) {
		return nil, nil, nil, false
	}
	rest := t[i+3:]
	end := len(rest)
	for j, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = j
			break
		}
	}
	authority, rest = rest[:end], rest[end:]
	if !validAuthority(authority, false) {
		return nil, nil, nil, false
	}
	path, query = splitPathQuery(rest)
	if len(path) == 0 {
		path = slashPath
	}
	return authority, path, query, true
}

// validAuthority checks [userinfo "@"] host [":" port] (RFC 3986 §3.2);
// connect requires a port and forbids userinfo (authority-form).
func validAuthority(a []byte, connect bool) bool {
	if at := bytes.LastIndexByte(a, '@'); at >= 0 {
		if connect {
			return false
		}
		for _, c := range a[:at] {
			if !regName[c] && c != ':' {
				return false
			}
		}
		a = a[at+1:]
	}
	var port []byte
	hasPort := false
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 2 {
			return false
		}
		for _, c := range a[1:end] {
			if !(isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == ':' || c == '.') {
				return false
			}
		}
		a = a[end+1:]
		if len(a) > 0 {
			if a[0] != ':' {
				return false
			}
			port, hasPort = a[1:], true
		}
	} else {
		host := a
		if c := bytes.LastIndexByte(a, ':'); c >= 0 {
			host, port, hasPort = a[:c], a[c+1:], true
		}
		if len(host) == 0 {
			return false
		}
		for _, c := range host {
			if !regName[c] {
				return false
			}
		}
	}
	for _, c := range port {
		if !isDigit(c) {
			return false
		}
	}
	if connect && (!hasPort || len(port) == 0) {
		return false
	}
	return true
}

// stripUserinfo returns the host[:port] part of an authority.
func stripUserinfo(a []byte) []byte {
	if at := bytes.LastIndexByte(a, '@'); at >= 0 {
		return a[at+1:]
	}
	return a
}

// parseChunkSize parses a chunk-size line (CRLF removed):
// 1*HEXDIG [ BWS ";" extensions ], extensions ignored but checked for CTLs.
func parseChunkSize(line []byte) (int64, *protoError) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if n > (1<<62)>>4 {
			return 0, errChunkSize
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, errChunkSize
	}
	if i == len(line) {
		return n, nil
	}
	j := i
	for j < len(line) && (line[j] == ' ' || line[j] == '\t') {
		j++
	}
	if j == len(line) || line[j] != ';' {
		return 0, errChunkSize // e.g. "0 " or "6_0"
	}
	if !httpx.ValidFieldValue(line[j:]) {
		return 0, errChunkExt // bare CR and other CTLs
	}
	return n, nil
}

// forbiddenTrailer reports fields a sender must not put in a trailer section
// because they frame, route or authenticate the message (RFC 9110 §6.5.1).
func forbiddenTrailer(name []byte) bool {
	switch len(name) {
	case 2:
		return httpx.EqualFold(name, "te")
	case 4:
		return httpx.EqualFold(name, "host")
	case 6:
		return httpx.EqualFold(name, "expect") || httpx.EqualFold(name, "cookie")
	case 7:
		return httpx.EqualFold(name, "trailer") || httpx.EqualFold(name, "upgrade")
	case 10:
		return httpx.EqualFold(name, "connection") || httpx.EqualFold(name, "keep-alive")
	case 13:
		return httpx.EqualFold(name, "authorization")
	case 14:
		return httpx.EqualFold(name, "content-length")
	case 17:
		return httpx.EqualFold(name, "transfer-encoding")
	case 19:
		return httpx.EqualFold(name, "proxy-authorization")
	}
	return false
}

// parseTrailers parses a complete trailer section (fields and the final
// empty line) into dst.
func parseTrailers(b []byte, dst []exchange.Header, lim *limits) ([]exchange.Header, *protoError) {
	n := 0
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 1 || b[i-1] != '\r' {
			return dst, errBareLF
		}
		line := b[:i-1]
		b = b[i+1:]
		if len(line) == 0 {
			return dst, nil
		}
		name, value, drop, err := parseField(line)
		if err != nil {
			return dst, err
		}
		if n++; n > lim.fields {
			return dst, errTooManyFields
		}
		if forbiddenTrailer(name) {
			return dst, errTrailerField
		}
		if !drop {
			dst = append(dst, exchange.Header{Name: name, Value: value})
		}
	}
}
