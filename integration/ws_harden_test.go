package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// WebSocket hardening: nothing a client sends may kill a worker, protocol
// violations close with the RFC 6455 code, every message goes out as one
// frame; and wrappers (the access log) keep the engine's capabilities.

// startWSHarden serves python/tests/apps/ws_harden.py on one worker, whose
// death fails the test.
func startWSHarden(t *testing.T, extra ...string) (*Krait, string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"ws_harden:app", "--chdir", filepath.Join(repoRoot, "python", "tests", "apps"),
		"--env", "KRAIT_TEST_DIR=" + dir, "-w", "1"}
	k := startKrait(t, nil, append(args, extra...)...)
	// The worker must neither die nor see invalid text (the adapter's own
	// defence logs "is not UTF-8"): krait stops it first.
	k.Forbid("worker died", "protocol error", "is not UTF-8")
	return k, dir
}

// workerPID asks the app for its process id.
func workerPID(t *testing.T, k *Krait) string {
	t.Helper()
	resp, body := k.Get("/pid")
	if resp.StatusCode != 200 || body == "" {
		t.Fatalf("/pid: %d %q", resp.StatusCode, body)
	}
	return body
}

// writeRaw writes bytes as they are on a raw WebSocket connection.
func (r *rawWS) writeRaw(t *testing.T, b []byte) {
	t.Helper()
	_ = r.conn.SetWriteDeadline(time.Now().Add(ioTimeout))
	if _, err := r.conn.Write(b); err != nil {
		t.Fatalf("writing raw bytes: %v", err)
	}
}

// expectCloseFirst reads the next server frame, which must be a close
// frame, and returns its code (-1 without a code).
func (r *rawWS) expectCloseFirst(t *testing.T) int {
	t.Helper()
	fin, op, p, err := r.tryReadFrame()
	if err != nil {
		t.Fatalf("want a close frame, got error %v", err)
	}
	if op != opClose || !fin {
		t.Fatalf("want a close frame, got op %d fin %v %q", op, fin, truncate(p))
	}
	if len(p) < 2 {
		return -1
	}
	return int(binary.BigEndian.Uint16(p))
}

// expectOneFrame reads the next server frame and requires it to be a whole
// message (FIN set, not a continuation) of type op with payload want.
func (r *rawWS) expectOneFrame(t *testing.T, op byte, want []byte) {
	t.Helper()
	fin, gotOp, p, err := r.tryReadFrame()
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if !fin || gotOp != op {
		t.Fatalf("echo frame: fin=%v op=%d (%d bytes), want one final frame of op %d", fin, gotOp, len(p), op)
	}
	if !bytes.Equal(p, want) {
		t.Fatalf("echo payload: %d bytes sha %s, want %d bytes sha %s", len(p), sha(p), len(want), sha(want))
	}
}

