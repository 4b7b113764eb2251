package errpage

import (
	"net/http"
	"strconv"
	"sync"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/requestid"
)

// Kind is the format of a page.
type Kind uint8

const (
	// Text is text/plain: the default.
	Text Kind = iota
	// HTML is a small self-contained text/html page.
	HTML
	// JSON is application/json.
	JSON

	numKinds
)

func (k Kind) String() string {
	switch k {
	case Text:
		return "text"
	case HTML:
		return "html"
	case JSON:
		return "json"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

var contentTypes = [numKinds][]byte{
	Text: []byte("text/plain; charset=utf-8"),
	HTML: []byte("text/html; charset=utf-8"),
	JSON: []byte("application/json"),
}

// ContentType returns the Content-Type value of pages of kind k.
func ContentType(k Kind) []byte { return contentTypes[k] }

const (
	minStatus = 400
	maxStatus = 599
)

// page is one status's precomputed bodies.
type page struct {
	full [numKinds][]byte // the body without a request id
	head [numKinds][]byte // the body up to the request id
}

// tails are what follows the request id, per kind.
var tails = [numKinds][]byte{
	HTML: []byte("</code></p>\n</body>\n</html>\n"),
	JSON: []byte("\"}}\n"),
}

var (
	pages   [maxStatus - minStatus + 1]*page // nil: no reason phrase
	headers [numKinds][]exchange.Header      // Content-Type, Vary
)

var (
	hContentType = []byte("Content-Type")
	hVary        = []byte("Vary")
	vAccept      = []byte("Accept")
)

func init() {
	for k := Kind(0); k < numKinds; k++ {
		headers[k] = []exchange.Header{{Name: hContentType, Value: contentTypes[k]}, {Name: hVary, Value: vAccept}}
	}
	for s := minStatus; s <= maxStatus; s++ {
		if http.StatusText(s) != "" {
			pages[s-minStatus] = build(s)
		}
	}
}

// htmlHead is the page up to the title; the title, the heading and the
// request id follow. Inline style only: the page loads nothing.
const htmlHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>`

const htmlStyle = `</title>
<style>body{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;padding:0 1em;color:#222}h1{font-size:1.4em}p{color:#555}</style>
</head>
<body>
<h1>`

// build renders status's pages. Reason phrases are ASCII letters, spaces,
// hyphens and apostrophes ("I'm a teapot"): escaped for HTML.
func build(status int) *page {
	title := strconv.Itoa(status) + " " + http.StatusText(status)
	htmlTitle := escapeHTML(title)
	p := &page{}
	p.full[Text] = []byte(title + "\n")
	p.head[Text] = p.full[Text] // the id is in the X-Request-ID header only
	htmlTop := htmlHead + htmlTitle + htmlStyle + htmlTitle + "</h1>\n"
	p.full[HTML] = []byte(htmlTop + "</body>\n</html>\n")
	p.head[HTML] = []byte(htmlTop + "<p>Request ID: <code>")
	jsonTop := `{"error":{"status":` + strconv.Itoa(status) + `,"message":` + strconv.Quote(http.StatusText(status))
	p.full[JSON] = []byte(jsonTop + "}}\n")
	p.head[JSON] = []byte(jsonTop + `,"request_id":"`)
	return p
}

func escapeHTML(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '<':
			out = append(out, "&lt;"...)
		case '>':
			out = append(out, "&gt;"...)
		case '&':
			out = append(out, "&amp;"...)
		case '"':
			out = append(out, "&#34;"...)
		case '\'':
			out = append(out, "&#39;"...)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// normalize maps a status outside 400..599 to 500: errpage is for errors.
func normalize(status int) int {
	if status < minStatus || status > maxStatus {
		return 500
	}
	return status
}

// Body returns the precomputed body of status (400..599) in kind k
// without a request id, or nil when the status has no reason phrase (then
// use AppendBody). Callers must not modify it.
func Body(status int, k Kind) []byte {
	if status < minStatus || status > maxStatus || k >= numKinds {
		return nil
	}
	if p := pages[status-minStatus]; p != nil {
		return p.full[k]
	}
	return nil
}

// AppendBody appends the body of status in kind k to dst, with the
// request id when id is requestid.Valid (else without). A status outside
// 400..599 is written as 500; one without a reason phrase as "Error".
func AppendBody(dst []byte, status int, k Kind, id []byte) []byte {
	if k >= numKinds {
		k = Text
	}
	status = normalize(status)
	// Plain text is the status line alone, as before request ids: the id
	// is in the response's X-Request-ID header.
	withID := k != Text && requestid.Valid(id)
	if p := pages[status-minStatus]; p != nil {
		if !withID {
			return append(dst, p.full[k]...)
		}
		dst = append(dst, p.head[k]...)
		dst = append(dst, id...)
		return append(dst, tails[k]...)
	}
	// No reason phrase (a 499, a 5xx of no RFC): rarely used, so built
	// here rather than kept for every number, from parts (no allocation).
	switch k {
	case HTML:
		dst = append(dst, htmlHead...)
		dst = strconv.AppendInt(dst, int64(status), 10)
		dst = append(dst, " Error"+htmlStyle...)
		dst = strconv.AppendInt(dst, int64(status), 10)
		dst = append(dst, " Error</h1>\n"...)
		if withID {
			dst = append(append(append(dst, "<p>Request ID: <code>"...), id...), tails[HTML]...)
		} else {
			dst = append(dst, "</body>\n</html>\n"...)
		}
	case JSON:
		dst = strconv.AppendInt(append(dst, `{"error":{"status":`...), int64(status), 10)
		dst = append(dst, `,"message":"Error"`...)
		if withID {
			dst = append(append(append(dst, `,"request_id":"`...), id...), tails[JSON]...)
		} else {
			dst = append(dst, "}}\n"...)
		}
	default:
		dst = append(strconv.AppendInt(dst, int64(status), 10), " Error\n"...)
	}
	return dst
}

// Headers returns the header fields of a page of kind k: Content-Type and
// Vary: Accept. Callers must not modify them.
func Headers(k Kind) []exchange.Header {
	if k >= numKinds {
		k = Text
	}
	return headers[k]
}

// scratch is the per-call memory of Write, pooled.
type scratch struct {
	headers []exchange.Header
	body    []byte
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{headers: make([]exchange.Header, 0, 8), body: make([]byte, 0, 1024)}
}}

// Write answers r with the error page for status (400..599; others are
// written as 500) in the format r's Accept prefers, with r's request id
// (requestid.FromRequest) when it has one. extra are header fields the
// caller adds (Retry-After, Allow, Content-Range); they must not include
// Content-Type or Content-Length. A failed write is left to the engine
// (the connection is then closed).
func Write(w exchange.ResponseWriter, r *exchange.Request, status int, extra ...exchange.Header) {
	var k Kind
	var id []byte
	if r != nil {
		k = Negotiate(r.Headers)
		id = requestid.FromRequest(r)
	}
	WriteKind(w, status, k, id, extra...)
}

// WriteKind is Write with the kind and request id chosen by the caller.
func WriteKind(w exchange.ResponseWriter, status int, k Kind, id []byte, extra ...exchange.Header) {
	if k >= numKinds {
		k = Text
	}
	status = normalize(status)
	hs := headers[k]
	body := Body(status, k)
	var s *scratch
	if len(extra) > 0 || body == nil || k != Text && len(id) > 0 {
		s = scratchPool.Get().(*scratch)
		defer func() {
			clear(s.headers) // drop the caller's slices
			s.headers = s.headers[:0]
			if cap(s.body) <= 4096 {
				scratchPool.Put(s)
			}
		}()
		if len(extra) > 0 {
			s.headers = append(append(s.headers[:0], hs...), extra...)
			hs = s.headers
		}
		if body == nil || k != Text && requestid.Valid(id) {
			s.body = AppendBody(s.body[:0], status, k, id)
			body = s.body
		}
	}
	if err := w.WriteHeader(status, nil, hs, int64(len(body))); err != nil {
		return
	}
	_, _ = w.Write(body)
}
