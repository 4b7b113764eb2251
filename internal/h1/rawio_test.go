package h1

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/rawio"
)

// countingConn is an accepted TCP connection whose own Read and Write
// count their calls; embedding keeps its SyscallConn, so the engine can
// still take the raw path (internal/rawio) around them.
type countingConn struct {
	*net.TCPConn
	reads, writes *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error)  { c.reads.Add(1); return c.TCPConn.Read(p) }
func (c countingConn) Write(p []byte) (int, error) { c.writes.Add(1); return c.TCPConn.Write(p) }

type countingListener struct {
	net.Listener
	reads, writes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c.(*net.TCPConn), &l.reads, &l.writes}, nil
}

// TestRawSocketIO checks that the per-request reads and writes (the idle
// read, the rest of a head that came in two pieces, a body read, the
// response write and a large body's writev) bypass net.Conn's Read and
// Write where raw I/O applies: those go through entersyscall, which on a
// core shared with a Python worker costs sysmon wake-ups and P hand-offs
// on every request (see internal/rawio).
func TestRawSocketIO(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !rawio.New(mustDialTCP(t, l)).Raw() {
		l.Close()
		t.Skip("raw I/O applies to linux builds without -race")
	}
	cl := &countingListener{Listener: l}
	big := make([]byte, 3*writeBufSize) // larger than the response buffer: writev of head and body
	s := New(handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading the body: %v", err)
		}
		if string(r.Path) == "/big" {
			_ = w.WriteHeader(200, nil, nil, int64(len(big)))
			_, _ = w.Write(big)
			return
		}
		_ = w.WriteHeader(200, nil, nil, int64(len(body)))
		_, _ = w.Write(body)
	}), Config{})
	done := make(chan error, 1)
	go func() { done <- s.Serve(cl) }()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after Close")
		}
	})
	c := dial(t, l.Addr().String())
	br := bufio.NewReader(c)
	// A head in two pieces, its body in a third.
	for _, part := range []string{"POST /echo HTTP/1.1\r\nHost: x\r\n", "Content-Length: 5\r\n\r\n", "hello"} {
		if _, err := io.WriteString(c, part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // lets the engine read each piece on its own (not needed for the assertion)
	}
	if _, body := readResponse(t, br, "POST"); body != "hello" {
		t.Fatalf("echo body %q", body)
	}
	for i := 0; i < 3; i++ {
		if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if _, body := readResponse(t, br, "GET"); len(body) != len(big) {
			t.Fatalf("big body of %d bytes, want %d", len(body), len(big))
		}
	}
	if r, w := cl.reads.Load(), cl.writes.Load(); r != 0 || w != 0 {
		t.Fatalf("net.Conn.Read called %d times and Write %d times; want 0 (raw I/O)", r, w)
	}
}

func mustDialTCP(t *testing.T, l net.Listener) net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			ch <- c
		}
		close(ch)
	}()
	c := dial(t, l.Addr().String())
	select {
	case sc := <-ch:
		if sc != nil {
			t.Cleanup(func() { sc.Close() })
		}
	case <-time.After(10 * time.Second):
		t.Fatal("accept timed out")
	}
	return c
}
