package integration

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitStaticBody polls GET path until the body is want, for at most
// timeout (the static cache re-stats a file once a second): it reports the
// last body seen when it never is.
func waitStaticBody(t *testing.T, k *Krait, path string, want []byte, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := rawGet(t, k, "GET", path)
		if r.Status == 200 && bytes.Equal(r.Body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s after %v: %d, %d bytes %q..., want 200 with %d bytes %q...", path, timeout, r.Status, len(r.Body), firstBytes(r.Body), len(want), firstBytes(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func firstBytes(b []byte) []byte { return b[:min(len(b), 24)] }

// TestStaticSeesInPlaceRewrite: a file rewritten in place (same inode)
// with the same size and its old mtime set back — what cp -p, rsync -t or
// a tar extraction over a deployed tree do — is served with its new bytes
// once the cache re-checks it (about a second), both when the cache holds
// its contents (15 KB) and when it is sent with sendfile (3 MB). Before,
// the cache compared only size, mtime and inode and kept serving the old
// bytes for ever.
func TestStaticSeesInPlaceRewrite(t *testing.T) {
	fx := newStaticFixture(t)
	k := startStatic(t, fx)
	for _, tc := range []struct{ name, path string }{
		{"css/app.css", "/static/css/app.css"}, // held in memory
		{"big.bin", "/static/big.bin"},         // sendfile
	} {
		p := filepath.Join(fx.dir, tc.name)
		old, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		waitStaticBody(t, k, tc.path, old, 10*time.Second) // now cached
		fi0, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// Same size, different bytes, written into the same inode.
		now := append([]byte{}, old...)
		for i := range now {
			now[i] ^= 0x20
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(now, 0); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, fi0.ModTime(), fi0.ModTime()); err != nil {
			t.Fatal(err)
		}
		fi1, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if !os.SameFile(fi0, fi1) || fi1.Size() != fi0.Size() || !fi1.ModTime().Equal(fi0.ModTime()) {
			t.Fatalf("%s: the rewrite changed inode, size or mtime: the test proves nothing", tc.name)
		}
		waitStaticBody(t, k, tc.path, now, 10*time.Second)
	}
}

// TestStaticKeepAliveIntegrity: 40 pipelined GETs of a 200 KB file held
// in memory (8 MB in all, more than the socket buffers hold) on one
// keep-alive connection with a small receive window, read slowly at
// first, come back as exactly 40 complete, identical responses, and a
// HEAD among them carries no body. The server's writes meet a full socket
// (EAGAIN) and must wait for writability and resume mid-response.
func TestStaticKeepAliveIntegrity(t *testing.T) {
	fx := newStaticFixture(t)
	mid := make([]byte, 200_000) // below the in-memory limit (256 KB)
	for i := range mid {
		mid[i] = byte(i*7 + i>>9)
	}
	if err := os.WriteFile(filepath.Join(fx.dir, "mid.bin"), mid, 0o644); err != nil {
		t.Fatal(err)
	}
	k := startStatic(t, fx)
	c := dial(t, k.Addr())
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		if err := tc.SetReadBuffer(32 << 10); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second)) // 8 MB over loopback: well under a second
	const n = 40
	methodOf := func(i int) string {
		if i == n/2 {
			return "HEAD"
		}
		return "GET"
	}
	var req strings.Builder
	for i := range n {
		fmt.Fprintf(&req, "%s /static/mid.bin HTTP/1.1\r\nHost: localhost\r\n\r\n", methodOf(i))
	}
	go func() { _, _ = io.WriteString(c, req.String()) }()
	br := bufio.NewReaderSize(&staticSipReader{r: c, left: 64 << 10}, 64<<10)
	for i := range n {
		resps, err := readResponses(br, 1, methodOf(i))
		if err != nil || len(resps) != 1 {
			t.Fatalf("response %d: %v", i, err)
		}
		r := resps[0]
		if methodOf(i) == "HEAD" {
			if r.Status != 200 || len(r.Body) != 0 || r.Header.Get("Content-Length") != fmt.Sprint(len(mid)) {
				t.Fatalf("HEAD (response %d): %d, %d body bytes, Content-Length %q", i, r.Status, len(r.Body), r.Header.Get("Content-Length"))
			}
			continue
		}
		if r.Status != 200 || !bytes.Equal(r.Body, mid) {
			t.Fatalf("response %d: %d with %d bytes, want 200 with the %d-byte file", i, r.Status, len(r.Body), len(mid))
		}
	}
}

// staticSipReader reads at most 4 KB at a time and pauses between reads until
// left bytes have been read, then reads at full speed.
type staticSipReader struct {
	r    io.Reader
	left int
}

func (s *staticSipReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return s.r.Read(p)
	}
	time.Sleep(2 * time.Millisecond)
	n, err := s.r.Read(p[:min(len(p), 4096)])
	s.left -= n
	return n, err
}
