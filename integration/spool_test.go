package integration

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Response spooling: once a client falls behind, krait reads the response
// from the worker as fast as the worker writes it (memory up to
// --buffer-response, then an unlinked temporary file in --buffer-dir), so a
// slow client never holds a Python worker. The apps are
// python/tests/apps/spool_wsgi.py and spool_asgi.py; their bodies are a
// pattern whose order the tests check (chunk i of 64 KiB is the 8-byte
// big-endian i repeated).

const spoolBig = 50 << 20 // the 50 MB response

func spoolApps() string { return filepath.Join(repoRoot, "python", "tests", "apps") }

// startSpool serves the spool app of iface ("wsgi" or "asgi") on one
// worker that runs one request at a time.
func startSpool(t *testing.T, iface string, extra ...string) *Krait {
	t.Helper()
	args := []string{"spool_wsgi:application", "--chdir", spoolApps(), "-w", "1", "--threads", "1"}
	if iface == "asgi" {
		args = []string{"spool_asgi:app", "--chdir", spoolApps(), "-w", "1", "--limit-concurrency", "1"}
	}
	k := startKrait(t, nil, append(args, extra...)...)
	k.Forbid("DATA RACE", "protocol error")
	return k
}

// patternSum is the length and SHA-256 of the apps' first n pattern bytes.
func patternSum(n int64) string {
	h := sha256.New()
	total := n
	var chunk [64 << 10]byte
	for i := uint64(0); n > 0; i++ {
		for j := 0; j < len(chunk); j += 8 {
			binary.BigEndian.PutUint64(chunk[j:], i)
		}
		m := min(n, int64(len(chunk)))
		h.Write(chunk[:m])
		n -= m
	}
	return fmt.Sprintf("%d %s", total, hex.EncodeToString(h.Sum(nil)))
}

// slowReader is client A: it reads a response body in small sips with
// pauses (about 160 KB/s) until told to go fast, counting and hashing.
type slowReader struct {
	read  atomic.Int64
	fast  chan struct{} // closed: read the rest at full speed
	pause chan struct{} // closed: stop reading until fast
	done  chan struct{} // closed when the body ended or failed
	n     int64
	sum   hash.Hash
	err   error
}

func newSlowReader(body io.Reader) *slowReader {
	sr := &slowReader{fast: make(chan struct{}), pause: make(chan struct{}), done: make(chan struct{}), sum: sha256.New()}
	go func() {
		defer close(sr.done)
		buf := make([]byte, 64<<10)
		slow := true
		for {
			if slow {
				select {
				case <-sr.fast:
					slow = false
				case <-sr.pause:
					<-sr.fast
					slow = false
				case <-time.After(100 * time.Millisecond):
				}
			}
			p := buf
			if slow {
				p = buf[:16<<10]
			}
			n, err := body.Read(p)
			sr.sum.Write(p[:n])
			sr.n += int64(n)
			sr.read.Store(sr.n)
			if err == io.EOF {
				return
			}
			if err != nil {
				sr.err = err
				return
			}
		}
	}()
	return sr
}

// finish reads the rest at full speed and returns "LENGTH SHA256".
func (sr *slowReader) finish(t *testing.T) (string, error) {
	t.Helper()
	select {
	case <-sr.fast:
	default:
		close(sr.fast)
	}
	select {
	case <-sr.done:
	case <-time.After(2 * ioTimeout):
		t.Fatalf("client A did not get the rest of its body within %v (read %d bytes)", 2*ioTimeout, sr.read.Load())
	}
	return fmt.Sprintf("%d %s", sr.n, hex.EncodeToString(sr.sum.Sum(nil))), sr.err
}

// dialSmall connects with a small receive buffer, so the server's writes
// block soon after the client stops reading.
func dialSmall(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: ioTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// getHead sends GET path on a new small-buffered connection and returns
// the response with its head read.
func getHead(t *testing.T, k *Krait, path string) (*http.Response, net.Conn) {
	t.Helper()
	c := dialSmall(t, k.Addr())
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute)) // every wait below is bounded on its own
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 4096), nil)
	if err != nil {
		t.Fatalf("GET %s: reading the head: %v", path, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", path, resp.StatusCode)
	}
	return resp, c
}

// slowGet is getHead with a slow reader of the body.
func slowGet(t *testing.T, k *Krait, path string) (*http.Response, *slowReader, net.Conn) {
	t.Helper()
	resp, c := getHead(t, k, path)
	return resp, newSlowReader(resp.Body), c
}

