package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The HTTP/1.1 engine's hardening (issue 6 points 7 and 8), through the
// real binary: strict request lines, 400 for malformed chunked bodies, and
// bounded memory for unfinished heads and idle connections.

// processRSS is a process's resident set size in bytes (Linux /proc).
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// kraitRSS is krait's resident set size in bytes; the test is skipped
// where /proc cannot tell.
func kraitRSS(t *testing.T, k *Krait) int64 {
	t.Helper()
	v, err := processRSS(k.PID())
	if err != nil {
		t.Skipf("cannot read krait's memory: %v", err)
	}
	return v
}

// rawExchange sends raw on a new connection and reads one response; closed
// reports whether krait then closed the connection (EOF or reset, within
// ioTimeout) rather than sending more or keeping it open.
func rawExchange(t *testing.T, k *Krait, raw string) (r rawResponse, closed bool) {
	t.Helper()
	c := dial(t, k.Addr())
	setDeadline(c)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("writing %q: %v", raw, err)
	}
	br := bufio.NewReader(c)
	resps, err := readResponses(br, 1, "GET")
	if len(resps) != 1 {
		t.Fatalf("%q: no response: %v", clipString(raw), err)
	}
	return resps[0], closedAfter(br)
}

// closedAfter reports whether the peer closes without sending more.
func closedAfter(br *bufio.Reader) bool {
	_, err := br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func clipString(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TestH1StrictRequestLine: a raw non-ASCII target and an overlong method
// are refused with 400 before the app sees them (gunicorn and uvicorn
// answer 400; krait used to pass them on).
func TestH1StrictRequestLine(t *testing.T) {
	k, _ := startWSGI(t)
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"raw UTF-8 in the path", "GET /raw/caf\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n", 400},
		{"raw byte in the query", "GET /raw/hello?q=\xff HTTP/1.1\r\nHost: t\r\n\r\n", 400},
		{"3,000-byte method", strings.Repeat("M", 3000) + " /raw/hello HTTP/1.1\r\nHost: t\r\n\r\n", 400},
		{"33-byte method", strings.Repeat("M", 33) + " /raw/hello HTTP/1.1\r\nHost: t\r\n\r\n", 400},
		// Still served: percent-encoding, and methods up to 32 bytes.
		{"percent-encoded UTF-8", "GET /raw/hello?q=caf%C3%A9 HTTP/1.1\r\nHost: t\r\n\r\n", 200},
		{"32-byte method", strings.Repeat("M", 32) + " /raw/hello HTTP/1.1\r\nHost: t\r\n\r\n", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Connection: close, so that a request served by mistake does
			// not leave the test waiting for the keep-alive timeout.
			raw := strings.Replace(tc.raw, "Host: t\r\n", "Host: t\r\nConnection: close\r\n", 1)
			r, closed := rawExchange(t, k, raw)
			if r.Status != tc.status || !closed {
				t.Fatalf("status %d (%q), closed=%v; want %d and a closed connection", r.Status, r.Body, closed, tc.status)
			}
		})
	}
}

