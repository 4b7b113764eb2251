package h1

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/exchange"
)

var fuzzSeeds = []string{
	"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
	"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nX: y\r\n\r\n",
	"GET http://u@h:1/p HTTP/1.1\r\nHost: h\r\n\r\n",
	"CONNECT [::1]:443 HTTP/1.1\r\nHost: h\r\n\r\n",
	"OPTIONS * HTTP/1.0\r\nConnection: keep-alive\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n",
	"\r\nGET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
}

// FuzzParseRequest checks the head scanner and parser on arbitrary input:
// no panics, the scanner finds the same end whatever the arrival pattern,
// and an accepted head yields slices inside the input with valid methods.
func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	lim := limits{reqLine: 200, fields: 10, fieldSize: 200}
	f.Fuzz(func(t *testing.T, in []byte) {
		var s headScan
		n, perr := s.scan(in, &lim)
		// Byte-by-byte arrival must reach the same verdict.
		var s2 headScan
		var n2 int
		var perr2 *protoError
		for end := 1; end <= len(in); end++ {
			n2, perr2 = s2.scan(in[:end], &lim)
			if n2 > 0 || perr2 != nil {
				break
			}
		}
		if n != n2 || (perr == nil) != (perr2 == nil) {
			t.Fatalf("whole: %d %v; bytewise: %d %v", n, perr, n2, perr2)
		}
		if perr != nil || n == 0 {
			return
		}
		var req exchange.Request
		var hi headInfo
		head := in[:n]
		if perr := parseHead(head, &req, &hi, &lim, parseOptions{}); perr != nil {
			if perr.status < 400 || perr.status > 599 {
				t.Fatalf("bad status %d", perr.status)
			}
			return
		}
		// Whatever was accepted must satisfy the ABNF oracle
		// (harden_test.go), which shares nothing with the parser.
		if len(req.Method) > maxMethod {
			t.Fatalf("accepted a method of %d bytes", len(req.Method))
		}
		for _, c := range req.Method {
			if !oracleMethodByte(c) {
				t.Fatalf("accepted method %q", req.Method)
			}
		}
		for _, c := range req.Target {
			if !oracleTargetByte(c) {
				t.Fatalf("accepted target %q", req.Target)
			}
		}
		if !bytes.Contains(head, req.Target) || len(req.Target) == 0 {
			t.Fatalf("target %q not from the head", req.Target)
		}
		if hi.chunked && req.ContentLength != -1 || !hi.chunked && req.ContentLength < 0 {
			t.Fatalf("chunked=%v ContentLength=%d", hi.chunked, req.ContentLength)
		}
		if req.ProtoMinor == 1 && req.Host == nil {
			t.Fatal("HTTP/1.1 accepted without Host")
		}
		for _, h := range req.Headers {
			if len(h.Name) == 0 {
				t.Fatal("empty field name accepted")
			}
			for _, c := range h.Name {
				if !oracleTchar(c) {
					t.Fatalf("field name %q accepted", h.Name)
				}
			}
			for _, c := range h.Value {
				if !oracleValueByte(c) {
					t.Fatalf("value %q accepted", h.Value)
				}
			}
		}
	})
}

// FuzzOracleField checks one header field both ways against the oracle:
// accepted exactly when the name is a token and the value is field-value
// bytes, and then passed on intact (OWS trimmed). Names with a meaning to
// the engine (Host, Content-Length, ...) are left to other tests.
func FuzzOracleField(f *testing.F) {
	for _, s := range [][2]string{{"Accept", "*/*"}, {"X-A", "a\tb"}, {"X/Y", "v"}, {"X", "a\x01b"}, {"X", "\xe9t\xe9"}, {"{x}", "v"}} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	lim := limits{reqLine: 200, fields: 10, fieldSize: 200}
	f.Fuzz(func(t *testing.T, name, value []byte) {
		if bytes.IndexByte(name, ':') >= 0 || len(name)+len(value)+4 > lim.fieldSize {
			return // ':' ends the name: a different field than meant
		}
		switch strings.ToLower(string(name)) {
		case "host", "content-length", "transfer-encoding", "expect", "connection", "content-type":
			return
		}
		want := len(name) > 0
		for _, c := range name {
			want = want && oracleTchar(c)
		}
		for _, c := range value {
			want = want && oracleValueByte(c)
		}
		in := []byte("GET / HTTP/1.1\r\nHost: x\r\n" + string(name) + ": " + string(value) + "\r\n\r\n")
		var s headScan
		n, perr := s.scan(in, &lim)
		var req exchange.Request
		var hi headInfo
		if perr == nil && n == len(in) {
			perr = parseHead(in, &req, &hi, &lim, parseOptions{})
		} else if perr == nil {
			perr = errBareLF // the value held a CRLF: not one field
		}
		if (perr == nil) != want {
			t.Fatalf("field %q: %q: accepted=%v, oracle=%v (%v)", name, value, perr == nil, want, perr)
		}
		if !want || bytes.IndexByte(name, '_') >= 0 {
			return // names with '_' are dropped
		}
		if len(req.Headers) != 2 || !bytes.Equal(req.Headers[1].Name, name) ||
			!bytes.Equal(req.Headers[1].Value, bytes.Trim(value, " \t")) {
			t.Fatalf("field %q: %q passed on as %q", name, value, req.Headers)
		}
	})
}