// getWithin does GET path on a connection of its own and fails the test
// unless the answer is 200 "hello" within d.
func getWithin(t *testing.T, client *http.Client, u string, d time.Duration, why string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u, nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v (want 200 within %v)", why, u, err, d)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || string(body) != "hello" {
		t.Fatalf("%s: GET %s: %d %q %v", why, u, resp.StatusCode, body, err)
	}
}

func freshClient() *http.Client {
	return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
}

// The case: one worker running one request; client A downloads
// 50 MB very slowly; client B's request is answered while A is still far
// from done; then A's body arrives whole and in order.
func TestSpoolSlowClientDoesNotHoldWorker(t *testing.T) {
	want := patternSum(spoolBig)
	for _, iface := range []string{"wsgi", "asgi"} {
		t.Run(iface, func(t *testing.T) {
			k := startSpool(t, iface)
			_, a, _ := slowGet(t, k, "/big?n="+strconv.Itoa(spoolBig))
			getWithin(t, freshClient(), k.URL("/hello"), ioTimeout, "client B while client A reads slowly")
			if got := a.read.Load(); got > spoolBig/2 {
				t.Fatalf("client A had read %d of %d bytes when B was answered: not a slow client", got, spoolBig)
			}
			got, err := a.finish(t)
			if err != nil || got != want {
				t.Fatalf("client A's body: %s (err %v), want %s", got, err, want)
			}
		})
	}
}

// The same over HTTP/2 (h2c, the net/http engine): a stream whose client
// does not read fills its flow-control window and the writes block.
func TestSpoolSlowClientHTTP2(t *testing.T) {
	k := startSpool(t, "wsgi", "--http2-cleartext")
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", k.URL("/big?n="+strconv.Itoa(spoolBig)), nil)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	a := newSlowReader(resp.Body)
	getWithin(t, freshClient(), k.URL("/hello"), ioTimeout, "client B while an HTTP/2 client A reads slowly")
	if got := a.read.Load(); got > spoolBig/2 {
		t.Fatalf("client A had read %d of %d bytes when B was answered", got, spoolBig)
	}
	if got, err := a.finish(t); err != nil || got != patternSum(spoolBig) {
		t.Fatalf("client A's body: %s (err %v), want %s", got, err, patternSum(spoolBig))
	}
}

// --buffer-response 0 is today's behaviour: the slow client holds the
// only worker, and B waits until A has read its response.
func TestSpoolOff(t *testing.T) {
	k := startSpool(t, "wsgi", "--buffer-response", "0")
	_, a, _ := slowGet(t, k, "/big?n="+strconv.Itoa(spoolBig))
	close(a.pause) // A stops reading: its response cannot end
	bDone := make(chan error, 1)
	go func() {
		resp, err := freshClient().Get(k.URL("/hello"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 200 {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		bDone <- err
	}()
	select {
	case err := <-bDone:
		t.Fatalf("with --buffer-response 0 client B was answered (err %v) while A, which stopped reading, held the only worker", err)
	case <-time.After(3 * time.Second):
	}
	if got, err := a.finish(t); err != nil || got != patternSum(spoolBig) {
		t.Fatalf("client A's body: %s (err %v)", got, err)
	}
	select {
	case err := <-bDone:
		if err != nil {
			t.Fatalf("client B after A finished: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatalf("client B not answered within %v of A finishing", ioTimeout)
	}
}

// spoolFiles lists krait's open file descriptors that are deleted files
// in dir (the spool's unlinked temporary files).
func spoolFiles(t *testing.T, k *Krait, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", k.PID()))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", k.PID(), fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/krait-spool-") && strings.HasSuffix(target, " (deleted)") {
			out = append(out, target)
		}
	}
	return out
}

// fdCount is how many file descriptors krait has open.
func fdCount(t *testing.T, k *Krait) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", k.PID()))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// poll polls cond every 20 ms for up to ioTimeout.
func poll(cond func() bool) bool {
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// connSockets is how many of krait's file descriptors are TCP sockets
// that are not listening: client connections, which may linger a moment
// after the client closed.
func connSockets(t *testing.T, k *Krait) int {
	t.Helper()
	conns := map[string]bool{} // socket inodes not in LISTEN state
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", k.PID(), f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 9 && fields[3] != "0A" {
				conns[fields[9]] = true
			}
		}
	}
	n := 0
	for _, fd := range fdList(t, k) {
		if _, target, _ := strings.Cut(fd, "="); strings.HasPrefix(target, "socket:[") && conns[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] {
			n++
		}
	}
	return n
}

// fdList is krait's open file descriptors and what they are.
func fdList(t *testing.T, k *Krait) []string {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", k.PID()))
	var out []string
	for _, fd := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", k.PID(), fd.Name()))
		out = append(out, fd.Name()+"="+target)
	}
	return out
}

