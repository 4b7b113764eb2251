package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Shielding the workers from clients: bodies over --max-body-size get 413
// and bodies up to --buffer-body are received whole (and their chunked
// framing checked) before a worker is taken, so slow uploads and malformed
// bodies cost a goroutine, never a Python worker. The app
// (python/tests/apps/shield_app.py) counts every request it is called
// for, before reading the body.

// startShield serves shield_app on one worker with one thread.
func startShield(t *testing.T, extra ...string) *Krait {
	t.Helper()
	args := []string{"shield_app:application", "--chdir", filepath.Join(repoRoot, "python", "tests", "apps"),
		"-w", "1", "--threads", "1"}
	k := startKrait(t, nil, append(args, extra...)...)
	k.Forbid("worker died", "protocol error")
	return k
}

// shieldCount is how many requests reached the app.
func shieldCount(t *testing.T, k *Krait) int {
	t.Helper()
	resp, body := k.Get("/count")
	if resp.StatusCode != 200 {
		t.Fatalf("/count: %d %q", resp.StatusCode, body)
	}
	n, err := strconv.Atoi(body)
	if err != nil {
		t.Fatalf("/count: %q", body)
	}
	return n
}

// shieldRaw sends req on a new connection and reads one response to it.
func shieldRaw(t *testing.T, k *Krait, req []byte) rawResponse {
	t.Helper()
	c := dial(t, k.Addr())
	setDeadline(c)
	if _, err := c.Write(req); err != nil {
		t.Fatalf("write: %v", err)
	}
	resps, err := readResponses(bufio.NewReader(c), 1, "POST")
	if len(resps) != 1 {
		t.Fatalf("no response to %q: %v", req[:min(len(req), 80)], err)
	}
	return resps[0]
}

func randomBody(t *testing.T, n int) ([]byte, string) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return b, fmt.Sprintf("%d %s", n, hex.EncodeToString(sum[:]))
}