// TestWSInvalidUTF8 sends text messages that are not UTF-8: each
// connection is closed with 1007 and the app sees websocket.disconnect
// 1007, while the worker (same pid) and 20 bystander WebSockets carry on.
// Before the fix the first one killed the worker (exit 70) and every
// bystander with it.
func TestWSInvalidUTF8(t *testing.T) {
	k, dir := startWSHarden(t)
	pid := workerPID(t, k)

	const bystanders = 20
	conns := make([]*wsConn, bystanders)
	for i := range conns {
		conns[i] = wsDial(t, k, fmt.Sprintf("/echo?tag=b%d", i), nil)
		msg := fmt.Sprintf("before %d", i)
		wsWriteText(t, conns[i], msg)
		if got := wsReadText(t, conns[i]); got != msg {
			t.Fatalf("bystander %d echoed %q", i, got)
		}
	}

	// Each case is a sequence of (fin, opcode, payload) client frames.
	type frame struct {
		fin     bool
		op      byte
		payload []byte
	}
	euros := bytes.Repeat([]byte("€"), 100<<10/3) // spans several 64 KiB pieces
	cases := []struct {
		name   string
		raw    []byte // sent as is when set
		frames []frame
	}{
		{name: "the issue's frame", raw: []byte{0x81, 0x81, 0x01, 0x02, 0x03, 0x04, 0xfe}},
		{name: "lone continuation byte", frames: []frame{{true, opText, []byte("ab\x80")}}},
		{name: "code point cut at the end", frames: []frame{{true, opText, []byte("abc\xe2\x82")}}},
		{name: "encoded surrogate", frames: []frame{{true, opText, []byte("\xed\xa0\x80")}}},
		{name: "overlong encoding", frames: []frame{{true, opText, []byte("\xc0\xaf")}}},
		{name: "invalid in a continuation frame", frames: []frame{
			{false, opText, []byte("héllo ")}, {true, opContinuation, []byte("\xff")}}},
		{name: "code point across fragments, bad second half", frames: []frame{
			{false, opText, []byte("a\xe2")}, {true, opContinuation, []byte("\x28\xa1")}}},
		{name: "invalid after 100 KiB of valid text", frames: []frame{
			{true, opText, append(append([]byte{}, euros...), 0xff)}}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tag := fmt.Sprintf("bad%d", i)
			r := rawWSDial(t, k, "/echo?tag="+tag, "")
			if tc.raw != nil {
				r.writeRaw(t, tc.raw)
			}
			for _, f := range tc.frames {
				r.writeFrame(t, f.fin, f.op, f.payload)
			}
			if code := r.expectCloseFirst(t); code != 1007 {
				t.Fatalf("close code %d, want 1007", code)
			}
			waitFileContains(t, events(dir), "disconnect "+tag+" 1007\n", ioTimeout)
		})
	}

	t.Run("valid text across fragments and pieces still echoes", func(t *testing.T) {
		r := rawWSDial(t, k, "/echo?tag=good", "")
		r.writeFrame(t, false, opText, []byte("a\xe2\x82"))
		r.writeFrame(t, true, opContinuation, []byte("\xacb"))
		r.expectOneFrame(t, opText, []byte("a€b"))
		big := bytes.Repeat([]byte("€"), 3<<20/3) // 3 MiB: many pieces, code points across them
		r.writeFrame(t, true, opText, big)
		r.expectOneFrame(t, opText, big)
	})

	if got := workerPID(t, k); got != pid {
		t.Errorf("worker pid %s, was %s: the worker was replaced", got, pid)
	}
	alive := 0
	for i, c := range conns {
		msg := fmt.Sprintf("after %d", i)
		ctx, cancel := wsCtx()
		err := c.Write(ctx, wsText, []byte(msg))
		var got []byte
		if err == nil {
			_, got, err = c.Read(ctx)
		}
		cancel()
		if err == nil && string(got) == msg {
			alive++
		}
	}
	if alive != bystanders {
		t.Errorf("%d of %d bystander WebSockets still echo", alive, bystanders)
	}
	b, _ := os.ReadFile(events(dir))
	for i := 0; i < bystanders; i++ {
		if bytes.Contains(b, []byte(fmt.Sprintf("disconnect b%d ", i))) {
			t.Errorf("bystander b%d was disconnected: events:\n%s", i, b)
		}
	}
}

// TestWSUnmaskedFrame: an unmasked client frame fails the connection with
// 1002 (RFC 6455 §5.1), reported to the app as 1002; before, the client
// got 1000 and the app 1006.
func TestWSUnmaskedFrame(t *testing.T) {
	k, dir := startWSHarden(t)
	for _, tc := range []struct {
		name string
		pre  bool // a masked first fragment before the unmasked one
	}{{"first frame", false}, {"continuation frame", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tag := strings.ReplaceAll(tc.name, " ", "-")
			r := rawWSDial(t, k, "/echo?tag="+tag, "")
			op := byte(opText)
			if tc.pre {
				r.writeFrame(t, false, opText, []byte("masked "))
				op = opContinuation
			}
			r.writeRaw(t, []byte{0x80 | op, 5, 'h', 'e', 'l', 'l', 'o'})
			if code := r.expectCloseFirst(t); code != 1002 {
				t.Fatalf("close code %d, want 1002", code)
			}
			waitFileContains(t, events(dir), "disconnect "+tag+" 1002\n", ioTimeout)
		})
	}
}

