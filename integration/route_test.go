package integration

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// routeApp is the ASGI app of the router tests: every HTTP request is
// answered 200 with what the app received (method, raw_path, path, query,
// Host, body length) and "x-app: route-test", so a response proves the
// request reached the app and shows how; /trailers sends a trailer,
// /hold waits for TEST_DIR/release (after creating TEST_DIR/held); a
// WebSocket echoes text as "echo:TEXT".
const routeApp = `import asyncio, json, os

TEST_DIR = os.environ["KRAIT_TEST_DIR"]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": "echo:" + (msg.get("text") or "")})
    n = 0
    while True:
        msg = await receive()
        n += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    if scope["path"] == "/hold":
        open(os.path.join(TEST_DIR, "held"), "w").close()
        for _ in range(6000):
            if os.path.exists(os.path.join(TEST_DIR, "release")):
                break
            await asyncio.sleep(0.01)
    headers = dict(scope["headers"])
    info = {
        "method": scope["method"],
        "raw_path": scope["raw_path"].decode("latin-1"),
        "path": scope["path"],
        "query": scope["query_string"].decode("latin-1"),
        "host": headers.get(b"host", b"").decode("latin-1"),
        "body": n,
    }
    body = json.dumps(info, sort_keys=True).encode()
    if scope["path"] == "/trailers":
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/json"), (b"x-app", b"route-test")]})
        await send({"type": "http.response.body", "body": body})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc123")]})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-app", b"route-test"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
`

// startRouteApp writes routeApp to a temporary directory and serves it
// with the access log in that directory; it returns krait, the app's
// KRAIT_TEST_DIR and the access log's path.
func startRouteApp(t *testing.T, extra ...string) (k *Krait, dir, accessLog string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "routeapp.py"), []byte(routeApp), 0o644); err != nil {
		t.Fatal(err)
	}
	accessLog = filepath.Join(dir, "access.log")
	args := []string{"routeapp:app", "--chdir", dir, "--env", "KRAIT_TEST_DIR=" + dir, "--access-logfile", accessLog}
	k = startKrait(t, nil, append(args, extra...)...)
	return k, dir, accessLog
}

// accessLines waits until the access log holds n lines and returns them;
// more than n is a failure too.
func accessLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	deadline := time.Now().Add(ioTimeout)
	for {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(b) == 0 {
			lines = nil
		}
		if len(lines) >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling a file, not synchronising on time
	}
	if len(lines) != n {
		t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), n, strings.Join(lines, "\n"))
	}
	return lines
}

type routeInfo struct {
	Method  string `json:"method"`
	RawPath string `json:"raw_path"`
	Path    string `json:"path"`
	Query   string `json:"query"`
	Host    string `json:"host"`
	Body    int    `json:"body"`
}

