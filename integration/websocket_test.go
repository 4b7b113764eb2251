package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsOptions are the client's dial options.
type wsOptions = websocket.DialOptions

const (
	wsText   = websocket.MessageText
	wsBinary = websocket.MessageBinary
)

// wsConn is a client WebSocket connection to krait.
type wsConn struct {
	*websocket.Conn
	Resp *http.Response // the handshake response
}

func wsURL(k *Krait, path string) string { return "ws://" + k.Addr() + path }

// wsDial opens a WebSocket to path, failing the test if the handshake
// fails; the connection is closed at cleanup.
func wsDial(t *testing.T, k *Krait, path string, opts *wsOptions) *wsConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(k, path), opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("WebSocket dial %s: %v (status %d)\nkrait log:\n%s", path, err, status, k.Log())
	}
	c.SetReadLimit(64 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &wsConn{Conn: c, Resp: resp}
}

// wsDialStatus dials path expecting the handshake to be refused; it returns
// the HTTP status of the refusal.
func wsDialStatus(t *testing.T, k *Krait, path string) int {
	t.Helper()
	resp, _ := wsDialRefused(t, k, path)
	return resp.StatusCode
}

// wsDialRefused dials path expecting a refusal; it returns the response and
// the start of its body.
func wsDialRefused(t *testing.T, k *Krait, path string) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, wsURL(k, path), nil)
	if err == nil {
		c.CloseNow()
		t.Fatalf("WebSocket dial %s succeeded; want a refusal", path)
	}
	if resp == nil {
		t.Fatalf("WebSocket dial %s: no HTTP response: %v", path, err)
	}
	var body []byte
	if resp.Body != nil {
		body, _ = io.ReadAll(resp.Body)
	}
	return resp, body
}

func wsCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), ioTimeout)
}

func wsWrite(t *testing.T, c *wsConn, typ websocket.MessageType, b []byte) {
	t.Helper()
	ctx, cancel := wsCtx()
	defer cancel()
	if err := c.Write(ctx, typ, b); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
}

func wsWriteText(t *testing.T, c *wsConn, s string) { t.Helper(); wsWrite(t, c, wsText, []byte(s)) }

func wsWriteBinary(t *testing.T, c *wsConn, b []byte) { t.Helper(); wsWrite(t, c, wsBinary, b) }

func wsRead(t *testing.T, c *wsConn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := wsCtx()
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("WebSocket read: %v", err)
	}
	return typ, b
}

func wsReadText(t *testing.T, c *wsConn) string {
	t.Helper()
	typ, b := wsRead(t, c)
	if typ != wsText {
		t.Fatalf("got a %v message %q, want text", typ, b)
	}
	return string(b)
}

func wsReadJSON(t *testing.T, c *wsConn) map[string]any {
	t.Helper()
	s := wsReadText(t, c)
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("not JSON: %q: %v", s, err)
	}
	return m
}

// wsClose does the closing handshake from the client side.
func wsClose(t *testing.T, c *wsConn, code websocket.StatusCode, reason string) {
	t.Helper()
	if err := c.Close(code, reason); err != nil {
		t.Errorf("WebSocket close %d: %v", code, err)
	}
}

// wsExpectClose reads until the server closes; it returns the close code
// and reason (-1 when the connection ended without a close frame).
func wsExpectClose(t *testing.T, c *wsConn) (websocket.StatusCode, string) {
	t.Helper()
	ctx, cancel := wsCtx()
	defer cancel()
	for {
		typ, b, err := c.Read(ctx)
		if err == nil {
			t.Errorf("a message before the close: %v %q", typ, truncate(b))
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Reason
		}
		if ctx.Err() != nil {
			t.Fatalf("the server did not close the WebSocket: %v", err)
		}
		return -1, err.Error()
	}
}

func truncate(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func TestWebSocketAcceptEchoClose(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketAcceptEchoClose(t, al) })
}

