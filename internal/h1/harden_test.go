package h1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/exchange"
)

// The oracle: the request grammar's byte classes written out from the ABNF
// of RFC 9110 and RFC 9112, on purpose without the parser's tables (a bug
// in a table must not be copied into the test that checks it).

// oracleTchar is RFC 9110 §5.6.2:
//
//	tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
//	        "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
func oracleTchar(b byte) bool {
	switch b {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return b >= '0' && b <= '9' || b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z'
}

// oracleVchar is RFC 5234's VCHAR = %x21-7E.
func oracleVchar(b byte) bool { return b >= 0x21 && b <= 0x7e }

// oracleValueByte is a byte of RFC 9110 §5.5's field-value:
// field-vchar = VCHAR / obs-text (%x80-FF), and SP / HTAB between them.
func oracleValueByte(b byte) bool { return oracleVchar(b) || b >= 0x80 || b == ' ' || b == '\t' }

// oracleMethodByte: method = token (RFC 9110 §9.1), minus lowercase
// letters, which krait refuses deliberately (doc.go).
func oracleMethodByte(b byte) bool { return oracleTchar(b) && !(b >= 'a' && b <= 'z') }

// oracleTargetByte: every character RFC 3986 allows in the forms of RFC
// 9112 §3.2 is a VCHAR; krait accepts exactly the VCHARs (doc.go).
func oracleTargetByte(b byte) bool { return oracleVchar(b) }

// engineResult is what the engine made of one raw request over a whole
// connection (memConn): the request the handler saw, or the status it
// refused with.
type engineResult struct {
	served  bool
	method  string
	target  string
	headers [][2]string
	status  int // response status
}

func runEngine(t *testing.T, raw string) engineResult {
	t.Helper()
	var res engineResult
	srv := New(handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		res.served = true
		res.method, res.target = string(r.Method), string(r.Target)
		for _, h := range r.Headers {
			res.headers = append(res.headers, [2]string{string(h.Name), string(h.Value)})
		}
		_ = w.WriteHeader(200, nil, nil, 0)
	}), Config{})
	mc := &memConn{r: strings.NewReader(raw)}
	c := newConn(srv, mc)
	srv.conns[c] = struct{}{}
	c.serve()
	resp, err := http.ReadResponse(bufio.NewReader(&mc.out), nil)
	if err != nil {
		t.Fatalf("%q: no response: %v", raw, err)
	}
	res.status = resp.StatusCode
	if res.served != (res.status == 200) {
		t.Fatalf("%q: served=%v but status %d", raw, res.served, res.status)
	}
	return res
}

func (r engineResult) header(name string) (string, bool) {
	for _, h := range r.headers {
		if h[0] == name {
			return h[1], true
		}
	}
	return "", false
}

