package h1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

var defaultLimits = limits{reqLine: 4094, fields: 100, fieldSize: 8190}

func TestParseHead(t *testing.T) {
	type want struct {
		method, target, path, query, host string
		minor                             int
		clen                              int64
		chunked, close, keepAlive, expect bool
		nhdr                              int
	}
	tests := []struct {
		name   string
		in     string
		status int // 0: accepted
		want   want
	}{
		{"simple", "GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n", 0,
			want{method: "GET", target: "/a?b=c", path: "/a", query: "b=c", host: "x", minor: 1, nhdr: 1}},
		{"fragment dropped from path and query", "GET /a?b#f HTTP/1.1\r\nHost: x\r\n\r\n", 0,
			want{method: "GET", target: "/a?b#f", path: "/a", query: "b", host: "x", minor: 1, nhdr: 1}},
		{"http10 no host", "GET / HTTP/1.0\r\n\r\n", 0, want{method: "GET", target: "/", path: "/"}},
		{"content-length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n", 0,
			want{method: "POST", target: "/", path: "/", host: "x", minor: 1, clen: 12, nhdr: 2}},
		{"chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
			want{method: "POST", target: "/", path: "/", host: "x", minor: 1, clen: -1, chunked: true, nhdr: 2}},
		{"gzip then chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0,
			want{method: "POST", target: "/", path: "/", host: "x", minor: 1, clen: -1, chunked: true, nhdr: 2}},
		{"identity with length", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n", 0,
			want{method: "POST", target: "/", path: "/", host: "x", minor: 1, clen: 3, nhdr: 3}},
		{"connection close and expect", "PUT / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", 0,
			want{method: "PUT", target: "/", path: "/", host: "x", minor: 1, clen: 1, close: true, expect: true, nhdr: 4}},
		{"keep-alive 1.0", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 0,
			want{method: "GET", target: "/", path: "/", keepAlive: true, nhdr: 1}},
		{"underscore field dropped", "GET / HTTP/1.1\r\nHost: x\r\nX_Y: 1\r\n\r\n", 0,
			want{method: "GET", target: "/", path: "/", host: "x", minor: 1, nhdr: 1}},
		{"absolute form sets host", "GET http://u:p@Example.com:81/p?q HTTP/1.1\r\nHost: other\r\n\r\n", 0,
			want{method: "GET", target: "http://u:p@Example.com:81/p?q", path: "/p", query: "q", host: "Example.com:81", minor: 1, nhdr: 1}},
		{"absolute form empty path", "GET https://h HTTP/1.1\r\nHost: h\r\n\r\n", 0,
			want{method: "GET", target: "https://h", path: "/", host: "h", minor: 1, nhdr: 1}},
		{"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 0,
			want{method: "OPTIONS", target: "*", path: "*", host: "x", minor: 1, nhdr: 1}},
		{"connect", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 0,
			want{method: "CONNECT", target: "h:443", host: "h:443", minor: 1, nhdr: 1}},
		{"value trimmed, obs-text kept", "GET / HTTP/1.1\r\nHost: x\r\nA: \t v\xe9 \t\r\n\r\n", 0,
			want{method: "GET", target: "/", path: "/", host: "x", minor: 1, nhdr: 2}},

		{"bare LF request line", "GET / HTTP/1.1\nHost: x\r\n\r\n", 400, want{}},
		{"bare LF field", "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", 400, want{}},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\rc\r\n\r\n", 400, want{}},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x00c\r\n\r\n", 400, want{}},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: x\r\nA: b\x7fc\r\n\r\n", 400, want{}},
		{"double space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"lowercase method", "get / HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"method with colon", "GE:T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"no target", "GET HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"authority not CONNECT", "GET h:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"CONNECT origin form", "CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"CONNECT without port", "CONNECT h HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"bad authority", "PUT s://]ufd/: HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"ftp scheme", "GET ftp://h/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"http/2.0", "GET / HTTP/2.0\r\n\r\n", 505, want{}},
		{"http/1.2", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505, want{}},
		{"http/0.9 style", "GET /\r\n\r\n", 400, want{}},
		{"lowercase version", "GET / http/1.1\r\nHost: x\r\n\r\n", 400, want{}},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400, want{}},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400, want{}},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, want{}},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400, want{}},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nfoo\r\n\r\n", 400, want{}},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nA: b\r\n c\r\n\r\n", 400, want{}},
		{"non-ascii name", "GET / HTTP/1.1\r\nHost: a\r\nA\xc3\x9f: b\r\n\r\n", 400, want{}},
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400, want{}},
		{"two CL same", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", 400, want{}},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n", 400, want{}},
		{"CL negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, want{}},
		{"CL plus", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", 400, want{}},
		{"CL hex", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\n", 400, want{}},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400, want{}},
		{"CL empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400, want{}},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, want{}},
		{"TE chunked not last", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400, want{}},
		{"TE gzip only", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400, want{}},
		{"TE unknown", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501, want{}},
		{"TE on 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, want{}},
		{"expect unknown", "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\n\r\n", 417, want{}},
		{"two content-types", "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: a\r\nContent-Type: b\r\n\r\n", 400, want{}},
		{"target with CTL", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400, want{}},
		{"too many fields", "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("A: b\r\n", 100) + "\r\n", 431, want{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req exchange.Request
			var hi headInfo
			lim := defaultLimits
			perr := parseHead([]byte(tt.in), &req, &hi, &lim, parseOptions{})
			if tt.status != 0 {
				if perr == nil {
					t.Fatalf("accepted, want %d", tt.status)
				}
				if perr.status != tt.status {
					t.Fatalf("status %d (%s), want %d", perr.status, perr.msg, tt.status)
				}
				return
			}
			if perr != nil {
				t.Fatalf("rejected: %d %s", perr.status, perr.msg)
			}
			w := tt.want
			got := want{
				method: string(req.Method), target: string(req.Target), path: string(req.Path),
				query: string(req.Query), host: string(req.Host), minor: req.ProtoMinor,
				clen: req.ContentLength, chunked: hi.chunked, close: hi.close,
				keepAlive: hi.keepAlive, expect: hi.expectContinue, nhdr: len(req.Headers),
			}
			if got != w {
				t.Fatalf("got  %+v\nwant %+v", got, w)
			}
		})
	}
}

func TestHeadScanLimits(t *testing.T) {
	lim := limits{reqLine: 20, fields: 2, fieldSize: 12}
	tests := []struct {
		name   string
		in     string
		n      int // head length, 0 = incomplete
		status int
	}{
		{"complete", "GET / HTTP/1.1\r\nA: b\r\n\r\nrest", 24, 0},
		{"incomplete", "GET / HTTP/1.1\r\nA: b\r\n", 0, 0},
		{"line at limit", "GET /12345678 HTTP/1.1"[:20] + "\r\n\r\n", 24, 0},
		{"line too long", "GET /123456789 HTTP/1.1\r\n\r\n", 0, 414},
		{"partial line too long", "GET /123456789012345678", 0, 414},
		{"field at limit", "GET / HTTP/1.1\r\nA: 1234567\r\n\r\n", 30, 0},
		{"partial field at limit with CR", "GET / HTTP/1.1\r\nA: 1234567\r", 0, 0},
		{"field too long", "GET / HTTP/1.1\r\nA: 12345678\r\n\r\n", 0, 431},
		{"partial field too long", "GET / HTTP/1.1\r\nA: 12345678", 0, 431},
		{"too many fields", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 0, 431},
		{"bare LF", "GET / HTTP/1.1\nA: 1\r\n\r\n", 0, 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Feed byte by byte as well as whole: the result must not depend
			// on how the bytes arrive.
			for _, step := range []int{len(tt.in), 1} {
				var s headScan
				var n int
				var perr *protoError
				for end := min(step, len(tt.in)); ; end = min(end+step, len(tt.in)) {
					n, perr = s.scan([]byte(tt.in[:end]), &lim)
					if perr != nil || n > 0 || end == len(tt.in) {
						break
					}
				}
				status := 0
				if perr != nil {
					status = perr.status
				}
				if n != tt.n || status != tt.status {
					t.Fatalf("step %d: got n=%d status=%d, want n=%d status=%d", step, n, status, tt.n, tt.status)
				}
			}
		})
	}
}

func TestParseChunkSize(t *testing.T) {
	tests := []struct {
		in   string
		n    int64
		fail bool
	}{
		{"0", 0, false},
		{"a", 10, false},
		{"00Ff", 255, false},
		{"5;ext", 5, false},
		{"5; a=b; c", 5, false},
		{`5;foo="bar baz"`, 5, false},
		{"5 ;x", 5, false},
		{"7fffffffffffffff", 0, true},
		{"10000000000000000", 0, true},
		{"", 0, true},
		{" 5", 0, true},
		{"5 ", 0, true},
		{"-5", 0, true},
		{"+5", 0, true},
		{"6_0", 0, true},
		{"0x5", 0, true},
		{"5;a\rb", 0, true},
		{"5;a\x00", 0, true},
		{";x", 0, true},
	}
	for _, tt := range tests {
		n, err := parseChunkSize([]byte(tt.in))
		if (err != nil) != tt.fail || n != tt.n && !tt.fail {
			t.Errorf("parseChunkSize(%q) = %d, %v; want %d, fail=%v", tt.in, n, err, tt.n, tt.fail)
		}
	}
}

// memConn is a net.Conn reading from a fixed reader, for driving a conn
// without sockets.
type memConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (m *memConn) Read(p []byte) (int, error)       { return m.r.Read(p) }
func (m *memConn) Write(p []byte) (int, error)      { return m.out.Write(p) }
func (m *memConn) Close() error                     { return nil }
func (m *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }
func (m *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234} }
func (m *memConn) SetDeadline(time.Time) error      { return nil }
func (m *memConn) SetReadDeadline(time.Time) error  { return nil }
func (m *memConn) SetWriteDeadline(time.Time) error { return nil }

