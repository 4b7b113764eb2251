package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/dispatch"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
)

// Tests of response limits, HEAD, Expect: 100-continue and the protocol's
// constants; the apps are python/tests/apps/resp_wsgi.py and resp_asgi.py.

// startResp serves resp_wsgi:application or resp_asgi:app with a fresh
// KRAIT_TEST_DIR; it returns krait and that directory.
func startResp(t *testing.T, app string, extra ...string) (*Krait, string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{app, "--chdir", filepath.Join(repoRoot, "python", "tests", "apps"), "--env", "KRAIT_TEST_DIR=" + dir}
	k := startKrait(t, nil, append(args, extra...)...)
	// The limit is the app's error: the worker must never be killed for it.
	k.Forbid("worker protocol error", "killing it", "killing the worker", "the worker died")
	return k, dir
}

// workerPid asks the app for its worker's pid.
func workerPid(t *testing.T, k *Krait) string {
	t.Helper()
	resp, body := k.Get("/pid")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /pid: %d %q", resp.StatusCode, body)
	}
	return body
}

// blockBystanders starts n requests that wait in the app until released,
// and returns once all n are inside it. wait collects their answers.
func blockBystanders(t *testing.T, k *Krait, dir string, n int) (wait func() []string) {
	t.Helper()
	results := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Own transport: one connection each, never shared with the test's requests.
			c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * ioTimeout}
			resp, err := c.Get(k.URL("/block?" + strconv.Itoa(i)))
			if err != nil {
				results[i] = "error: " + err.Error()
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				results[i] = fmt.Sprintf("%d, body error: %v", resp.StatusCode, err)
				return
			}
			results[i] = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
	}
	// On failure too: a blocked request would hold up krait's stop.
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(dir, "release"), nil, 0o644) })
	for i := range n {
		waitFile(t, filepath.Join(dir, "entered-"+strconv.Itoa(i)), ioTimeout)
	}
	return func() []string {
		t.Helper()
		touch(t, filepath.Join(dir, "release"))
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * ioTimeout):
			t.Fatalf("the bystanders did not finish within %v", 2*ioTimeout)
		}
		return results
	}
}

func regexpQuote(s string) *regexp.Regexp { return regexp.MustCompile(regexp.QuoteMeta(s)) }

// checkOversized asserts that path gets a 500 and krait logs the limit.
func checkOversized(t *testing.T, k *Krait, path, logNeedle string) {
	t.Helper()
	off := k.LogLen()
	resp, body := k.Get(path)
	if resp.StatusCode != 500 {
		t.Errorf("GET %s: %d (X-Huge %d bytes), want 500", path, resp.StatusCode, len(resp.Header.Get("X-Huge")))
		return
	}
	if strings.Contains(body, "aaaa") {
		t.Errorf("GET %s: the 500 carries the app's header bytes: %.80q", path, body)
	}
	if _, ok := k.WaitLogFrom(off, regexpQuote(logNeedle), ioTimeout); !ok {
		t.Errorf("GET %s: no log line with %q; log:\n%s", path, logNeedle, k.Log()[off:])
	}
}

func TestRespHeadLimit(t *testing.T) {
	const limit = dispatch.MaxResponseHead
	for _, tc := range []struct {
		name, app string
		args      []string
		fill      int // X-Huge's length in a head of exactly the limit
	}{
		// "200 OK" + Content-Type, Content-Length: 2 and X-Huge itself.
		{"wsgi", "resp_wsgi:application", []string{"--threads", "4"}, limit - 6 - 26 - 19 - 10},
		// An ASGI status counts 3.
		{"asgi", "resp_asgi:app", nil, limit - 3 - 26 - 19 - 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, dir := startResp(t, tc.app, tc.args...)
			pid := workerPid(t, k)
			release := blockBystanders(t, k, dir, 3)

			// The two cases, one byte over, and (WSGI) from a generator.
			paths := []string{"/huge", "/many", "/head?" + strconv.Itoa(limit+1)}
			if tc.name == "wsgi" {
				paths = append(paths, "/huge-stream?"+strconv.Itoa(limit+1))
			}
			for _, p := range paths {
				checkOversized(t, k, p, "over krait's limit of 65536 bytes")
			}
			// Exactly at the limit passes, whole.
			resp, body := k.Get("/head?" + strconv.Itoa(limit))
			if resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("a head of exactly %d bytes: %d %q", limit, resp.StatusCode, body)
			}
			if got := len(resp.Header.Get("X-Huge")); got != tc.fill {
				t.Fatalf("X-Huge is %d bytes, want %d", got, tc.fill)
			}

			for i, r := range release() {
				if want := "200 released " + strconv.Itoa(i); r != want {
					t.Errorf("bystander %d: %q, want %q", i, r, want)
				}
			}
			if got := workerPid(t, k); got != pid {
				t.Errorf("worker pid %s after the oversized responses, was %s: the worker was replaced", got, pid)
			}
		})
	}
}