// TestRouteRawTargetsReachApp: with the router in front of the app,
// requests whose targets a router could be tempted to decode or normalize
// ("//x", "/%2F", encoded dot segments, absolute-form, OPTIONS *) all
// reach the app unchanged, one after another on one keep-alive
// connection, and the access log (global middleware around the router)
// records each with its target as sent.
func TestRouteRawTargetsReachApp(t *testing.T) {
	k, _, accessLog := startRouteApp(t)
	cases := []struct {
		method, target, body string
		want                 routeInfo
	}{
		{"GET", "//x", "", routeInfo{Method: "GET", RawPath: "//x", Path: "//x", Host: "route.test"}},
		{"GET", "/%2F", "", routeInfo{Method: "GET", RawPath: "/%2F", Path: "//", Host: "route.test"}},
		{"GET", "/static%2F..%2Fapp?q=%2F", "", routeInfo{Method: "GET", RawPath: "/static%2F..%2Fapp", Path: "/static/../app", Query: "q=%2F", Host: "route.test"}},
		{"GET", "/%2e%2e/a//b/", "", routeInfo{Method: "GET", RawPath: "/%2e%2e/a//b/", Path: "/../a//b/", Host: "route.test"}},
		{"POST", "/%2F%2f", "hello", routeInfo{Method: "POST", RawPath: "/%2F%2f", Path: "///", Host: "route.test", Body: 5}},
		{"GET", "http://Other.Example:9/abs/%2F?x", "", routeInfo{Method: "GET", RawPath: "/abs/%2F", Path: "/abs//", Query: "x", Host: "route.test"}},
		{"OPTIONS", "*", "", routeInfo{Method: "OPTIONS", RawPath: "*", Path: "*", Host: "route.test"}},
	}
	c := dial(t, k.Addr())
	setDeadline(c)
	br := bufio.NewReader(c)
	for i, tc := range cases {
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: route.test\r\nContent-Length: %d\r\n\r\n%s", tc.method, tc.target, len(tc.body), tc.body)
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatalf("request %d (%s %s): write on the keep-alive connection: %v", i, tc.method, tc.target, err)
		}
		resps, err := readResponses(br, 1, tc.method)
		if len(resps) != 1 {
			t.Fatalf("request %d (%s %s): no response on the keep-alive connection: %v", i, tc.method, tc.target, err)
		}
		resp := resps[0]
		if resp.Status != 200 || resp.Header.Get("X-App") != "route-test" {
			t.Fatalf("%s %s: status %d, X-App %q (body %q): the app did not answer", tc.method, tc.target, resp.Status, resp.Header.Get("X-App"), resp.Body)
		}
		if resp.Header.Get("Connection") == "close" {
			t.Errorf("%s %s: Connection: close, want keep-alive", tc.method, tc.target)
		}
		var got routeInfo
		if err := json.Unmarshal(resp.Body, &got); err != nil {
			t.Fatalf("%s %s: not JSON %q: %v", tc.method, tc.target, resp.Body, err)
		}
		if got != tc.want {
			t.Errorf("%s %s reached the app as %+v, want %+v", tc.method, tc.target, got, tc.want)
		}
	}
	lines := accessLines(t, accessLog, len(cases))
	for i, tc := range cases {
		want := fmt.Sprintf(`"%s %s HTTP/1.1" 200 `, tc.method, tc.target)
		if !strings.HasPrefix(lines[i], "127.0.0.1 - - [") || !strings.Contains(lines[i], want) {
			t.Errorf("access log line %d = %q, want it to record %s", i, lines[i], want)
		}
	}
}

// TestRouteKeepsEngineCapabilities: the router passes the engine's writer
// through untouched, so with the access log wrapped around it a WebSocket
// upgrade still hijacks the connection (101, echo) and ASGI trailers
// still reach the client; the access log records both, exactly once each.
func TestRouteKeepsEngineCapabilities(t *testing.T) {
	k, _, accessLog := startRouteApp(t)

	ws := wsDial(t, k, "/ws//%2F", nil)
	if ws.Resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("WebSocket handshake status %d", ws.Resp.StatusCode)
	}
	wsWriteText(t, ws, "ping")
	if got := wsReadText(t, ws); got != "echo:ping" {
		t.Fatalf("WebSocket echo %q, want %q", got, "echo:ping")
	}
	wsClose(t, ws, websocket.StatusNormalClosure, "")
	// The WebSocket's line is written when its handler returns.
	accessLines(t, accessLog, 1)

	req := mustRequest(t, "GET", k.URL("/trailers"), nil)
	req.Header.Set("TE", "trailers")
	resp, body := k.Do(req)
	if resp.StatusCode != 200 || resp.Header.Get("X-App") != "route-test" {
		t.Fatalf("trailers: status %d, body %q", resp.StatusCode, body)
	}
	if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
		t.Errorf("trailer X-Checksum = %q (trailers %v), want abc123", got, resp.Trailer)
	}

	lines := accessLines(t, accessLog, 2)
	if !strings.Contains(lines[0], `"GET /ws//%2F HTTP/1.1" 101 `) {
		t.Errorf("access log line for the WebSocket: %q, want 101", lines[0])
	}
	if !strings.Contains(lines[1], `"GET /trailers HTTP/1.1" 200 `) {
		t.Errorf("access log line for the trailers: %q, want 200", lines[1])
	}
}

