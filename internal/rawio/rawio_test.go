package rawio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := l.Accept(); ch <- res{c, err} }()
	a, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r res
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("accept timed out")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a.(*net.TCPConn), r.c.(*net.TCPConn)
}

// noMethods embeds a TCP connection (so it still has SyscallConn) but
// fails the test when its own Read or Write is used: on the raw path Conn
// must not call them.
type noMethods struct {
	*net.TCPConn
	t *testing.T
}

func (c noMethods) Read([]byte) (int, error) {
	c.t.Error("net.Conn.Read called on the raw path")
	return 0, io.EOF
}

func (c noMethods) Write([]byte) (int, error) {
	c.t.Error("net.Conn.Write called on the raw path")
	return 0, io.ErrClosedPipe
}

func TestRawPathBypassesConnMethods(t *testing.T) {
	if !rawEnabled {
		t.Skip("raw I/O applies to linux builds without -race")
	}
	a, b := tcpPair(t)
	c := New(noMethods{a, t})
	if !c.Raw() {
		t.Fatal("Raw() = false on a TCP connection")
	}
	_ = a.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := c.Writev([]byte("head|"), []byte("body")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write([]byte("|more")); n != 5 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got := make([]byte, len("head|body|more"))
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || string(got) != "head|body|more" {
		t.Fatalf("peer read %q, %v", got, err)
	}
	if _, err := b.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}

// A write much larger than the socket buffers to a slow reader goes
// through EAGAIN and partial writes: every byte must arrive, in order.
func TestLargeWritesToSlowReader(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a)
	_ = a.SetWriteDeadline(time.Now().Add(20 * time.Second))
	head := bytes.Repeat([]byte("h"), 1000)
	body := make([]byte, 8<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	want := append(append(append([]byte(nil), head...), body...), body...)
	got := make(chan []byte, 1)
	go func() {
		_ = b.SetReadDeadline(time.Now().Add(20 * time.Second))
		var out []byte
		buf := make([]byte, 32<<10)
		for len(out) < len(want) {
			n, err := b.Read(buf)
			out = append(out, buf[:n]...)
			if err != nil {
				break
			}
			if len(out) < 1<<20 {
				time.Sleep(time.Millisecond) // slow at first: the writer fills the buffers
			}
		}
		got <- out
	}()
	if err := c.Writev(head, body); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Write(body); n != len(body) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	select {
	case out := <-got:
		if !bytes.Equal(out, want) {
			t.Fatalf("peer got %d bytes, want %d (or they differ)", len(out), len(want))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("reader did not finish")
	}
}

func TestWriteDeadline(t *testing.T) {
	a, _ := tcpPair(t) // the peer never reads
	c := New(a)
	_ = a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	big := make([]byte, 64<<20)
	done := make(chan error, 1)
	go func() { _, err := c.Write(big); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write error %v, want a deadline error", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Write error %v is not a timeout net.Error", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Write did not return after its deadline")
	}
}

func TestReadDeadlineAndEOF(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a)
	buf := make([]byte, 8)
	_ = a.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(buf); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read = %d, %v; want a deadline error", n, err)
	}
	_ = a.SetReadDeadline(time.Now().Add(10 * time.Second))
	b.Close()
	if n, err := c.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read after the peer closed = %d, %v; want 0, io.EOF", n, err)
	}
}

// A write to a peer that reset the connection fails with the system
// call's error wrapped as net.Conn's methods wrap it.
func TestWriteErrorWrapped(t *testing.T) {
	a, b := tcpPair(t)
	c := New(a)
	_ = b.SetLinger(0)
	b.Close() // RST
	_ = a.SetWriteDeadline(time.Now().Add(10 * time.Second))
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write([]byte("x"))
		if err == nil {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("error %#v, want a *net.OpError for write", err)
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("error %v, want ECONNRESET or EPIPE", err)
	}
}

// A connection without a syscall.RawConn (net.Pipe) takes the ordinary
// path.
func TestFallback(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := New(a)
	if c.Raw() {
		t.Fatal("Raw() = true on net.Pipe")
	}
	go func() { _ = c.Writev([]byte("ab"), []byte("cd")) }()
	buf := make([]byte, 4)
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "abcd" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// A unix socketpair made into a net.Conn, as the worker sockets are.
func TestUnixSocketpair(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no socketpair")
	}
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "pair")
		conns[i], err = net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer conns[i].Close()
	}
	c := New(conns[0])
	if c.Raw() != rawEnabled {
		t.Fatalf("Raw() = %v on a unix socket, want %v", c.Raw(), rawEnabled)
	}
	msg := bytes.Repeat([]byte("frame"), 100000) // over the socket buffer
	_ = conns[0].SetWriteDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	_ = conns[1].SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conns[1], got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if _, err := conns[1].Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	_ = conns[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 8)
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
}