// TestRespHeadLimitKraitSide checks krait's own check (the backstop for an
// adapter that does not enforce the limit): the app turns the adapter's
// check off, so the oversized head reaches krait inside one frame.
func TestRespHeadLimitKraitSide(t *testing.T) {
	const limit = dispatch.MaxResponseHead
	k, _ := startResp(t, "resp_wsgi:application")
	pid := workerPid(t, k)
	resp, body := k.Get("/bypass?" + strconv.Itoa(limit))
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("a head of exactly %d bytes: %d %q", limit, resp.StatusCode, body)
	}
	checkOversized(t, k, "/bypass?"+strconv.Itoa(limit+1), "the response head is over 65536 bytes")
	checkOversized(t, k, "/bypass?"+strconv.Itoa(200_000), "the response head is over 65536 bytes")
	if got := workerPid(t, k); got != pid {
		t.Errorf("worker pid %s, was %s: the worker was replaced", got, pid)
	}
}

// TestRespASGIFieldLimits: trailers and early hints have the same limit;
// over it, trailers abort the started response, an early hint gives 500.
func TestRespASGIFieldLimits(t *testing.T) {
	const limit = dispatch.MaxResponseHead
	k, _ := startResp(t, "resp_asgi:app")
	pid := workerPid(t, k)

	get := func(path string) (*http.Response, string, error) {
		resp, err := k.Client().Get(k.URL(path))
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, string(b), err
	}
	// Raw: Go's client refuses trailers over 4 KiB itself.
	rc := dialRaw(t, k.Addr())
	rc.send("GET /trailers?" + strconv.Itoa(limit) + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	all, err := readAllUntilClose(rc.c, ioTimeout)
	wantEnd := "\r\n7\r\npartial\r\n0\r\nx-trailer: " + strings.Repeat("t", limit-len("x-trailer")-4) + "\r\n\r\n"
	if err != nil || !strings.HasPrefix(string(all), "HTTP/1.1 200 ") || !strings.HasSuffix(string(all), wantEnd) {
		t.Fatalf("trailers at the limit: %v, response ends %q", err, all[max(0, len(all)-200):])
	}
	off := k.LogLen()
	_, _, err = get("/trailers?" + strconv.Itoa(limit+1))
	if err == nil {
		t.Fatalf("trailers over the limit: the response ended cleanly, want it aborted")
	}
	if _, ok := k.WaitLogFrom(off, regexpQuote("over krait's limit of 65536 bytes"), ioTimeout); !ok {
		t.Errorf("no log line naming the limit; log:\n%s", k.Log()[off:])
	}

	resp, body, err := get("/early-hint?" + strconv.Itoa(limit))
	if err != nil || resp.StatusCode != 200 || body != "after hint" {
		t.Fatalf("early hint at the limit: %v %v %q", err, resp, body)
	}
	checkOversized(t, k, "/early-hint?"+strconv.Itoa(limit+1), "over krait's limit of 65536 bytes")
	if got := workerPid(t, k); got != pid {
		t.Errorf("worker pid %s, was %s: the worker was replaced", got, pid)
	}
}

// rawConn is a client connection read response by response.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	c := dial(t, addr)
	setDeadline(c)
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("write: %v", err)
	}
}

// read reads one response to a request of method.
func (rc *rawConn) read(method string) rawResponse {
	rc.t.Helper()
	rs, err := readResponses(rc.r, 1, method)
	if len(rs) != 1 || err != nil {
		rc.t.Fatalf("no complete response to %s: %v", method, err)
	}
	return rs[0]
}