// TestH1MalformedChunkedBodyGets400: a chunked body whose framing breaks
// while the app reads it, before any response started, is answered 400
// and the connection closed (uvicorn answers 400; krait used to close
// without a word). The dispatcher pumps such bodies from a second
// goroutine, so this is the engine answering after the handler gave up.
func TestH1MalformedChunkedBodyGets400(t *testing.T) {
	wsgi, _ := startWSGI(t)
	asgi := startKrait(t, nil, "app:application", "--chdir", testdataDir("asgi"), "--env", "KRAIT_TEST_DIR="+t.TempDir())
	for _, app := range []struct {
		name string
		k    *Krait
		path string
	}{{"wsgi", wsgi, "/raw/echo"}, {"asgi", asgi, "/upload"}} {
		for _, body := range []struct{ name, raw string }{
			{"bad size", "zz\r\n"},
			{"bad size after data", "5\r\nhello\r\nzz\r\n"},
			{"data not followed by CRLF", "5\r\nhelloXX\r\n0\r\n\r\n"},
			{"forbidden trailer", "5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n"},
		} {
			t.Run(app.name+"/"+body.name, func(t *testing.T) {
				c := dial(t, app.k.Addr())
				setDeadline(c)
				fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%s", app.path, body.raw)
				br := bufio.NewReader(c)
				resps, err := readResponses(br, 1, "POST")
				if len(resps) != 1 {
					t.Fatalf("no response, connection closed: %v", err)
				}
				if resps[0].Status != 400 || !closedAfter(br) {
					t.Fatalf("status %d (%q); want 400 and a closed connection", resps[0].Status, resps[0].Body)
				}
			})
		}
	}
	// A good chunked body still works on both.
	for _, app := range []struct {
		k    *Krait
		path string
	}{{wsgi, "/raw/echo"}, {asgi, "/upload"}} {
		r, _ := rawExchange(t, app.k, "POST "+app.path+" HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
		if r.Status != 200 {
			t.Fatalf("%s: good chunked body: %d %q", app.path, r.Status, r.Body)
		}
	}
}

// TestH1UnfinishedHeadsBounded is issue 6's attack scaled down: 200
// clients each send 98 header lines of 8 KB (each line within
// --limit-request-field_size) and never finish the head. krait used to
// buffer all of it (a megabyte per connection, 1.1 GB for 1,000); now a
// head is capped at 32 KiB, so each gets 431 at once and krait's memory
// stays small.
func TestH1UnfinishedHeadsBounded(t *testing.T) {
	const (
		conns    = 200
		lines    = 98
		lineSize = 8190 // the default --limit-request-field_size, CRLF included
		rssBound = 100 << 20
	)
	k, _ := startWSGI(t)
	var head strings.Builder
	head.WriteString("GET /raw/hello HTTP/1.1\r\nHost: t\r\n")
	for i := 0; i < lines; i++ {
		name := fmt.Sprintf("X-Pad-%d: ", i)
		head.WriteString(name + strings.Repeat("a", lineSize-len(name)-2) + "\r\n")
	}
	raw := head.String()

	// Watch krait's RSS for the whole test.
	var peak atomic.Int64
	peak.Store(kraitRSS(t, k))
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := processRSS(k.PID()); err == nil && v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampling := func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-sampled
		}
	}
	defer stopSampling()

	statuses := make([]int, conns)
	errs := make([]error, conns)
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		c := dial(t, k.Addr())
		setDeadline(c)
		wg.Add(1)
		go func(i int, c net.Conn) {
			defer wg.Done()
			// The write fails once krait refuses the head and closes.
			go io.WriteString(c, raw)
			resps, err := readResponses(bufio.NewReader(c), 1, "GET")
			if len(resps) == 1 {
				statuses[i] = resps[0].Status
			} else {
				errs[i] = err
			}
		}(i, c)
	}
	wg.Wait()
	stopSampling()

	counts := map[int]int{}
	for i, st := range statuses {
		counts[st]++
		if st == 0 && counts[0] == 1 {
			t.Errorf("connection %d: no response: %v", i, errs[i])
		}
	}
	if counts[431] != conns {
		t.Errorf("responses by status: %v; want all %d to be 431", counts, conns)
	}
	if p := peak.Load(); p > rssBound {
		t.Errorf("krait's RSS peaked at %d MiB with %d unfinished heads, want under %d MiB", p>>20, conns, rssBound>>20)
	}
	// And krait still serves.
	if resp, body := k.Get("/raw/hello"); resp.StatusCode != 200 {
		t.Fatalf("after the attack: %d %q", resp.StatusCode, body)
	}
}

// TestH1IdleConnectionMemory: an idle keep-alive connection used to cost
// krait about 16 KiB (two 4 KiB buffers held for the connection's life and
// a grown goroutine stack); it now holds no buffer and, after a second, a
// minimal stack: about 7 KiB. 2,000 of them must cost under 12 KiB each.
func TestH1IdleConnectionMemory(t *testing.T) {
	const (
		conns = 2000
		bound = 12 << 10
	)
	k, _ := startWSGI(t, "--keep-alive", "300")
	// Warm up the worker path and the engine's pools first.
	for i := 0; i < 20; i++ {
		if resp, _ := k.Get("/raw/hello"); resp.StatusCode != 200 {
			t.Fatalf("warm-up: %d", resp.StatusCode)
		}
	}
	before := kraitRSS(t, k)
	open := make([]net.Conn, conns)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range open {
		c := dial(t, k.Addr())
		setDeadline(c)
		open[i] = c
		wg.Add(1)
		sem <- struct{}{}
		go func(c net.Conn) {
			defer wg.Done()
			defer func() { <-sem }()
			io.WriteString(c, "GET /raw/hello HTTP/1.1\r\nHost: t\r\n\r\n")
			resps, _ := readResponses(bufio.NewReader(c), 1, "GET")
			if len(resps) != 1 || resps[0].Status != 200 {
				failed.Add(1)
			}
		}(c)
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed", n, conns)
	}
	per := (kraitRSS(t, k) - before) / conns
	t.Logf("%d idle keep-alive connections: %d bytes of krait's RSS each", conns, per)
	if per > bound {
		t.Fatalf("an idle keep-alive connection costs krait %d bytes, want at most %d", per, bound)
	}
}