// waitFor polls cond every 20 ms for up to ioTimeout, failing with what.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", ioTimeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dirEmpty(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 0 {
		t.Fatalf("--buffer-dir %s holds %v (err %v), want nothing: spool files are unlinked at once", dir, ents, err)
	}
}

// Past --buffer-response the spool goes to an unlinked temporary file in
// --buffer-dir, open only while the response is in flight: none is left
// after a client that finished, one that left, or a worker that crashed.
func TestSpoolTempFile(t *testing.T) {
	dir := t.TempDir()
	k := startSpool(t, "wsgi", "--buffer-response", "65536", "--buffer-dir", dir)
	hasFile := func() bool { return len(spoolFiles(t, k, dir)) == 1 }
	noFile := func() bool { return len(spoolFiles(t, k, dir)) == 0 }

	t.Run("finished", func(t *testing.T) {
		_, a, _ := slowGet(t, k, "/big?n="+strconv.Itoa(spoolBig))
		close(a.pause)
		waitFor(t, "no deleted spool file in --buffer-dir among krait's open files while a slow client downloads 50 MB", hasFile)
		dirEmpty(t, dir)
		if got, err := a.finish(t); err != nil || got != patternSum(spoolBig) {
			t.Fatalf("client A's body: %s (err %v)", got, err)
		}
		waitFor(t, "the spool file is still open after the response ended", noFile)
	})
	t.Run("client left", func(t *testing.T) {
		_, a, c := slowGet(t, k, "/big?n="+strconv.Itoa(spoolBig))
		close(a.pause)
		waitFor(t, "no spool file while a slow client downloads", hasFile)
		c.Close()
		waitFor(t, "the spool file is still open after the client left", noFile)
		getWithin(t, freshClient(), k.URL("/hello"), ioTimeout, "after a client left mid-spool")
	})
	t.Run("worker crashed", func(t *testing.T) {
		sig := filepath.Join(t.TempDir(), "go")
		_, a, _ := slowGet(t, k, "/crash?n="+strconv.Itoa(8<<20)+"&wait="+url.QueryEscape(sig))
		close(a.pause)
		waitFor(t, "no spool file while a slow client downloads", hasFile)
		touch(t, sig) // the worker now kills itself
		// krait notices when its write to A returns: A reads on.
		got, err := a.finish(t)
		if err == nil {
			t.Fatalf("client A got a whole body (%s) from a worker that crashed mid-response; want it cut short", got)
		}
		waitFor(t, "the spool file is still open after the worker crashed", noFile)
		getWithin(t, freshClient(), k.URL("/hello"), 2*ioTimeout, "after the worker was replaced")
	})
	dirEmpty(t, dir)
}

// A client that leaves mid-spool: the stream is reset (the app sees it:
// its iteration stops early), the worker is free for the next request,
// and krait holds no more file descriptors than before.
func TestSpoolClientLeaves(t *testing.T) {
	for _, iface := range []string{"wsgi", "asgi"} {
		t.Run(iface, func(t *testing.T) {
			dir := t.TempDir()
			// A small temporary file: the worker is still producing
			// (waiting for credit) when the client leaves.
			k := startSpool(t, iface, "--buffer-response", "65536", "--buffer-dir", dir, "--max-temp-file-size", "1048576")
			// Warm up on a connection krait closes (EOF seen): the count
			// below then holds no socket about to close.
			w := dial(t, k.Addr())
			setDeadline(w)
			if _, err := io.WriteString(w, "GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(w); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if !poll(func() bool { return connSockets(t, k) == 0 }) {
				t.Fatalf("krait still holds a client connection after the warm-up: %v", fdList(t, k))
			}
			before := fdCount(t, k)
			mark := filepath.Join(t.TempDir(), "mark")
			_, a, c := slowGet(t, k, "/big?n="+strconv.Itoa(spoolBig)+"&mark="+url.QueryEscape(mark))
			close(a.pause)
			waitFor(t, "no spool file while a slow client downloads", func() bool { return len(spoolFiles(t, k, dir)) == 1 })
			c.Close()
			waitFile(t, mark, ioTimeout)
			got, err := os.ReadFile(mark)
			if err != nil || !strings.HasPrefix(string(got), "sent=") || strings.HasPrefix(string(got), fmt.Sprintf("sent=%d ", spoolBig)) {
				t.Fatalf("the app's record of the disconnect: %q (%v), want it stopped before the end", got, err)
			}
			getWithin(t, freshClient(), k.URL("/hello"), ioTimeout, "client B after client A left mid-spool")
			if !poll(func() bool { return connSockets(t, k) == 0 && fdCount(t, k) == before }) {
				t.Fatalf("krait's open file descriptors did not return to %d within %v: %v", before, ioTimeout, fdList(t, k))
			}
			if f := spoolFiles(t, k, dir); len(f) != 0 {
				t.Fatalf("spool files still open: %v", f)
			}
			dirEmpty(t, dir)
		})
	}
}