// TestRespHEAD: an app that answers HEAD with the GET's Content-Length and
// no body (Werkzeug, Starlette) keeps the connection, keep-alive and
// pipelined; the Content-Length is passed through.
func TestRespHEAD(t *testing.T) {
	type target struct{ path, length string }
	check := func(t *testing.T, k *Krait, targets []target) {
		t.Helper()
		k.Forbid("less body than its Content-Length")
		for _, tg := range targets {
			// One after another on one connection, then pipelined.
			rc := dialRaw(t, k.Addr())
			for range 2 {
				rc.send("HEAD " + tg.path + " HTTP/1.1\r\nHost: t\r\n\r\n")
				h := rc.read("HEAD")
				rc.send("GET " + tg.path + " HTTP/1.1\r\nHost: t\r\n\r\n")
				g := rc.read("GET")
				if h.Status != g.Status || h.Header.Get("Content-Length") != tg.length || len(h.Body) != 0 {
					t.Fatalf("HEAD %s: %d Content-Length %q body %d bytes; GET %d; want Content-Length %q",
						tg.path, h.Status, h.Header.Get("Content-Length"), len(h.Body), g.Status, tg.length)
				}
				if tg.length != "" && strconv.Itoa(len(g.Body)) != tg.length {
					t.Fatalf("GET %s: %d bytes, HEAD said %s", tg.path, len(g.Body), tg.length)
				}
			}
			rc = dialRaw(t, k.Addr())
			rc.send(strings.Repeat("HEAD "+tg.path+" HTTP/1.1\r\nHost: t\r\n\r\nGET "+tg.path+" HTTP/1.1\r\nHost: t\r\n\r\n", 2) +
				"HEAD " + tg.path + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
			for i, m := range []string{"HEAD", "GET", "HEAD", "GET", "HEAD"} {
				r := rc.read(m)
				if r.Status != 200 && r.Status != 304 {
					t.Fatalf("pipelined %s %s (#%d): status %d", m, tg.path, i, r.Status)
				}
				if m == "HEAD" && (r.Header.Get("Content-Length") != tg.length || len(r.Body) != 0) {
					t.Fatalf("pipelined HEAD %s (#%d): Content-Length %q, body %d bytes", tg.path, i, r.Header.Get("Content-Length"), len(r.Body))
				}
			}
			if rest, err := readAllUntilClose(rc.c, ioTimeout); len(rest) != 0 || err != nil {
				t.Fatalf("after the pipelined requests: %q %v, want a clean close", rest, err)
			}
		}
	}
	t.Run("flask", func(t *testing.T) {
		k := startKrait(t, []string{"flask"}, "app:app", "--chdir", testdataDir("flaskapp"))
		_, body := k.Get("/api/items/7")
		check(t, k, []target{{"/api/items/7", strconv.Itoa(len(body))}})
	})
	t.Run("wsgi", func(t *testing.T) {
		k, _ := startResp(t, "resp_wsgi:application")
		check(t, k, []target{{"/head-aware", "1234"}, {"/head-unaware", "777"}})
		// No Content-Length and no body for HEAD: none is invented.
		rc := dialRaw(t, k.Addr())
		rc.send("HEAD /head-nolength HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
		if r := rc.read("HEAD"); r.Status != 200 || r.Header.Get("Content-Length") != "" || r.Header.Get("Transfer-Encoding") != "" {
			t.Fatalf("HEAD /head-nolength: %d Content-Length %q Transfer-Encoding %q", r.Status, r.Header.Get("Content-Length"), r.Header.Get("Transfer-Encoding"))
		}
		if r := rc.read("GET"); r.Status != 404 {
			t.Fatalf("the request after HEAD /head-nolength: %d", r.Status)
		}
		// A 304 with the full response's Content-Length keeps the connection too.
		rc.send("GET /not-modified HTTP/1.1\r\nHost: t\r\n\r\nGET /pid HTTP/1.1\r\nHost: t\r\n\r\n")
		if r := rc.read("GET"); r.Status != 304 || len(r.Body) != 0 {
			t.Fatalf("GET /not-modified: %d, %d body bytes", r.Status, len(r.Body))
		}
		if r := rc.read("GET"); r.Status != 200 {
			t.Fatalf("the request after a 304: %d", r.Status)
		}
	})
	t.Run("asgi", func(t *testing.T) {
		k, _ := startResp(t, "resp_asgi:app")
		check(t, k, []target{{"/head-aware", "1234"}})
	})
}

// expectHead is a request head that waits for 100 Continue.
func expectHead(path, length string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + length + "\r\nExpect: 100-continue\r\n\r\n"
}

const continueLine = "HTTP/1.1 100 Continue\r\n\r\n"

// readContinue reads exactly the 100 Continue interim response.
func readContinue(t *testing.T, rc *rawConn) {
	t.Helper()
	b := make([]byte, len(continueLine))
	if _, err := io.ReadFull(rc.r, b); err != nil || string(b) != continueLine {
		t.Fatalf("want %q, got %q (%v)", continueLine, b, err)
	}
}

// TestRespContinueHoldsNoWorker: a client that was sent 100 Continue (or
// announced a body without Expect) but sends nothing holds no worker: with
// one worker of one thread, another client is served meanwhile.
func TestRespContinueHoldsNoWorker(t *testing.T) {
	// A long body timeout: the waiting clients stay open for the whole test.
	k, _ := startResp(t, "resp_wsgi:application", "-w", "1", "--threads", "1", "--header-timeout", "120")
	// Before the fix the only worker waited for the first client's body
	// until the body timeout (120 s here); 15 s is ample for a round trip.
	served := func(while string) {
		t.Helper()
		c := &http.Client{Timeout: 15 * time.Second}
		resp, err := c.Get(k.URL("/pid"))
		if err != nil {
			t.Fatalf("a request while %s: %v", while, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("a request while %s: %d", while, resp.StatusCode)
		}
	}
	waiting := dialRaw(t, k.Addr())
	waiting.send(expectHead("/upload", "1000000000"))
	readContinue(t, waiting)
	served("a client that was sent 100 Continue owes its body")

	silent := dialRaw(t, k.Addr())
	silent.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n")
	chunked := dialRaw(t, k.Addr())
	chunked.send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n")
	readContinue(t, chunked)
	served("three clients owe their bodies")

	// The waiting clients are still open and were answered nothing.
	for _, rc := range []*rawConn{waiting, silent, chunked} {
		_ = rc.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if b, err := rc.r.ReadByte(); err == nil || !isTimeout(err) {
			t.Fatalf("a client still owing its body got %q / %v, want nothing (a read timeout)", b, err)
		}
		setDeadline(rc.c)
	}
	// The body, once sent, is served in full (the pump starts with the
	// bytes read before the worker was taken).
	body := strings.Repeat("0123456789", 30_000)
	up := dialRaw(t, k.Addr())
	up.send(expectHead("/upload", strconv.Itoa(len(body))))
	readContinue(t, up)
	up.send(body)
	if r := up.read("POST"); r.Status != 200 || string(r.Body) != strconv.Itoa(len(body)) {
		t.Fatalf("upload after 100 Continue: %d %q", r.Status, r.Body)
	}
	chunked.send("5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
	if r := chunked.read("POST"); r.Status != 200 || string(r.Body) != "8" {
		t.Fatalf("chunked upload after 100 Continue: %d %q", r.Status, r.Body)
	}
}

// TestRespContinueTimeout: a client that never sends the body it was sent
// 100 Continue for gets 408 and the connection closed.
func TestRespContinueTimeout(t *testing.T) {
	k, _ := startResp(t, "resp_wsgi:application", "-w", "1", "--threads", "1", "--header-timeout", "1")
	rc := dialRaw(t, k.Addr())
	rc.send(expectHead("/upload", "1000000000"))
	readContinue(t, rc)
	r := rc.read("POST")
	if r.Status != 408 {
		t.Fatalf("status %d, want 408", r.Status)
	}
	if rest, err := readAllUntilClose(rc.c, ioTimeout); len(rest) != 0 || err != nil {
		t.Fatalf("after the 408: %q %v, want the connection closed", rest, err)
	}
	// Nothing of it reached the app: the worker serves the next request.
	if resp, _ := k.Get("/pid"); resp.StatusCode != 200 {
		t.Fatalf("after the 408: %d", resp.StatusCode)
	}
}

// TestRespContinueRefusedWhenFull: when no worker could take the request
// (every slot busy, no queue), 503 comes instead of 100 Continue, so the
// client never sends the body.
func TestRespContinueRefusedWhenFull(t *testing.T) {
	k, dir := startResp(t, "resp_wsgi:application", "-w", "1", "--threads", "1", "--max-queue", "0")
	release := blockBystanders(t, k, dir, 1)
	for _, h := range []string{
		expectHead("/upload", "1000"),       // read before a slot is taken
		expectHead("/upload", "1000000000"), // streamed
		"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
	} {
		rc := dialRaw(t, k.Addr())
		rc.send(h)
		line, err := rc.r.ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 503 ") {
			t.Fatalf("%q: first response line %q (%v), want 503 without 100 Continue", firstLine(h), line, err)
		}
	}
	if rs := release(); rs[0] != "200 released 0" {
		t.Fatalf("the blocked request: %q", rs[0])
	}
	// With the slot free again, the same request is served.
	rc := dialRaw(t, k.Addr())
	rc.send(expectHead("/upload", "5"))
	readContinue(t, rc)
	rc.send("hello")
	if r := rc.read("POST"); r.Status != 200 || string(r.Body) != "5" {
		t.Fatalf("upload with a free slot: %d %q", r.Status, r.Body)
	}
}

// TestRespProtocolConstants checks the frame types, flags and limits of
// the Go side (internal/wire and friends) against the Python adapter's
// (python/krait_worker/protocol.py), in both directions, and which flags
// each side's frame reader accepts on each frame type.
func TestRespProtocolConstants(t *testing.T) {
	python := testPython(t)
	const script = `
import json, sys
from krait_worker import protocol as p
consts = {k: v for k, v in vars(p).items() if k.isupper() and type(v) is int}
allowed = {}
for t in range(1, 256):
    mask = 0
    for bit in range(8):
        fb = p.FrameBuffer()
        fb.tail()[:12] = p.HEADER.pack(0, t, 1 << bit, 0, 1)
        fb.filled(12)
        try:
            fb.decode(lambda *a: None)
            mask |= 1 << bit
        except p.ProtocolError:
            pass
    allowed[t] = mask
print(json.dumps({"consts": consts, "allowed": allowed, "header_size": p.HEADER.size}))
`
	cmd := exec.Command(python, "-c", script)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(repoRoot, "python"))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("running the Python side: %v\n%s", err, stderr)
	}
	var py struct {
		Consts     map[string]int64 `json:"consts"`
		Allowed    map[string]uint8 `json:"allowed"`
		HeaderSize int              `json:"header_size"`
	}
	if err := json.Unmarshal(out, &py); err != nil {
		t.Fatalf("decoding %q: %v", out, err)
	}

	goSide := map[string]int64{
		"PROTOCOL_VERSION": worker.ProtocolVersion,
		"HEADER_SIZE":      wire.HeaderSize,
		"MAX_PAYLOAD":      wire.MaxPayload,
		"INITIAL_WINDOW":   wire.InitialWindow,
		"MAX_HEAD":         dispatch.MaxResponseHead,
		"MAX_PING_PAYLOAD": wire.MaxPingPayload,
		"END_STREAM":       wire.FlagEndStream,
		"WS_BINARY":        wire.FlagBinary,
		"WS_MORE":          wire.FlagMore,
	}
	var types []wire.Type
	for v := 1; v < 256; v++ {
		if name := wire.Type(v).String(); !strings.HasPrefix(name, "0x") {
			goSide[name] = int64(v)
			types = append(types, wire.Type(v))
		}
	}
	// Python-only constants: the worker's exit statuses (krait reports the
	// status, docs/protocol.md defines them) and its read buffer sizes.
	pythonOnly := map[string]bool{"EXIT_OK": true, "EXIT_BOOT_ERROR": true, "EXIT_PROTOCOL_ERROR": true,
		"BUFFER_SIZE": true, "MIN_READ": true}

	for name, v := range goSide {
		pv, ok := py.Consts[name]
		switch {
		case !ok:
			t.Errorf("Go has %s = %#x; protocol.py has no %s", name, v, name)
		case pv != v:
			t.Errorf("%s: Go %#x, protocol.py %#x", name, v, pv)
		}
	}
	for name, v := range py.Consts {
		if _, ok := goSide[name]; !ok && !pythonOnly[name] {
			t.Errorf("protocol.py has %s = %#x; the Go side has no such constant (or this test does not know it)", name, v)
		}
	}
	if py.HeaderSize != wire.HeaderSize {
		t.Errorf("Python's HEADER packs %d bytes, Go's header is %d", py.HeaderSize, wire.HeaderSize)
	}
	// Which flag bits each side's reader accepts, per frame type.
	for _, ft := range types {
		var goMask uint8
		for bit := range 8 {
			h := wire.AppendHeader(nil, 0, ft, 1<<bit, 1)
			if _, err := wire.ParseHeader(h); err == nil {
				goMask |= 1 << bit
			}
		}
		if pm := py.Allowed[strconv.Itoa(int(ft))]; pm != goMask {
			t.Errorf("flags accepted on %v: Go %#02x, Python %#02x", ft, goMask, pm)
		}
	}
	if len(types) != 18 {
		t.Errorf("Go knows %d frame types, want the 18 of docs/protocol.md", len(types))
	}
}