// TestWSMessageIsOneFrame: every message krait sends is one final frame,
// also one the worker sends in several pieces (3 MiB, larger than a
// protocol frame and the stream window); before, each was a non-final
// frame followed by an empty final one.
func TestWSMessageIsOneFrame(t *testing.T) {
	k, _ := startWSHarden(t)
	r := rawWSDial(t, k, "/echo", "")
	r.writeFrame(t, true, opText, []byte("hello"))
	r.expectOneFrame(t, opText, []byte("hello"))
	r.writeFrame(t, true, opBinary, []byte{0, 1, 2})
	r.expectOneFrame(t, opBinary, []byte{0, 1, 2})
	r.writeFrame(t, true, opText, nil)
	r.expectOneFrame(t, opText, []byte{})
	r.writeFrame(t, false, opText, []byte("frag"))
	r.writeFrame(t, true, opContinuation, []byte("mented"))
	r.expectOneFrame(t, opText, []byte("fragmented"))
	const n = 3 << 20
	r.writeFrame(t, true, opText, []byte(fmt.Sprintf("big %d", n)))
	block := make([]byte, 251)
	for i := range block {
		block[i] = byte(i)
	}
	want := bytes.Repeat(block, n/251+1)[:n]
	r.expectOneFrame(t, opBinary, want)
	// And the connection is still in sync afterwards.
	r.writeFrame(t, true, opText, []byte("after"))
	r.expectOneFrame(t, opText, []byte("after"))
}

// TestWSAppCloseCodes: close codes the app sends reach the client when
// they may be sent, and become 1000 when they may not (1004-1006, 1015,
// outside 1000-4999), never an invalid close frame.
func TestWSAppCloseCodes(t *testing.T) {
	k, _ := startWSHarden(t)
	for _, tc := range []struct{ app, want int }{
		{1000, 1000}, {1001, 1001}, {1003, 1003}, {1007, 1007}, {1011, 1011}, {1013, 1013}, {1014, 1014},
		{3000, 3000}, {4999, 4999},
		{999, 1000}, {1004, 1000}, {1005, 1000}, {1006, 1000}, {1015, 1000}, {1016, 1000},
		{2999, 1000}, {5000, 1000}, {65535, 1000},
	} {
		t.Run(fmt.Sprint(tc.app), func(t *testing.T) {
			r := rawWSDial(t, k, "/echo", "")
			r.writeFrame(t, true, opText, []byte(fmt.Sprintf("close %d", tc.app)))
			if code := r.expectCloseFirst(t); code != tc.want {
				t.Errorf("the app closed with %d: the client got %d, want %d", tc.app, code, tc.want)
			}
		})
	}
}

// accessLog is one run's access-log configuration: off, or a file.
type accessLog struct{ path string }

// withAccessLog runs f twice: without an access log and with
// --access-logfile, so every case also proves that the access log's
// wrapper keeps the engine's capabilities (hijacking, trailers).
func withAccessLog(t *testing.T, f func(t *testing.T, al *accessLog)) {
	t.Helper()
	t.Run("no access log", func(t *testing.T) { f(t, &accessLog{}) })
	t.Run("access log", func(t *testing.T) {
		f(t, &accessLog{path: filepath.Join(t.TempDir(), "access.log")})
	})
}

// fresh is the same configuration with a file of its own, for another
// krait in the same test.
func (al *accessLog) fresh(t *testing.T) *accessLog {
	if al.path == "" {
		return al
	}
	return &accessLog{path: filepath.Join(t.TempDir(), "access.log")}
}

// args are the krait flags of this configuration.
func (al *accessLog) args(extra ...string) []string {
	if al.path == "" {
		return extra
	}
	return append([]string{"--access-logfile", al.path}, extra...)
}