func testWebSocketAcceptEchoClose(t *testing.T, al *accessLog) {
	k, dir := startASGI(t, "", al.args()...)
	c := wsDial(t, k, "/ws/echo?tag=e1", &wsOptions{
		Subprotocols: []string{"chat.v2", "chat.v1"},
		HTTPHeader:   http.Header{"X-Client": {"go"}},
	})
	t.Run("accept with subprotocol and headers", func(t *testing.T) {
		if c.Subprotocol() != "chat.v2" {
			t.Errorf("subprotocol %q, want chat.v2", c.Subprotocol())
		}
		if got := c.Resp.Header.Get("X-Krait-Test"); got != "accepted" {
			t.Errorf("accept header X-Krait-Test = %q", got)
		}
	})
	t.Run("scope", func(t *testing.T) {
		wsWriteText(t, c, "scope")
		m := wsReadJSON(t, c)
		if m["type"] != "websocket" || m["scheme"] != "ws" || m["path"] != "/ws/echo" || m["query_string"] != "tag=e1" {
			t.Errorf("scope %v", m)
		}
		if sp, _ := m["subprotocols"].([]any); len(sp) != 2 || sp[0] != "chat.v2" || sp[1] != "chat.v1" {
			t.Errorf("subprotocols %v", m["subprotocols"])
		}
		if _, ok := m["method"]; ok {
			t.Errorf("websocket scope has a method: %v", m["method"])
		}
		var sawClient bool
		for _, h := range m["headers"].([]any) {
			p := h.([]any)
			sawClient = sawClient || (p[0] == "x-client" && p[1] == "go")
		}
		if !sawClient {
			t.Errorf("headers %v lack x-client", m["headers"])
		}
	})
	t.Run("text and binary", func(t *testing.T) {
		wsWriteText(t, c, "héllo wörld")
		if got := wsReadText(t, c); got != "héllo wörld" {
			t.Errorf("text echo %q", got)
		}
		bin := []byte{0, 1, 2, 0xff, 0xfe}
		wsWriteBinary(t, c, bin)
		if typ, got := wsRead(t, c); typ != wsBinary || !bytes.Equal(got, bin) {
			t.Errorf("binary echo %v %v", typ, got)
		}
		big := uploadContent(3 << 20) // larger than one frame of the worker protocol
		wsWriteBinary(t, c, append([]byte("sha "), big...))
		if got := wsReadText(t, c); got != fmt.Sprintf("%d %s", len(big), sha(big)) {
			t.Errorf("3 MiB message: app saw %q", got)
		}
		wsWriteBinary(t, c, big)
		if typ, got := wsRead(t, c); typ != wsBinary || !bytes.Equal(got, big) {
			t.Errorf("3 MiB echo: %v, %d bytes", typ, len(got))
		}
	})
	t.Run("client closes with code and reason", func(t *testing.T) {
		wsClose(t, c, 4001, "client bye")
		waitFileContains(t, events(dir), "ws-disconnect e1 4001 client bye", ioTimeout)
	})
	al.expect(t, `"GET /ws/echo\?tag=e1 HTTP/1\.1" 101 -`)
}

func TestWebSocketServerCloses(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketServerCloses(t, al) })
}

func testWebSocketServerCloses(t *testing.T, al *accessLog) {
	k, dir := startASGI(t, "", al.args()...)
	c := wsDial(t, k, "/ws/echo?tag=s1", nil)
	wsWriteText(t, c, "close 4002 server bye")
	code, reason := wsExpectClose(t, c)
	if code != 4002 || reason != "server bye" {
		t.Errorf("close %d %q, want 4002 %q", code, reason, "server bye")
	}
	waitFileContains(t, events(dir), "ws-closed-by-app s1 4002", ioTimeout)
	// The app learns the connection ended too, with the code it closed with.
	m := waitFileMatch(t, events(dir), regexp.MustCompile(`ws-disconnect s1 (\d+)`), ioTimeout)
	if string(m[1]) != "4002" {
		t.Errorf("the app saw websocket.disconnect %s, want 4002", m[1])
	}
	al.expect(t, `"GET /ws/echo\?tag=s1 HTTP/1\.1" 101 -`)
}

func TestWebSocketRejectAndDeny(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketRejectAndDeny(t, al) })
}

func testWebSocketRejectAndDeny(t *testing.T, al *accessLog) {
	k, dir := startASGI(t, "", al.args()...)
	t.Run("close before accept is 403", func(t *testing.T) {
		if status := wsDialStatus(t, k, "/ws/reject"); status != 403 {
			t.Errorf("status %d, want 403", status)
		}
		waitFileContains(t, events(dir), "ws-reject got websocket.connect", ioTimeout)
	})
	t.Run("denial response extension", func(t *testing.T) {
		resp, body := wsDialRefused(t, k, "/ws/deny")
		if resp.StatusCode != 401 || string(body) != "denied by the app\n" || resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%d %q %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("unknown path closes: 403", func(t *testing.T) {
		if status := wsDialStatus(t, k, "/ws/none"); status != 403 {
			t.Errorf("status %d, want 403", status)
		}
	})
	if resp, _ := k.Get("/scope"); resp.StatusCode != 200 {
		t.Errorf("after refusals: %d", resp.StatusCode)
	}
	al.expect(t,
		`"GET /ws/reject HTTP/1\.1" 403 \d+`,
		`"GET /ws/deny HTTP/1\.1" 401 18`,
		`"GET /ws/none HTTP/1\.1" 403 \d+`,
		`"GET /scope HTTP/1\.1" 200 \d+`,
	)
}

func TestWebSocketFragmentedMessage(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketFragmentedMessage(t, al) })
}