// FuzzOracleRequestLine checks a method and an origin-form target both
// ways against the oracle.
func FuzzOracleRequestLine(f *testing.F) {
	for _, s := range [][2]string{{"GET", "/"}, {"M-SEARCH", "/a?b=c#d"}, {"GET", "/caf\xc3\xa9"}, {"get", "/"}, {"G(T", "/"}, {"GET", "/a b"}, {strings.Repeat("M", maxMethod+1), "/"}} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	lim := limits{reqLine: 200, fields: 10, fieldSize: 200}
	f.Fuzz(func(t *testing.T, method, target []byte) {
		if len(method)+len(target)+10 > lim.reqLine || bytes.Equal(method, []byte("CONNECT")) {
			return
		}
		want := len(method) > 0 && len(method) <= maxMethod && len(target) > 0 && target[0] == '/'
		for _, c := range method {
			want = want && oracleMethodByte(c)
		}
		for _, c := range target {
			want = want && oracleTargetByte(c)
		}
		in := []byte(string(method) + " " + string(target) + " HTTP/1.1\r\nHost: x\r\n\r\n")
		var s headScan
		n, perr := s.scan(in, &lim)
		var req exchange.Request
		var hi headInfo
		if perr == nil && n == len(in) {
			perr = parseHead(in, &req, &hi, &lim, parseOptions{})
		} else if perr == nil {
			perr = errBareLF
		}
		if (perr == nil) != want {
			t.Fatalf("%q %q: accepted=%v, oracle=%v (%v)", method, target, perr == nil, want, perr)
		}
		if want && (!bytes.Equal(req.Method, method) || !bytes.Equal(req.Target, target)) {
			t.Fatalf("%q %q passed on as %q %q", method, target, req.Method, req.Target)
		}
	})
}

// FuzzChunkedDecoder checks the chunked decoder: no panics, and the same
// result whether the bytes arrive at once or one by one.
func FuzzChunkedDecoder(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;x=\"y z\"\r\nhello\r\n6\r\n world\r\n0\r\nA: b\r\n\r\n",
		"0\r\nContent-Length: 1\r\n\r\n",
		"fffffffffffffff\r\n",
		"5\r\nhelloXX\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		id := func(r io.Reader) io.Reader { return r }
		b1, t1, e1 := decodeChunked(string(in), id)
		b2, t2, e2 := decodeChunked(string(in), iotest.OneByteReader)
		if (e1 == nil) != (e2 == nil) || e1 == nil && (b1 != b2 || len(t1) != len(t2)) {
			t.Fatalf("whole: %q %v %v; bytewise: %q %v %v", b1, len(t1), e1, b2, len(t2), e2)
		}
		if e1 == nil && len(b1) > len(in) {
			t.Fatalf("decoded more than the input")
		}
	})
}

// FuzzConn drives a whole connection over arbitrary bytes: no panics or
// hangs, and every response starts with a status line.
func FuzzConn(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s + s))
	}
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		_ = r.Watch
		_ = w.WriteHeader(200, nil, nil, int64(len(b)))
		_, _ = w.Write(b)
	})
	f.Fuzz(func(t *testing.T, in []byte) {
		srv := New(h, Config{HTTP: config.HTTP{LimitRequestLine: 200, LimitRequestFields: 10, LimitRequestFieldSize: 200}})
		mc := &memConn{r: iotest.HalfReader(bytes.NewReader(in))}
		c := newConn(srv, mc)
		srv.conns[c] = struct{}{}
		c.serve()
		if out := mc.out.String(); out != "" && !strings.HasPrefix(out, "HTTP/1.1 ") {
			t.Fatalf("output %q", out)
		}
	})
}