// expect waits until the access log has len(want) lines and requires each
// pattern to match exactly one line (in any order: a WebSocket's line is
// written when its session ends). A no-op without an access log.
func (al *accessLog) expect(t *testing.T, want ...string) {
	t.Helper()
	if al.path == "" {
		return
	}
	var lines []string
	deadline := time.Now().Add(ioTimeout)
	for {
		b, _ := os.ReadFile(al.path)
		lines = nil
		if s := strings.TrimRight(string(b), "\n"); s != "" {
			lines = strings.Split(s, "\n")
		}
		if len(lines) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling a file, not synchronising on time
	}
	if len(lines) != len(want) {
		t.Fatalf("access log has %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
	}
	used := make([]bool, len(lines))
	for _, w := range want {
		// Combined format, then the request id (internal/requestid).
		re := regexp.MustCompile(`^127\.0\.0\.1 - - \[[^]]+\] ` + w + ` "[^"]*" "[^"]*" "[0-9a-f]{32}"$`)
		found := false
		for i, l := range lines {
			if !used[i] && re.MatchString(l) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			t.Errorf("no access log line matches %s; lines:\n%s", re, strings.Join(lines, "\n"))
		}
	}
}

// TestWrappersKeepCapabilities runs the cases that need an optional
// interface of the engine's writer (WebSocket hijacking, trailers) or a
// special body path (early hints, pathsend, file_wrapper's sendfile) with
// and without the access log, and checks the access log records them.
// Before the wrapper convention, with the access log on the upgrade was
// answered 501 and the trailers were dropped.
func TestWrappersKeepCapabilities(t *testing.T) {
	withAccessLog(t, func(t *testing.T, al *accessLog) {
		t.Run("ASGI", func(t *testing.T) {
			k, _ := startASGI(t, "", al.args()...)
			// Trailers: need the engine's TrailerWriter.
			req := mustRequest(t, "GET", k.URL("/trailers"), nil)
			req.Header.Set("TE", "trailers")
			resp, body := k.Do(req)
			if resp.StatusCode != 200 || body != "part one\npart two\n" {
				t.Errorf("trailers: %d %q", resp.StatusCode, body)
			}
			if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
				t.Errorf("trailer X-Checksum = %q (trailers %v)", got, resp.Trailer)
			}

			// Early hint: a 103 before the final response.
			var mu sync.Mutex
			hints := 0
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				if code == 103 && strings.Contains(h.Get("Link"), "</style.css>; rel=preload") {
					hints++
				}
				return nil
			}}
			req = mustRequest(t, "GET", k.URL("/early-hint"), nil)
			req = req.WithContext(httptrace.WithClientTrace(context.Background(), trace))
			if resp, body := k.Do(req); resp.StatusCode != 200 || body != "after the hint\n" {
				t.Errorf("early hint: %d %q", resp.StatusCode, body)
			}
			mu.Lock()
			if hints != 1 {
				t.Errorf("%d 103 responses with the Link, want 1", hints)
			}
			mu.Unlock()

			// pathsend: Go sends the file (SendFile).
			path := filepath.Join(testdataDir("asgi"), "app.py")
			want := mustRead(t, path)
			if resp, body := k.Get("/pathsend?path=" + path); resp.StatusCode != 200 || body != string(want) {
				t.Errorf("pathsend: %d, %d bytes (want %d)", resp.StatusCode, len(body), len(want))
			}

			// WebSocket (last: its failure is fatal): the upgrade needs the engine's Hijacker.
			c := wsDial(t, k, "/ws/echo?tag=al", nil)
			wsWriteText(t, c, "through the wrapper")
			if got := wsReadText(t, c); got != "through the wrapper" {
				t.Errorf("echo %q", got)
			}
			wsClose(t, c, 1000, "")

			al.expect(t,
				`"GET /ws/echo\?tag=al HTTP/1\.1" 101 -`,
				`"GET /trailers HTTP/1\.1" 200 18`,
				`"GET /early-hint HTTP/1\.1" 200 15`,
				regexp.QuoteMeta(`"GET /pathsend?path=`+path+` HTTP/1.1" 200 `)+fmt.Sprint(len(want)),
			)
		})
		t.Run("WSGI file_wrapper", func(t *testing.T) {
			al := al.fresh(t)
			k, _ := startWSGI(t, al.args()...)
			big := bigFile()
			resp, body := k.Get("/raw/file?kind=file")
			if resp.StatusCode != 200 || resp.ContentLength != int64(len(big)) || sha([]byte(body)) != sha(big) {
				t.Errorf("file_wrapper: %d, Content-Length %d, %d bytes", resp.StatusCode, resp.ContentLength, len(body))
			}
			al.expect(t, fmt.Sprintf(`"GET /raw/file\?kind=file HTTP/1\.1" 200 %d`, len(big)))
		})
	})
}

// The access log's line for a refused upgrade: krait answers it itself.
func TestWSAccessLogRefusals(t *testing.T) {
	al := &accessLog{path: filepath.Join(t.TempDir(), "access.log")}
	k, _ := startASGI(t, "", al.args()...)
	if status := wsDialStatus(t, k, "/ws/reject"); status != 403 {
		t.Errorf("reject: %d, want 403", status)
	}
	resp, _ := wsDialRefused(t, k, "/ws/deny")
	if resp.StatusCode != 401 {
		t.Errorf("deny: %d, want 401", resp.StatusCode)
	}
	req := mustRequest(t, "GET", k.URL("/ws/echo"), nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "12")
	if resp, _ := k.Do(req); resp.StatusCode != http.StatusUpgradeRequired {
		t.Errorf("version 12: %d, want 426", resp.StatusCode)
	}
	al.expect(t,
		`"GET /ws/reject HTTP/1\.1" 403 \d+`,
		`"GET /ws/deny HTTP/1\.1" 401 18`,
		`"GET /ws/echo HTTP/1\.1" 426 \d+`,
	)
}