// TestOracleEveryByte puts every byte value 0..255 into a header name, a
// header value, a method and a request target, and checks the engine
// accepts it exactly when the oracle does (and then passes it on intact).
func TestOracleEveryByte(t *testing.T) {
	for i := 0; i < 256; i++ {
		b := byte(i)
		s := string([]byte{b})

		// Header name, in the middle and alone.
		r := runEngine(t, "GET / HTTP/1.1\r\nHost: x\r\nA"+s+"B: v\r\n\r\n")
		switch {
		case b == ':': // "A:B: v" is the field A with value "B: v"
			if v, ok := r.header("A"); r.status != 200 || !ok || v != "B: v" {
				t.Errorf("name byte %#02x: status %d, fields %q", b, r.status, r.headers)
			}
		case oracleTchar(b):
			v, ok := r.header("A" + s + "B")
			if r.status != 200 || (b == '_') == ok || ok && v != "v" {
				t.Errorf("name byte %#02x (tchar): status %d, fields %q (names with '_' are dropped)", b, r.status, r.headers)
			}
		default:
			if r.status < 400 || r.status > 499 {
				t.Errorf("name byte %#02x (not tchar): accepted, status %d, fields %q", b, r.status, r.headers)
			}
		}
		r = runEngine(t, "GET / HTTP/1.1\r\nHost: x\r\n"+s+": v\r\n\r\n")
		if want := oracleTchar(b); want != (r.status == 200) {
			t.Errorf("one-byte name %#02x: status %d, oracle accepts=%v", b, r.status, want)
		}

		// Header value: inside, and first (where SP and HTAB are OWS).
		r = runEngine(t, "GET / HTTP/1.1\r\nHost: x\r\nX: a"+s+"b\r\n\r\n")
		if want := oracleValueByte(b); want != (r.status == 200) {
			t.Errorf("value byte %#02x: status %d, oracle accepts=%v", b, r.status, want)
		} else if v, _ := r.header("X"); want && v != "a"+s+"b" {
			t.Errorf("value byte %#02x: value %q", b, v)
		}
		r = runEngine(t, "GET / HTTP/1.1\r\nHost: x\r\nX: "+s+"b\r\n\r\n")
		if want := oracleValueByte(b); want != (r.status == 200) {
			t.Errorf("leading value byte %#02x: status %d, oracle accepts=%v", b, r.status, want)
		}

		// Method.
		r = runEngine(t, "G"+s+"T / HTTP/1.1\r\nHost: x\r\n\r\n")
		if want := oracleMethodByte(b); want != (r.status == 200) {
			t.Errorf("method byte %#02x: status %d, oracle accepts=%v", b, r.status, want)
		} else if want && r.method != "G"+s+"T" {
			t.Errorf("method byte %#02x: method %q", b, r.method)
		}

		// Request target: in the path and in the query.
		for _, target := range []string{"/a" + s + "b", "/p?q=" + s} {
			r = runEngine(t, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
			if want := oracleTargetByte(b); want != (r.status == 200) {
				t.Errorf("target %q: status %d, oracle accepts=%v", target, r.status, want)
			} else if want && r.target != target {
				t.Errorf("target %q seen as %q", target, r.target)
			}
		}
	}
}

func TestMethodLength(t *testing.T) {
	for _, tc := range []struct {
		n      int
		status int
	}{{17, 200}, {maxMethod, 200}, {maxMethod + 1, 400}, {3000, 400}} {
		m := strings.Repeat("M", tc.n)
		if r := runEngine(t, m+" / HTTP/1.1\r\nHost: x\r\n\r\n"); r.status != tc.status || r.served && r.method != m {
			t.Errorf("method of %d bytes: status %d, want %d", tc.n, r.status, tc.status)
		}
	}
}

func TestNonASCIITargetRefused(t *testing.T) {
	for _, target := range []string{"/caf\xc3\xa9", "/?q=\xff", "/\x80"} {
		if r := runEngine(t, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n"); r.status != 400 {
			t.Errorf("target %q: status %d, want 400", target, r.status)
		}
	}
	// Percent-encoded, it is fine.
	if r := runEngine(t, "GET /caf%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n"); r.status != 200 || r.target != "/caf%C3%A9" {
		t.Errorf("percent-encoded target: status %d target %q", r.status, r.target)
	}
}

// TestBrokenChunkedBodyAbortGets400 is the dispatcher's situation: the body
// is pumped by another goroutine, which sees the framing error; the
// handler can only Abort. No response has started, so the client must get
// the 400 (then the connection closes), not a bare close.
func TestBrokenChunkedBodyAbortGets400(t *testing.T) {
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		failed := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			failed <- err
		}()
		if err := <-failed; err != nil {
			w.Abort()
			return
		}
		hello(w, r)
	}), Config{})
	for _, body := range []string{
		"5\r\nhello\r\nzz\r\n\r\n",                 // bad chunk size after good data
		"5\r\nhelloXX\r\n0\r\n\r\n",                // data not followed by CRLF
		"0\r\nContent-Length: 1\r\n\r\n",           // forbidden trailer
		"5\nhello\r\n0\r\n\r\n",                    // bare LF
		"5;a\x00b\r\nhello\r\n0\r\n\r\n",           // CTL in an extension
		"1" + strings.Repeat("0", 20) + "\r\n\r\n", // size overflow
	} {
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		resp, _ := readResponse(t, br, "POST")
		if resp.StatusCode != 400 || !resp.Close {
			t.Errorf("body %q: status %d close=%v, want 400 and close", body, resp.StatusCode, resp.Close)
			continue
		}
		expectClosed(t, br)
	}

	// Once a response has started, the error can only close the connection.
	_, addr = startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, nil, nil, -1)
		_, _ = w.Write([]byte("started"))
		_ = w.Flush()
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			w.Abort()
		}
	}), Config{})
	c := dial(t, addr)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if b, err := io.ReadAll(resp.Body); string(b) != "started" || err == nil {
		t.Fatalf("body %q err %v: want the started body cut short", b, err)
	}
}