// TestRouteListenersStopTogether: each listener is served by its own
// engine with the router's view of it; both serve the app, and a graceful
// stop shuts every engine down at once: while a request is still in
// flight on the first listener, the second (a unix socket) already
// refuses connections, and the held request then finishes with 200.
func TestRouteListenersStopTogether(t *testing.T) {
	sockDir, err := os.MkdirTemp("", "krait") // socket paths are limited to ~107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "r.sock")
	// The graceful timeout outlasts the wait below, so a listener that
	// keeps accepting is seen as such, not as one closed at the timeout.
	k, dir, accessLog := startRouteApp(t, "-b", "127.0.0.1:0", "-b", "unix:"+sock, "--graceful-timeout", "120")
	if len(k.Addrs) != 2 || k.Addrs[1] != "unix:"+sock {
		t.Fatalf("listeners %v, want a TCP one and unix:%s", k.Addrs, sock)
	}

	// Both listeners route to the app.
	for _, addr := range k.Addrs {
		resp, _ := rawRoundTrip(t, addr, "GET /both HTTP/1.1\r\nHost: h\r\n\r\n", "GET")
		if resp.Status != 200 || resp.Header.Get("X-App") != "route-test" {
			t.Fatalf("%s: status %d, X-App %q", addr, resp.Status, resp.Header.Get("X-App"))
		}
	}
	lines := accessLines(t, accessLog, 2)
	if !strings.HasPrefix(lines[0], "127.0.0.1 - - ") || !strings.HasPrefix(lines[1], "- - - ") ||
		!strings.Contains(lines[0], `"GET /both HTTP/1.1" 200 `) || !strings.Contains(lines[1], `"GET /both HTTP/1.1" 200 `) {
		t.Fatalf("access log for the TCP and the unix listener:\n%s", strings.Join(lines, "\n"))
	}

	// Hold a request on the TCP listener, then stop gracefully.
	held := dial(t, k.Addrs[0])
	setDeadline(held)
	if _, err := io.WriteString(held, "GET /hold HTTP/1.1\r\nHost: h\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(dir, "held"), ioTimeout)
	k.Signal(syscall.SIGTERM)
	k.MustWaitLog(regexp.MustCompile(`msg="stopping gracefully"`))

	// The unix listener must stop accepting while the TCP request is in
	// flight (it is released only below); its engine must not wait for
	// the other one's requests to drain.
	deadline := time.Now().Add(ioTimeout)
	for {
		c, err := net.DialTimeout("unix", sock, ioTimeout)
		if err != nil {
			if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.ENOENT) {
				t.Fatalf("dial the stopped unix listener: %v, want refused or gone", err)
			}
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the unix listener still accepts %v after SIGTERM while a request is in flight on the other listener", ioTimeout)
		}
		time.Sleep(5 * time.Millisecond) // polling a listener's state, not synchronising on time
	}
	select {
	case <-k.done:
		t.Fatalf("krait exited (status %d) before the held request was released", k.exitCode)
	default:
	}

	touch(t, filepath.Join(dir, "release"))
	setDeadline(held)
	resps, err := readResponses(bufio.NewReader(held), 1, "GET")
	if len(resps) != 1 || resps[0].Status != 200 {
		t.Fatalf("the held request did not finish with 200: %v %v", resps, err)
	}
	if code, ok := k.WaitExit(stopTimeout); !ok || code != 0 {
		t.Fatalf("exit status %d (exited %v), want 0; log:\n%s", code, ok, k.Log())
	}
	accessLines(t, accessLog, 3)
}