// decodeChunked runs the engine's chunked decoder over body (the bytes
// after the head) read through r's chunking.
func decodeChunked(body string, wrap func(io.Reader) io.Reader) (string, []exchange.Header, error) {
	srv := New(nil, Config{})
	c := newConn(srv, &memConn{r: wrap(strings.NewReader(body))})
	c.getReadBuf() // as readHead leaves them for a request
	c.getWriteBuf()
	defer c.release()
	hi := headInfo{chunked: true, contentLength: -1}
	c.body.reset(&hi, 1)
	got, err := io.ReadAll(&c.body)
	return string(got), c.req.Trailers, err
}

func TestChunkedDecoder(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		body     string
		trailers string // "Name=Value;..."
		err      bool
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", "", false},
		{"two chunks", "5\r\nhello\r\n6\r\n world\r\n000\r\n\r\n", "hello world", "", false},
		{"extensions", "5; a=b\r\nhello\r\n0;x\r\n\r\n", "hello", "", false},
		{"trailers", "5\r\nhello\r\n0\r\nVary: *\r\nX-Sum: 1\r\n\r\n", "hello", "Vary=*;X-Sum=1", false},
		{"big chunk", "1000\r\n" + strings.Repeat("x", 4096) + "\r\n0\r\n\r\n", strings.Repeat("x", 4096), "", false},
		{"no final CRLF", "5\r\nhello\r\n0\r\n", "", "", true},
		{"truncated data", "5\r\nhel", "", "", true},
		{"data too long", "5\r\nhelloX\r\n0\r\n\r\n", "", "", true},
		{"bare LF after data", "5\r\nhello\n0\r\n\r\n", "", "", true},
		{"bare LF size", "5\nhello\r\n0\r\n\r\n", "", "", true},
		{"bad size", "z\r\n\r\n", "", "", true},
		{"forbidden trailer", "0\r\nContent-Length: 5\r\n\r\n", "", "", true},
		{"forbidden trailer host", "0\r\nHost: x\r\n\r\n", "", "", true},
		{"obs-fold trailer", "0\r\nA: b\r\n c\r\n\r\n", "", "", true},
		{"long size line", "5;" + strings.Repeat("x", maxChunkLine+10) + "\r\nhello\r\n0\r\n\r\n", "", "", true},
	}
	wraps := map[string]func(io.Reader) io.Reader{
		"whole":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
	}
	for _, tt := range tests {
		for wname, wrap := range wraps {
			t.Run(tt.name+"/"+wname, func(t *testing.T) {
				body, trl, err := decodeChunked(tt.in, wrap)
				if tt.err {
					if err == nil || errors.Is(err, io.EOF) {
						t.Fatalf("decoded %q without error", body)
					}
					return
				}
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if body != tt.body {
					t.Fatalf("body %q, want %q", body, tt.body)
				}
				var parts []string
				for _, h := range trl {
					parts = append(parts, string(h.Name)+"="+string(h.Value))
				}
				if got := strings.Join(parts, ";"); got != tt.trailers {
					t.Fatalf("trailers %q, want %q", got, tt.trailers)
				}
			})
		}
	}
}