// TestHeadSizeLimit: a head whose lines are each within their limits but
// which is larger than MaxHeaderBytes in total gets 431; one of exactly
// MaxHeaderBytes is served.
func TestHeadSizeLimit(t *testing.T) {
	const limit = 10000
	// Line and field limits small enough that the head limit is not raised.
	_, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{MaxHeaderBytes: limit, LimitRequestLine: 100, LimitRequestFieldSize: 2000}})
	head := func(size int) string {
		h := "GET / HTTP/1.1\r\nHost: x\r\n"
		for i := 0; len(h)+2 < size; i++ {
			line := fmt.Sprintf("X-%d: ", i)
			n := min(1000, size-len(h)-2) - len(line) - 2
			if n < 0 {
				t.Fatalf("cannot build a head of %d bytes", size)
			}
			h += line + strings.Repeat("v", n) + "\r\n"
		}
		return h + "\r\n"
	}
	for _, tc := range []struct {
		size, status int
	}{{limit, 200}, {limit + 1, 431}, {4 * limit, 431}} {
		h := head(tc.size)
		if len(h) != tc.size {
			t.Fatalf("head of %d bytes, want %d", len(h), tc.size)
		}
		c := dial(t, addr)
		go io.WriteString(c, h) // may fail once the server refuses and closes
		resp, _ := readResponse(t, bufio.NewReader(c), "GET")
		if resp.StatusCode != tc.status {
			t.Errorf("head of %d bytes: status %d, want %d", tc.size, resp.StatusCode, tc.status)
		}
	}

	// Unfinished: refused as soon as the limit is reached, not at the
	// header timeout.
	c := dial(t, addr)
	go io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n"+strings.Repeat("X-Pad: "+strings.Repeat("p", 990)+"\r\n", 11))
	resp, _ := readResponse(t, bufio.NewReader(c), "GET")
	if resp.StatusCode != 431 || !resp.Close {
		t.Errorf("unfinished head over the limit: status %d close=%v, want 431 and close", resp.StatusCode, resp.Close)
	}

	// The default holds a request line and a field at their limits.
	s := New(handlerFunc(hello), Config{HTTP: config.HTTP{LimitRequestLine: 30000, LimitRequestFieldSize: 40000}})
	if s.cfg.MaxHeaderBytes < 30000+2+40000+2 {
		t.Errorf("default MaxHeaderBytes %d cannot hold a request line and a field at their limits", s.cfg.MaxHeaderBytes)
	}
	if s, want := New(handlerFunc(hello), Config{}), config.Default().MaxHeaderBytes; s.cfg.MaxHeaderBytes != want {
		t.Errorf("default MaxHeaderBytes %d, want %d", s.cfg.MaxHeaderBytes, want)
	}
}

// waitUntil polls cond until it holds, failing the test after a generous
// deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestHeadMemoryBudget: the read-buffer memory of large unfinished heads
// is bounded for all connections together; the connection that would
// exceed the budget gets 503, and the budget is given back on close.
func TestHeadMemoryBudget(t *testing.T) {
	// Heads of ~20 KB grow the 4 KiB buffer to 32 KiB: 28 KiB each from
	// the budget, which has room for two.
	const perConn = 32<<10 - readBufSize
	srv, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{MaxHeadMemory: 2*perConn + perConn/2}, Log: slog.New(slog.DiscardHandler)})
	partial := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 990)+"\r\n", 20)

	c1, c2 := dial(t, addr), dial(t, addr)
	io.WriteString(c1, partial)
	waitUntil(t, "the first head's buffer", func() bool { return srv.HeadMemory() == perConn })
	io.WriteString(c2, partial)
	waitUntil(t, "the second head's buffer", func() bool { return srv.HeadMemory() == 2*perConn })

	c3 := dial(t, addr)
	io.WriteString(c3, partial)
	resp, _ := readResponse(t, bufio.NewReader(c3), "GET")
	if resp.StatusCode != 503 || !resp.Close {
		t.Fatalf("third large head: status %d close=%v, want 503 and close", resp.StatusCode, resp.Close)
	}
	// What the refused connection had reserved on its way up comes back
	// when it closes, just after the 503.
	waitUntil(t, "the refused connection's buffer to be given back", func() bool { return srv.HeadMemory() == 2*perConn })

	// Finishing a head serves it; its memory is given back once the
	// connection is idle again, and closing gives back the other's.
	br1 := bufio.NewReader(c1)
	io.WriteString(c1, "\r\n")
	if resp, body := readResponse(t, br1, "GET"); resp.StatusCode != 200 || body != "Hello, World!" {
		t.Fatalf("finished head: %d %q", resp.StatusCode, body)
	}
	waitUntil(t, "the served head's buffer to be given back", func() bool { return srv.HeadMemory() == perConn })
	c2.Close()
	waitUntil(t, "the closed connection's buffer to be given back", func() bool { return srv.HeadMemory() == 0 })

	// With room again, a new large head is served.
	c4 := dial(t, addr)
	io.WriteString(c4, partial+"\r\n")
	if resp, _ := readResponse(t, bufio.NewReader(c4), "GET"); resp.StatusCode != 200 {
		t.Fatalf("large head after the budget freed: status %d", resp.StatusCode)
	}
}