func testWebSocketFragmentedMessage(t *testing.T, al *accessLog) {
	k, _ := startASGI(t, "", al.args()...)
	t.Run("client library fragments", func(t *testing.T) {
		c := wsDial(t, k, "/ws/echo", nil)
		ctx, cancel := wsCtx()
		defer cancel()
		w, err := c.Writer(ctx, wsText)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{"frag", "ment", "ed ✓"} {
			if _, err := w.Write([]byte(part)); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if got := wsReadText(t, c); got != "fragmented ✓" {
			t.Errorf("echo %q", got)
		}
		wsClose(t, c, 1000, "")
	})
	t.Run("raw frames with a ping in between", func(t *testing.T) {
		r := rawWSDial(t, k, "/ws/echo", "")
		r.writeFrame(t, false, opText, []byte("one "))
		r.writeFrame(t, false, opContinuation, []byte("two "))
		r.writeFrame(t, true, opPing, []byte("mid"))
		r.writeFrame(t, true, opContinuation, []byte("three"))
		op, payload, control := r.readMessage(t)
		if op != opText || string(payload) != "one two three" {
			t.Errorf("message op=%d %q, want the reassembled text", op, payload)
		}
		gotPong := false
		for _, f := range control {
			gotPong = gotPong || (f.op == opPong && string(f.payload) == "mid")
		}
		if !gotPong {
			t.Errorf("no pong for the ping between fragments")
		}
		r.writeFrame(t, true, opClose, []byte{0x03, 0xe8})
		if code := r.expectCloseFirst(t); code != 1000 {
			t.Errorf("close echo %d, want 1000", code)
		}
	})
	al.expect(t, `"GET /ws/echo HTTP/1\.1" 101 -`, `"GET /ws/echo HTTP/1\.1" 101 -`)
}

func TestWebSocketMaxSize(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketMaxSize(t, al) })
}

func testWebSocketMaxSize(t *testing.T, al *accessLog) {
	k, dir := startASGI(t, "", al.args("--ws-max-size", "4096")...)
	c := wsDial(t, k, "/ws/echo?tag=m1", nil)
	at := strings.Repeat("x", 4096)
	wsWriteText(t, c, at)
	if got := wsReadText(t, c); got != at {
		t.Errorf("a message of exactly --ws-max-size came back as %d bytes", len(got))
	}
	wsWriteText(t, c, at+"y")
	if code, reason := wsExpectClose(t, c); code != websocket.StatusMessageTooBig {
		t.Errorf("close %d %q, want 1009", code, reason)
	}
	m := waitFileMatch(t, events(dir), regexp.MustCompile(`ws-disconnect m1 (\d+)`), ioTimeout)
	if string(m[1]) != "1009" {
		t.Errorf("the app saw websocket.disconnect %s, want 1009", m[1])
	}

	t.Run("fragmented past the limit", func(t *testing.T) {
		r := rawWSDial(t, k, "/ws/echo?tag=m2", "")
		r.writeFrame(t, false, opBinary, make([]byte, 3000))
		r.writeFrame(t, true, opContinuation, make([]byte, 3000))
		for {
			_, op, payload := r.readFrame(t)
			if op != opClose {
				continue
			}
			if len(payload) < 2 || binary.BigEndian.Uint16(payload) != 1009 {
				t.Errorf("close payload %q, want code 1009", payload)
			}
			break
		}
		m := waitFileMatch(t, events(dir), regexp.MustCompile(`ws-disconnect m2 (\d+)`), ioTimeout)
		if string(m[1]) != "1009" {
			t.Errorf("the app saw websocket.disconnect %s, want 1009", m[1])
		}
	})
	al.expect(t, `"GET /ws/echo\?tag=m1 HTTP/1\.1" 101 -`, `"GET /ws/echo\?tag=m2 HTTP/1\.1" 101 -`)
}