// Streaming stays live with spooling on: a response that streams a chunk
// and then waits reaches the client before the app goes on, both while the
// client keeps up (write-through) and once the response is being spooled
// (the drainer flushes whenever it has caught up).
func TestSpoolStreamingStaysLive(t *testing.T) {
	dir := t.TempDir()
	k := startSpool(t, "wsgi", "--buffer-response", "65536", "--buffer-dir", dir)
	for _, tc := range []struct {
		name  string
		n     int64
		stall bool // stop reading until the response is spooled
	}{{"write-through", 0, false}, {"spooled", 8 << 20, true}} {
		t.Run(tc.name, func(t *testing.T) {
			sig := filepath.Join(t.TempDir(), "go")
			resp, c := getHead(t, k, "/stream?n="+strconv.FormatInt(tc.n, 10)+"&wait="+url.QueryEscape(sig))
			defer resp.Body.Close()
			if tc.stall {
				waitFor(t, "no spool file while the client does not read", func() bool { return len(spoolFiles(t, k, dir)) == 1 })
			}
			// Everything up to MARK must arrive before the app is told
			// to go on (bounded: the app waits for the signal 60 s).
			_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
			first := make([]byte, tc.n+4)
			if _, err := io.ReadFull(resp.Body, first); err != nil {
				t.Fatalf("the streamed part before the app's wait did not arrive: %v", err)
			}
			if string(first[tc.n:]) != "MARK" {
				t.Fatalf("the streamed part ends with %q, want MARK", first[tc.n:])
			}
			sum := sha256.Sum256(first[:tc.n])
			if got := fmt.Sprintf("%d %s", tc.n, hex.EncodeToString(sum[:])); got != patternSum(tc.n) {
				t.Fatalf("the streamed body: %s, want %s", got, patternSum(tc.n))
			}
			touch(t, sig)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != "END" {
				t.Fatalf("after the signal: %q %v, want END", rest, err)
			}
		})
	}
	waitFor(t, "spool files still open after the streams ended", func() bool { return len(spoolFiles(t, k, dir)) == 0 })
}

// Trailers keep their place behind a spooled body; and after a pathsend
// (SENDFILE, which needs no spooling: krait reads the file itself) to a
// stuck client, the worker is free and the client gets the whole file,
// then the trailer.
func TestSpoolTrailersAndSendfile(t *testing.T) {
	dir := t.TempDir()
	k := startSpool(t, "asgi", "--buffer-dir", dir)
	file := filepath.Join(t.TempDir(), "file")
	const fileSize = 16 << 20
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	w := io.MultiWriter(f, h)
	var chunk [64 << 10]byte
	for i := uint64(0); i < fileSize/uint64(len(chunk)); i++ {
		for j := 0; j < len(chunk); j += 8 {
			binary.BigEndian.PutUint64(chunk[j:], i)
		}
		if _, err := w.Write(chunk[:]); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		file             bool
	}{
		{"body", "/trailers?n=" + strconv.Itoa(16<<20), patternSum(16 << 20), true},
		{"pathsend", "/trailers?file=" + url.QueryEscape(file), patternSum(fileSize), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, a, _ := slowGet(t, k, tc.path)
			close(a.pause)
			if tc.file {
				waitFor(t, "no spool file while the client does not read", func() bool { return len(spoolFiles(t, k, dir)) == 1 })
			} else {
				// The worker's slot is free while the client is stuck.
				getWithin(t, freshClient(), k.URL("/hello"), ioTimeout, "while a pathsend waits for a stuck client")
			}
			got, err := a.finish(t)
			if err != nil || got != tc.want {
				t.Fatalf("body: %s (err %v), want %s", got, err, tc.want)
			}
			if tr := resp.Trailer.Get("X-End"); tr != "after-the-body" {
				t.Fatalf("trailer X-End = %q (trailers %v), want after-the-body", tr, resp.Trailer)
			}
		})
	}
}