// TestIdleConnectionsHoldNoBuffers: an idle keep-alive connection holds no
// read or write buffer (the engine waits for readability without one), so
// its whole cost, client side included here, is about 5 KiB: before, the
// two 4 KiB buffers came on top (about 13 KiB).
func TestIdleConnectionsHoldNoBuffers(t *testing.T) {
	if raceEnabled {
		t.Skip("memory figures mean nothing under -race")
	}
	_, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{KeepAlive: 10 * time.Minute}})
	const n = 1000
	var ms runtime.MemStats
	inUse := func() int64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapInuse + ms.StackInuse)
	}
	before := inUse()
	conns := make([]net.Conn, n)
	buf := make([]byte, 4096)
	for i := range conns {
		conns[i] = dial(t, addr)
		if _, err := io.WriteString(conns[i], "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if err := readHello(conns[i], buf); err != nil {
			t.Fatal(err)
		}
	}
	// Each connection is idle once its goroutine has parked again; the
	// bound holds from then on.
	const bound = 8 << 10
	var per int64
	deadline := time.Now().Add(10 * time.Second)
	for {
		per = (inUse() - before) / n
		if per < bound || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if per >= bound {
		t.Fatalf("an idle keep-alive connection costs %d bytes (client side included), want < %d", per, bound)
	}
	t.Logf("an idle keep-alive connection costs %d bytes, client side included", per)
	// And they all still work.
	for _, c := range conns[:10] {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if err := readHello(c, buf); err != nil {
			t.Fatal(err)
		}
	}
}

// TestIdleHandoff: a connection idle for longer than idleGrace continues
// on a fresh goroutine, so the stack its handler grew is freed; it keeps
// working, and still closes at its idle timeout.
func TestIdleHandoff(t *testing.T) {
	ids := make(chan string, 2)
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		growStack(64) // about 64 KiB of stack, as a deep handler would
		ids <- goroutineID()
		hello(w, r)
	})
	exited := func(id string) func() bool {
		return func() bool {
			buf := make([]byte, 1<<20)
			return !bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("goroutine "+id+" "))
		}
	}
	t.Run("continues on a fresh goroutine", func(t *testing.T) {
		_, addr := startServer(t, h, Config{HTTP: config.HTTP{KeepAlive: time.Minute}})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		readResponse(t, br, "GET")
		first := <-ids
		// With a minute of idle timeout, only the handoff ends it.
		waitUntil(t, "the serving goroutine to hand the idle connection off", exited(first))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "Hello, World!" {
			t.Fatalf("after the handoff: %d %q", resp.StatusCode, body)
		}
		if second := <-ids; second == first {
			t.Fatalf("served on goroutine %s again, want a fresh one", first)
		}
	})
	t.Run("idle timeout still applies", func(t *testing.T) {
		_, addr := startServer(t, h, Config{HTTP: config.HTTP{KeepAlive: 3 * idleGrace}})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		readResponse(t, br, "GET")
		<-ids
		expectClosed(t, br)
	})
}

// goroutineID is the current goroutine's number, from its stack header.
func goroutineID() string {
	var buf [64]byte
	f := strings.Fields(string(buf[:runtime.Stack(buf[:], false)]))
	return f[1]
}

//go:noinline
func growStack(kib int) byte {
	var pad [1024]byte
	pad[kib%1024] = byte(kib)
	if kib <= 1 {
		return pad[0]
	}
	return growStack(kib-1) + pad[1]
}