func TestWebSocketPingPong(t *testing.T) {
	t.Run("client ping answered by krait", func(t *testing.T) {
		k, _ := startASGI(t, "")
		c := wsDial(t, k, "/ws/echo", nil)
		ctx := c.CloseRead(context.Background()) // reads (and so sees pongs) in the background
		pctx, cancel := wsCtx()
		defer cancel()
		if err := c.Ping(pctx); err != nil {
			t.Errorf("ping: %v (connection ctx %v)", err, ctx.Err())
		}
	})
	t.Run("krait pings, closes when pongs stop", func(t *testing.T) {
		// The timeout must cover this test answering a ping on a busy
		// machine, or krait gives up while the test is still answering;
		// it only costs its own length once the test stops answering.
		k, dir := startASGI(t, "", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "5")
		r := rawWSDial(t, k, "/ws/idle?tag=p1", "")
		waitFileContains(t, events(dir), "ws-idle-accepted p1", ioTimeout)
		pings := 0
		for pings < 2 {
			_, op, payload := r.readFrame(t)
			if op != opPing {
				t.Fatalf("frame op %d %q, want a ping", op, payload)
			}
			pings++
			r.writeFrame(t, true, opPong, payload) // still alive
		}
		// Now stop answering: krait must give up on the client, dropping
		// the connection (no close frame: the client is unresponsive).
		for {
			_, op, _, err := r.tryReadFrame()
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("krait did not drop the connection within %v of the last pong", ioTimeout)
				}
				break
			}
			if op != opPing {
				t.Fatalf("frame op %d after the pongs stopped, want only pings until the connection drops", op)
			}
		}
		m := waitFileMatch(t, events(dir), regexp.MustCompile(`ws-disconnect p1 (\d+)`), ioTimeout)
		if string(m[1]) != "1006" {
			t.Errorf("the app saw websocket.disconnect %s, want 1006", m[1])
		}
	})
}

func TestWebSocketClientDrops(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketClientDrops(t, al) })
}

func testWebSocketClientDrops(t *testing.T, al *accessLog) {
	k, dir := startASGI(t, "", al.args()...)
	r := rawWSDial(t, k, "/ws/echo?tag=d1", "")
	r.writeFrame(t, true, opText, []byte("hi"))
	if op, p, _ := r.readMessage(t); op != opText || string(p) != "hi" {
		t.Fatalf("echo op %d %q", op, p)
	}
	r.conn.Close() // no close frame
	waitFileContains(t, events(dir), "ws-disconnect d1 1006", ioTimeout)
	al.expect(t, `"GET /ws/echo\?tag=d1 HTTP/1\.1" 101 -`)
}

func TestWebSocketPermessageDeflate(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) { testWebSocketPermessageDeflate(t, al) })
}

func testWebSocketPermessageDeflate(t *testing.T, al *accessLog) {
	k, _ := startASGI(t, "", al.args()...)
	t.Run("Go client", func(t *testing.T) {
		c := wsDial(t, k, "/ws/echo", &wsOptions{CompressionMode: websocket.CompressionContextTakeover})
		ext := c.Resp.Header.Get("Sec-WebSocket-Extensions")
		if !strings.Contains(ext, "permessage-deflate") {
			t.Errorf("Sec-WebSocket-Extensions %q: permessage-deflate not negotiated", ext)
		}
		msg := strings.Repeat("compress me please ", 20000)
		for i := 0; i < 3; i++ {
			wsWriteText(t, c, msg)
			if got := wsReadText(t, c); got != msg {
				t.Errorf("round %d: echo of %d bytes came back as %d", i, len(msg), len(got))
			}
		}
		wsClose(t, c, 1000, "")
	})
	t.Run("raw handshake offer", func(t *testing.T) {
		r := rawWSDial(t, k, "/ws/echo", "permessage-deflate; client_max_window_bits")
		ext := r.resp.Header.Get("Sec-WebSocket-Extensions")
		if !strings.HasPrefix(ext, "permessage-deflate") {
			t.Errorf("Sec-WebSocket-Extensions %q", ext)
		}
	})
	t.Run("Python websockets client", func(t *testing.T) {
		python := testPython(t, "websockets")
		out := runPythonWSClient(t, python, wsURL(k, "/ws/echo?tag=py"))
		var got struct {
			Extensions  string
			Subprotocol string
			Echo        bool
			Binary      bool
			CloseCode   int
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("client printed %q: %v", out, err)
		}
		if !strings.Contains(got.Extensions, "permessage-deflate") || got.Subprotocol != "py.v1" || !got.Echo || !got.Binary || got.CloseCode != 4003 {
			t.Errorf("%+v", got)
		}
	})
}