// chunked encodes body in chunks of size n.
func chunked(body []byte, n int) []byte {
	var b bytes.Buffer
	for len(body) > 0 {
		k := min(n, len(body))
		fmt.Fprintf(&b, "%x\r\n", k)
		b.Write(body[:k])
		b.WriteString("\r\n")
		body = body[k:]
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

func TestShieldMaxBodySize(t *testing.T) {
	k := startShield(t, "--max-body-size", "1000")

	// Announced too large: 413 at once, though no body byte was sent.
	r := shieldRaw(t, k, []byte("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n"))
	if r.Status != 413 {
		t.Fatalf("Content-Length 1001 over --max-body-size 1000: got %d %q, want 413", r.Status, r.Body)
	}
	// With Expect: 100-continue the answer is 413, never 100 Continue.
	r = shieldRaw(t, k, []byte("POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n"))
	if r.Status != 413 {
		t.Fatalf("Expect: 100-continue with a body over the limit: got %d, want 413", r.Status)
	}
	// Chunked, found while buffering.
	big, _ := randomBody(t, 3000)
	r = shieldRaw(t, k, append([]byte("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), chunked(big, 500)...))
	if r.Status != 413 {
		t.Fatalf("chunked body of 3000 bytes over --max-body-size 1000: got %d %q, want 413", r.Status, r.Body)
	}
	// At the limit: served, whole.
	ok, want := randomBody(t, 1000)
	resp, body := k.Do(mustRequest(t, "POST", k.URL("/up"), bytes.NewReader(ok)))
	if resp.StatusCode != 200 || body != want {
		t.Fatalf("body of 1000 bytes: %d %q, want 200 %q", resp.StatusCode, body, want)
	}
	r = shieldRaw(t, k, append([]byte("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), chunked(ok, 300)...))
	if r.Status != 200 || string(r.Body) != want {
		t.Fatalf("chunked body of 1000 bytes: %d %q, want 200 %q", r.Status, r.Body, want)
	}
	if n := shieldCount(t, k); n != 2 {
		t.Fatalf("the app was called %d times, want 2 (the refused bodies must never reach it)", n)
	}
}

// A chunked body streamed past --buffer-body is cut at --max-body-size:
// the stream is reset and, as no response began, the answer is 413.
func TestShieldMaxBodySizeStreamed(t *testing.T) {
	k := startShield(t, "--max-body-size", "100000", "--buffer-body", "0")
	big, _ := randomBody(t, 150000)
	c := dial(t, k.Addr())
	setDeadline(c)
	go func() {
		// The server may answer and close before all of it is written.
		_, _ = c.Write(append([]byte("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), chunked(big, 8192)...))
	}()
	resps, err := readResponses(bufio.NewReader(c), 1, "POST")
	if len(resps) != 1 || resps[0].Status != 413 {
		t.Fatalf("streamed chunked body over the limit: got %v (%v), want one 413", resps, err)
	}
}

// A slow upload stalled in the middle does not hold the only worker: with
// one worker of one thread, another request is answered meanwhile, and
// the upload then completes intact.
func TestShieldSlowUploadDoesNotHoldWorker(t *testing.T) {
	// A body idle limit far beyond the GET's deadline (older krait used
	// --header-timeout for it; this one its own --body-timeout, 30 s).
	k := startShield(t, "--header-timeout", "30")
	body, want := randomBody(t, 512<<10)
	c := dial(t, k.Addr())
	setDeadline(c)
	if _, err := fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", len(body)); err != nil {
		t.Fatal(err)
	}
	// 192 KiB, a little at a time (past the 64 KiB that was always read
	// before taking a worker), then the client stalls.
	sent := 0
	for sent < 192<<10 {
		if _, err := c.Write(body[sent : sent+4096]); err != nil {
			t.Fatal(err)
		}
		sent += 4096
		time.Sleep(2 * time.Millisecond)
	}
	cl := &http.Client{Timeout: 8 * time.Second}
	resp, err := cl.Get(k.URL("/hello"))
	if err != nil {
		t.Fatalf("GET /hello while an upload is stalled: %v (the upload holds the only worker)", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != "hello" {
		t.Fatalf("GET /hello: %d %q", resp.StatusCode, got)
	}
	if _, err := c.Write(body[sent:]); err != nil {
		t.Fatal(err)
	}
	resps, err := readResponses(bufio.NewReader(c), 1, "POST")
	if len(resps) != 1 || resps[0].Status != 200 || string(resps[0].Body) != want {
		t.Fatalf("upload: %v (%v), want 200 %q", resps, err, want)
	}
	if n := shieldCount(t, k); n != 2 {
		t.Fatalf("the app was called %d times, want 2", n)
	}
}

// Bodies larger than --buffer-body stream, bodies between 64 KiB and it
// are buffered in several chunks: both arrive intact.
func TestShieldBufferedAndStreamedBodiesIntact(t *testing.T) {
	k := startShield(t, "--buffer-body", "300000")
	for _, size := range []int{65536, 65537, 200000, 300000, 300001, 3 << 20} {
		body, want := randomBody(t, size)
		resp, got := k.Do(mustRequest(t, "POST", k.URL("/up"), bytes.NewReader(body)))
		if resp.StatusCode != 200 || got != want {
			t.Fatalf("Content-Length body of %d bytes: %d %q, want %q", size, resp.StatusCode, got, want)
		}
		r := shieldRaw(t, k, append([]byte("POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), chunked(body, 10000)...))
		if r.Status != 200 || string(r.Body) != want {
			t.Fatalf("chunked body of %d bytes: %d %q, want %q", size, r.Status, r.Body, want)
		}
	}
}

// A body that stops arriving gets 408 after --body-timeout, without the
// app ever being called.
func TestShieldBodyTimeout(t *testing.T) {
	// A head timeout far longer than the test waits: the body's own limit
	// must answer.
	k := startShield(t, "--body-timeout", "1", "--header-timeout", "120")
	for _, req := range []string{
		"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n0123456789",
		"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n" + strings.Repeat("x", 100000),
		"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	} {
		r := shieldRaw(t, k, []byte(req))
		if r.Status != 408 {
			t.Fatalf("stalled body %q...: got %d %q, want 408", req[:50], r.Status, r.Body)
		}
	}
	if n := shieldCount(t, k); n != 0 {
		t.Fatalf("the app was called %d times, want 0", n)
	}
}

// Malformed chunked bodies (the shared corpus's bad chunk size, missing
// CRLF and forbidden trailer cases) are answered 400 and never reach the
// app. Each error comes after 200 KB of valid chunks: more than krait
// ever read before taking a worker when it only looked at a body's first
// bytes (then the app was called and the error found while it read).
func TestShieldMalformedChunkedNeverReachesApp(t *testing.T) {
	k := startShield(t)
	head := "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	valid := chunked(bytes.Repeat([]byte("v"), 200000), 10000)
	prefix := string(valid[:len(valid)-len("0\r\n\r\n")])
	for name, body := range map[string]string{
		"bad chunk size":             "5\r\nhello\r\n-5\r\nhello\r\n0\r\n\r\n",
		"no CRLF after chunk data":   "5\r\nhelloXX\r\n0\r\n\r\n",
		"Content-Length trailer":     "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
		"Host trailer":               "5\r\nhello\r\n0\r\nHost: evil\r\n\r\n",
		"final CRLF missing (close)": "5\r\nhello\r\n0\r\n",
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			before := shieldCount(t, k)
			c := dial(t, k.Addr())
			setDeadline(c)
			if _, err := c.Write([]byte(head + prefix + body)); err != nil {
				t.Fatal(err)
			}
			if name == "final CRLF missing (close)" {
				// The client ends the connection where the CRLF belongs.
				_ = c.(*net.TCPConn).CloseWrite()
			}
			out, err := readAllUntilClose(c, ioTimeout)
			if n := shieldCount(t, k) - before; n != 0 {
				t.Fatalf("%s: the app was called %d times, want 0", name, n)
			}
			if err != nil {
				t.Fatalf("%s: reading the answer: %v", name, err)
			}
			if name != "final CRLF missing (close)" && !bytes.HasPrefix(out, []byte("HTTP/1.1 400 ")) {
				t.Fatalf("%s: got %q, want a 400", name, out)
			}
		})
	}
	if t.Failed() {
		return
	}
	// And a valid one is served (the counter works).
	r := shieldRaw(t, k, []byte(head+"5\r\nhello\r\n0\r\nX-Trailer: ok\r\n\r\n"))
	if r.Status != 200 || !strings.HasPrefix(string(r.Body), "5 ") {
		t.Fatalf("valid chunked body: %d %q", r.Status, r.Body)
	}
	if n := shieldCount(t, k); n != 1 {
		t.Fatalf("the app was called %d times, want 1", n)
	}
}

// --max-connections: at the bound krait stops accepting; a new client
// waits in the listen backlog and is served as soon as a connection
// closes.
func TestShieldMaxConnections(t *testing.T) {
	t.Run("h1", func(t *testing.T) { testMaxConnections(t) })
	// net/http's engine (as for TLS) counts through its listener.
	t.Run("h2c", func(t *testing.T) { testMaxConnections(t, "--http2-cleartext") })
}

func testMaxConnections(t *testing.T, extra ...string) {
	k := startShield(t, append([]string{"--max-connections", "2"}, extra...)...)
	get := []byte("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
	var held []net.Conn
	for i := range 2 {
		c := dial(t, k.Addr())
		setDeadline(c)
		if _, err := c.Write(get); err != nil {
			t.Fatal(err)
		}
		resps, err := readResponses(bufio.NewReader(c), 1, "GET")
		if len(resps) != 1 || resps[0].Status != 200 {
			t.Fatalf("connection %d: %v %v", i, resps, err)
		}
		held = append(held, c) // kept open, idle
	}
	third := dial(t, k.Addr()) // completes in the kernel's backlog
	if _, err := third.Write(get); err != nil {
		t.Fatal(err)
	}
	// Not served while two connections are open. (A correct krait never
	// answers here, so the short wait cannot fail it.)
	_ = third.SetReadDeadline(time.Now().Add(time.Second))
	br := bufio.NewReader(third)
	if _, err := br.Peek(1); err == nil {
		t.Fatalf("a third connection was served with --max-connections 2")
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("third connection: %v, want it to wait", err)
	}
	held[0].Close()
	setDeadline(third)
	resps, err := readResponses(br, 1, "GET")
	if len(resps) != 1 || resps[0].Status != 200 || string(resps[0].Body) != "hello" {
		t.Fatalf("third connection after one closed: %v (%v), want 200 hello", resps, err)
	}
}

// The idle keep-alive timeout defaults to 75 s, longer than the 60 s of
// common load balancers, so krait never closes a connection one of them
// is about to reuse.
func TestShieldKeepAliveDefault(t *testing.T) {
	_, stdout, stderr := runKrait(t, 30*time.Second, "serve", "--help")
	out := stdout + stderr
	i := strings.Index(out, "-keep-alive")
	if i < 0 {
		t.Fatalf("no --keep-alive in the help:\n%s", out)
	}
	line, _, _ := strings.Cut(out[i:], "\n      -") // the flag's name and its description
	if !strings.Contains(line, "(default 75)") {
		t.Fatalf("--keep-alive help: %q, want (default 75)", line)
	}
}
