package integration

// WebSocket flow control through the real binary (docs/protocol.md, ASGI,
// "WebSocket"): krait returns credit for the worker's messages in batches
// of half the window, not one WINDOW frame per message, and neither side
// stalls on the credit the other holds back. The app is testdata/asgiws.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// stallTimeout bounds each wait for a message in these tests: a stream
// that stalls for want of credit fails in seconds, not at the suite's
// timeout.
const stallTimeout = 20 * time.Second

func startASGIWS(t *testing.T) *Krait {
	t.Helper()
	return startKrait(t, nil, "app:app", "--chdir", testdataDir("asgiws"), "-w", "1")
}

// wsReadWithin reads one message, failing the test (as a stall) when none
// comes within stallTimeout.
func wsReadWithin(t *testing.T, c *wsConn, what string) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stallTimeout)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("%s: no message within %v (a stream stalled for want of credit?): %v", what, stallTimeout, err)
	}
	return typ, b
}

// TestASGIWSCreditBatched: krait credits the worker's WS_MESSAGE bytes in
// batches of 131072 bytes (half the window). 200 echoes of 1000 bytes, one
// at a time, cost one WINDOW frame of 132000 bytes (the first batch that
// reached 131072); before, one WINDOW frame per message (200).
func TestASGIWSCreditBatched(t *testing.T) {
	k := startASGIWS(t)
	c := wsDial(t, k, "/ws/count", nil)
	msg := bytes.Repeat([]byte("m"), 1000)
	for i := range 200 {
		copy(msg, fmt.Sprintf("%04d", i))
		wsWriteBinary(t, c, msg)
		typ, b := wsReadWithin(t, c, fmt.Sprintf("echo %d", i))
		if typ != wsBinary || !bytes.Equal(b, msg) {
			t.Fatalf("echo %d: %v %q, want the message sent", i, typ, truncate(b))
		}
	}
	wsWriteText(t, c, "stats")
	_, b := wsReadWithin(t, c, "stats")
	var got struct{ Windows, Credit int }
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("stats %q: %v", b, err)
	}
	if got.Windows != 1 || got.Credit != 132000 {
		t.Errorf("krait sent %d WINDOW frames crediting %d bytes for 200 messages of 1000 bytes; want 1 frame of 132000",
			got.Windows, got.Credit)
	}
}

// TestASGIWSNoStall moves several windows of messages each way, pipelined,
// and messages larger than the window: whatever credit either side holds
// back, the other is never left waiting for it.
func TestASGIWSNoStall(t *testing.T) {
	k := startASGIWS(t)

	t.Run("app floods the client", func(t *testing.T) {
		// 3000 messages of 1000 bytes: over eleven windows from the worker,
		// sent as fast as krait's credit allows.
		const n, size = 3000, 1000
		c := wsDial(t, k, fmt.Sprintf("/ws/flood?n=%d&size=%d", n, size), nil)
		for i := range n {
			typ, b := wsReadWithin(t, c, fmt.Sprintf("flood message %d of %d", i, n))
			if typ != wsBinary || len(b) != size || string(b[:8]) != fmt.Sprintf("%08d", i) {
				t.Fatalf("flood message %d: %v, %d bytes starting %q", i, typ, len(b), truncate(b[:min(len(b), 8)]))
			}
		}
		if typ, b := wsReadWithin(t, c, "done"); typ != wsText || string(b) != "done" {
			t.Fatalf("after the flood: %v %q, want text done", typ, truncate(b))
		}
		c.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("pipelined echo", func(t *testing.T) {
		// The client writes 1500 messages of 4 KiB (about 23 windows)
		// without waiting for their echoes, while it reads them.
		const n, size = 1500, 4096
		c := wsDial(t, k, "/ws/echo", nil)
		werr := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 4*stallTimeout)
			defer cancel()
			msg := bytes.Repeat([]byte("p"), size)
			for i := range n {
				copy(msg, fmt.Sprintf("%08d", i))
				if err := c.Write(ctx, wsBinary, msg); err != nil {
					werr <- fmt.Errorf("write %d: %w", i, err)
					return
				}
			}
			werr <- nil
		}()
		for i := range n {
			typ, b := wsReadWithin(t, c, fmt.Sprintf("echo %d of %d", i, n))
			if typ != wsBinary || len(b) != size || string(b[:8]) != fmt.Sprintf("%08d", i) {
				t.Fatalf("echo %d: %v, %d bytes starting %q", i, typ, len(b), truncate(b[:min(len(b), 8)]))
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	})

	t.Run("messages larger than the window", func(t *testing.T) {
		// 600 KiB text and binary messages: split in pieces both ways,
		// each more than two windows.
		c := wsDial(t, k, "/ws/echo", nil)
		for i, typ := range []websocket.MessageType{wsBinary, wsText, wsBinary} {
			msg := bytes.Repeat([]byte(fmt.Sprintf("big%d-", i)), 600<<10/5)
			wsWrite(t, c, typ, msg)
			gt, b := wsReadWithin(t, c, fmt.Sprintf("big echo %d", i))
			if gt != typ || !bytes.Equal(b, msg) {
				t.Fatalf("big echo %d: %v, %d bytes; want %v, %d bytes", i, gt, len(b), typ, len(msg))
			}
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
}

// TestASGIWSFrameBehindHandshake: a client that sends its first message in
// the same write as the handshake (so krait has read it before the app
// accepted) still gets its echo: the bytes read ahead survive the switch
// to the WebSocket connection's own buffers.
func TestASGIWSFrameBehindHandshake(t *testing.T) {
	k := startASGIWS(t)
	nc, err := net.DialTimeout("tcp", k.Addr(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(stallTimeout))
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	req := "GET /ws/echo HTTP/1.1\r\nHost: " + k.Addr() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
	payload := []byte("early bird, then a 5 KiB one: ")
	big := bytes.Repeat([]byte("5"), 5<<10)
	var out []byte
	out = append(out, req...)
	out = appendMaskedFrame(out, 0x1, payload)
	out = appendMaskedFrame(out, 0x2, big)
	if _, err := nc.Write(out); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the handshake response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake answered %d, want 101", resp.StatusCode)
	}
	for i, want := range []struct {
		op byte
		p  []byte
	}{{0x1, payload}, {0x2, big}} {
		op, p, err := readServerFrame(br)
		if err != nil {
			t.Fatalf("echo %d: %v (the bytes sent with the handshake were lost?)", i, err)
		}
		if op != want.op || !bytes.Equal(p, want.p) {
			t.Fatalf("echo %d: opcode %#x, %d bytes %q; want opcode %#x, %d bytes", i, op, len(p), truncate(p), want.op, len(want.p))
		}
	}
}

// appendMaskedFrame appends one final client frame (masked, as RFC 6455
// requires of clients) with opcode op.
func appendMaskedFrame(b []byte, op byte, p []byte) []byte {
	b = append(b, 0x80|op)
	switch {
	case len(p) < 126:
		b = append(b, 0x80|byte(len(p)))
	case len(p) < 1<<16:
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(len(p)))
	}
	mask := [4]byte{0x11, 0x22, 0x33, 0x44}
	b = append(b, mask[:]...)
	for i, c := range p {
		b = append(b, c^mask[i%4])
	}
	return b
}

// readServerFrame reads one unmasked, final server frame.
func readServerFrame(br *bufio.Reader) (op byte, p []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		return 0, nil, fmt.Errorf("frame header %#x %#x: want a final, unmasked frame", h[0], h[1])
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p = make([]byte, n)
	if _, err := io.ReadFull(br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}