// pyWSClient is a websockets (asyncio client) session against /ws/echo.
const pyWSClient = `
import asyncio, json, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url):
    async with connect(url, subprotocols=["py.v1"], max_size=None, open_timeout=30) as ws:
        msg = "deflate " * 5000
        await ws.send(msg)
        echo = (await ws.recv()) == msg
        await ws.send(b"\x00\x01" * 1000)
        binary = (await ws.recv()) == b"\x00\x01" * 1000
        await ws.send("close 4003 from app")
        code = None
        try:
            await ws.recv()
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else None
        print(json.dumps({"Extensions": ws.response.headers.get("Sec-WebSocket-Extensions", ""),
                          "Subprotocol": ws.subprotocol or "", "Echo": echo, "Binary": binary,
                          "CloseCode": code}))

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
`

func runPythonWSClient(t *testing.T, python, url string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*ioTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-c", pyWSClient, url)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python websockets client: %v\n%s", err, stderr.String())
	}
	return bytes.TrimSpace(out)
}

// A minimal WebSocket client speaking raw frames, for what a library hides:
// fragments on the wire, pings, answering or not answering them.

const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

type rawWS struct {
	conn net.Conn
	br   *bufio.Reader
	resp *http.Response
}

// rawWSDial does the opening handshake on a raw connection, offering
// extensions when not empty, and requires 101.
func rawWSDial(t *testing.T, k *Krait, path, extensions string) *rawWS {
	t.Helper()
	c := dial(t, k.Addr())
	setDeadline(c)
	keyBytes := make([]byte, 16)
	rand.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)
	req := "GET " + path + " HTTP/1.1\r\nHost: " + k.Addr() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n"
	if extensions != "" {
		req += "Sec-WebSocket-Extensions: " + extensions + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "GET"})
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		t.Fatalf("handshake: %d %q", resp.StatusCode, b)
	}
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != base64.StdEncoding.EncodeToString(h[:]) {
		t.Fatalf("Sec-WebSocket-Accept %q is wrong", got)
	}
	return &rawWS{conn: c, br: br, resp: resp}
}

// writeFrame writes one masked client frame.
func (r *rawWS) writeFrame(t *testing.T, fin bool, op byte, payload []byte) {
	t.Helper()
	var hdr []byte
	b0 := op
	if fin {
		b0 |= 0x80
	}
	switch n := len(payload); {
	case n < 126:
		hdr = []byte{b0, 0x80 | byte(n)}
	case n < 1<<16:
		hdr = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = b0, 0x80|127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	mask := make([]byte, 4)
	rand.Read(mask)
	masked := make([]byte, len(payload))
	for i := range payload {
		masked[i] = payload[i] ^ mask[i%4]
	}
	frame := append(append(hdr, mask...), masked...)
	_ = r.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := r.conn.Write(frame); err != nil {
		t.Fatalf("writing a frame: %v", err)
	}
}

// rawFrame is one frame read off the wire.
type rawFrame struct {
	op      byte
	payload []byte
}

// readMessage reads one data message (reassembling fragments: the server
// may fragment too); control frames read on the way are returned as well.
// A close frame ends the message early and is returned as op opClose.
func (r *rawWS) readMessage(t *testing.T) (op byte, payload []byte, control []rawFrame) {
	t.Helper()
	for {
		fin, fop, p := r.readFrame(t)
		switch {
		case fop == opClose:
			return opClose, p, control
		case fop >= 0x8:
			control = append(control, rawFrame{fop, p})
			continue
		case fop != opContinuation:
			op = fop
		}
		payload = append(payload, p...)
		if fin {
			return op, payload, control
		}
	}
}

// readFrame reads one server frame, failing the test on error.
func (r *rawWS) readFrame(t *testing.T) (fin bool, op byte, payload []byte) {
	t.Helper()
	fin, op, payload, err := r.tryReadFrame()
	if err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return fin, op, payload
}

func (r *rawWS) tryReadFrame() (fin bool, op byte, payload []byte, err error) {
	_ = r.conn.SetReadDeadline(time.Now().Add(ioTimeout))
	var h [2]byte
	if _, err = io.ReadFull(r.br, h[:]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	if h[1]&0x80 != 0 {
		return fin, op, nil, errors.New("server frame is masked")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err = io.ReadFull(r.br, b[:]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err = io.ReadFull(r.br, b[:]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		return fin, op, nil, fmt.Errorf("frame of %d bytes", n)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r.br, payload)
	return
}
