package wsbridge_test

// These tests drive the bridge end to end: the real dispatcher hands it the
// request, the engine's response writer and the stream opened on a fake
// ASGI worker (workertest), over krait's HTTP/1.1 engine on loopback.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/krait-server/krait/internal/dispatch"
	"github.com/krait-server/krait/internal/h1"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/worker/workertest"
	"github.com/krait-server/krait/internal/wsbridge"
)

func TestMain(m *testing.M) {
	workertest.Main() // the test binary doubles as the fake worker
	os.Exit(m.Run())
}

// output collects the fake workers' output.
type output struct {
	mu sync.Mutex
	b  strings.Builder
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

type wsEnv struct {
	addr string // the engine's loopback address
	d    *dispatch.Dispatcher
	out  *output
}

// newWSEnv starts one fake ASGI worker of capacity 4, a dispatcher with
// the WebSocket settings cfg, and krait's engine on a free port.
func newWSEnv(t *testing.T, cfg wsbridge.Config) *wsEnv {
	t.Helper()
	out := &output{}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := supervisor.Start(context.Background(), supervisor.Config{
		Worker:  workertest.Settings(1, workertest.EnvMode+"=ready", workertest.EnvCapacity+"=4", workertest.EnvInterface+"=asgi"),
		Workers: 1, Log: log, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	d := dispatch.New(p, dispatch.Config{MaxQueue: 10, Log: log, WebSocket: cfg})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h1.New(d, h1.Config{Log: log})
	done := make(chan struct{})
	go func() { _ = srv.Serve(l); close(done) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })
	return &wsEnv{addr: l.Addr().String(), d: d, out: out}
}

// testCtx bounds a test's WebSocket reads and writes: a session that
// never answers fails the test in seconds instead of hanging it.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitOutput waits until the worker printed want.
func waitOutput(t *testing.T, e *wsEnv, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(e.out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("the worker never printed %q; output:\n%s", want, e.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitServes waits until a plain GET / is answered 200 (a worker is back,
// or its slots are free again).
func waitServes(t *testing.T, e *wsEnv) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("http://" + e.addr + "/")
		status := 0
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
			if status == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no worker back: %d %v", status, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wsDial(t *testing.T, addr, path string, opts *websocket.DialOptions) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return websocket.Dial(ctx, "ws://"+addr+path, opts)
}

func TestWebSocketEcho(t *testing.T) {
	for _, deflate := range []bool{false, true} {
		t.Run("deflate="+strconv.FormatBool(deflate), func(t *testing.T) {
			e := newWSEnv(t, wsbridge.Config{PerMessageDeflate: deflate, MaxSize: 4 << 20})
			addr := e.addr
			opts := &websocket.DialOptions{Subprotocols: []string{"chat", "other"}}
			if deflate {
				opts.CompressionMode = websocket.CompressionContextTakeover
			}
			c, resp, err := wsDial(t, addr, "/ws", opts)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if c.Subprotocol() != "chat" || resp.Header.Get("X-Fake") != "1" {
				t.Fatalf("subprotocol %q headers %v", c.Subprotocol(), resp.Header)
			}
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); deflate != strings.Contains(ext, "permessage-deflate") {
				t.Fatalf("extensions %q with deflate=%v", ext, deflate)
			}
			c.SetReadLimit(8 << 20)
			ctx := testCtx(t)
			msgs := []struct {
				typ  websocket.MessageType
				data []byte
			}{
				{websocket.MessageText, []byte("hello")},
				{websocket.MessageBinary, []byte{0, 1, 2, 255}},
				{websocket.MessageText, []byte("")},
				{websocket.MessageBinary, bytes.Repeat([]byte("0123456789abcdef"), 200<<10)}, // 3.2 MiB: split in pieces
			}
			for _, m := range msgs {
				if err := c.Write(ctx, m.typ, m.data); err != nil {
					t.Fatal(err)
				}
				typ, got, err := c.Read(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if typ != m.typ || !bytes.Equal(got, m.data) {
					t.Fatalf("echo of %d bytes (%v): got %d bytes (%v)", len(m.data), m.typ, len(got), typ)
				}
			}
			// A fragmented message from the client is reassembled.
			w, err := c.Writer(ctx, websocket.MessageText)
			if err != nil {
				t.Fatal(err)
			}
			for _, part := range []string{"frag", "men", "ted"} {
				if _, err := w.Write([]byte(part)); err != nil {
					t.Fatal(err)
				}
			}
			_ = w.Close()
			if _, got, err := c.Read(ctx); err != nil || string(got) != "fragmented" {
				t.Fatalf("fragmented echo %q %v", got, err)
			}
			// A 3 MiB message from the app, sent in 1 MiB pieces.
			_ = c.Write(ctx, websocket.MessageText, []byte("big"))
			typ, got, err := c.Read(ctx)
			if err != nil || typ != websocket.MessageBinary || len(got) != 3<<20 {
				t.Fatalf("big: %v %d %v", typ, len(got), err)
			}
			// The client closes: the app sees the code and reason.
			if err := c.Close(4000, "done here"); err != nil {
				t.Fatal(err)
			}
			waitOutput(t, e, "[fake] ws closed 4000 done here")
			waitServes(t, e)
		})
	}
}

func TestWebSocketAppCloses(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{})
	addr := e.addr
	c, _, err := wsDial(t, addr, "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx := testCtx(t)
	if c.Subprotocol() != "" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	_ = c.Write(ctx, websocket.MessageText, []byte("close-me"))
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 4001 || ce.Reason != "bye" {
		t.Fatalf("read after the app's close: %v", err)
	}
	waitServes(t, e)
}

func TestWebSocketTooBig(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{MaxSize: 1000})
	addr := e.addr
	c, _, err := wsDial(t, addr, "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx := testCtx(t)
	_ = c.Write(ctx, websocket.MessageBinary, make([]byte, 1001))
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("read after an oversized message: %v", err)
	}
	waitOutput(t, e, "[fake] ws closed 1009")
	waitServes(t, e)
}

func TestWebSocketDropped(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{})
	addr := e.addr
	c, _, err := wsDial(t, addr, "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Write(testCtx(t), websocket.MessageText, []byte("x"))
	_, _, _ = c.Read(testCtx(t))
	_ = c.CloseNow() // no close frame
	waitOutput(t, e, "[fake] ws closed 1006")
	waitServes(t, e)
}

func TestWebSocketRefusals(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{})
	addr := e.addr
	// Close before accept: 403.
	_, resp, err := wsDial(t, addr, "/ws-deny", nil)
	if err == nil || resp == nil || resp.StatusCode != 403 {
		t.Fatalf("close before accept: %v %v", resp, err)
	}
	// The denial response extension: the app's own response.
	_, resp, err = wsDial(t, addr, "/ws-denial", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("denial response: %v %v", resp, err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "denied" {
		t.Fatalf("denial body %q", b)
	}
	// The app fails after accepting: close 1011.
	c, _, err := wsDial(t, addr, "/ws-crash", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Read(testCtx(t))
	if websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Fatalf("read after the app failed: %v", err)
	}
	// A handshake of another version never reaches the app.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 426 || resp.Header.Get("Sec-WebSocket-Version") != "13" {
		t.Fatalf("old version: %v %v", resp, err)
	}
	waitServes(t, e)
}

func TestWebSocketPingTimeout(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{PingInterval: 10 * time.Millisecond, PingTimeout: 100 * time.Millisecond})
	addr := e.addr
	// A raw client that completes the handshake and then never answers
	// pings: krait drops it, and the app sees 1006.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	waitOutput(t, e, "[fake] ws closed 1006")
}

func TestWebSocketPingsAnswered(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{PingInterval: 5 * time.Millisecond, PingTimeout: 30 * time.Second})
	addr := e.addr
	pings := make(chan struct{}, 100)
	c, _, err := wsDial(t, addr, "/ws", &websocket.DialOptions{OnPingReceived: func(context.Context, []byte) bool {
		select {
		case pings <- struct{}{}:
		default:
		}
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx := c.CloseRead(context.Background()) // reads (and answers pings) in the background
	timeout := time.After(20 * time.Second)
	for i := 0; i < 5; i++ {
		select {
		case <-pings:
		case <-ctx.Done():
			t.Fatal("connection dropped although pongs were sent")
		case <-timeout:
			t.Fatalf("%d pings in 20s at a 5ms interval", i)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("connection dropped although pongs were sent")
	}
}

func TestWebSocketWorkerFailures(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{})
	addr := e.addr
	// A worker that breaks the protocol is replaced; the client gets 502.
	_, resp, err := wsDial(t, addr, "/ws-bad", nil)
	if err == nil || resp == nil || resp.StatusCode != 502 {
		t.Fatalf("WS_MESSAGE before accept: %v %v", resp, err)
	}
	waitServes(t, e)
	// A worker that dies during a session: close 1011.
	c, _, err := wsDial(t, addr, "/ws-die", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_ = c.Write(testCtx(t), websocket.MessageText, []byte("x"))
	_, _, err = c.Read(testCtx(t))
	if websocket.CloseStatus(err) != websocket.StatusInternalError {
		t.Fatalf("read after the worker died: %v", err)
	}
	waitServes(t, e)
}

func TestWebSocketShutdown(t *testing.T) {
	e := newWSEnv(t, wsbridge.Config{})
	addr := e.addr
	c, _, err := wsDial(t, addr, "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx := testCtx(t)
	// An echo proves the session is bridged (and tracked) before Shutdown.
	_ = c.Write(ctx, websocket.MessageText, []byte("x"))
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	e.d.Shutdown()
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != 1012 {
		t.Fatalf("read after Shutdown: %v", err)
	}
	waitOutput(t, e, "[fake] ws closed 1012")
	// Later sessions are closed at once.
	c2, _, err := wsDial(t, addr, "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	if _, _, err = c2.Read(ctx); websocket.CloseStatus(err) != 1012 {
		t.Fatalf("read on a session after Shutdown: %v", err)
	}
}
