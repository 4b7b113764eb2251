package proxyproto

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitLimit bounds every wait in these tests: generous for a busy
// machine, short enough that a failure shows in seconds.
const waitLimit = 10 * time.Second

type accepted struct {
	c   net.Conn
	err error
}

// listen starts a Listener on a free loopback port and a goroutine
// accepting from it; accepted connections arrive on the channel.
func listen(t *testing.T, network, addr string, cfg Config) (*Listener, <-chan accepted) {
	t.Helper()
	inner, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, cfg)
	ch := make(chan accepted, 16)
	go func() {
		for {
			c, err := l.Accept()
			ch <- accepted{c, err}
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return l, ch
}

func dial(t *testing.T, l *Listener, send []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout(l.Addr().Network(), l.Addr().String(), waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if len(send) > 0 {
		// One write: the kernel holds the header and the request
		// together, so reading past the header would lose bytes.
		if _, err := c.Write(send); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func next(t *testing.T, ch <-chan accepted) net.Conn {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("Accept: %v", a.err)
		}
		t.Cleanup(func() { _ = a.c.Close() })
		return a.c
	case <-time.After(waitLimit):
		t.Fatal("no connection accepted")
	}
	return nil
}

// closedByServer asserts that the server closed c (EOF or reset) within
// waitLimit, without c ever being accepted.
func closedByServer(t *testing.T, c net.Conn, ch <-chan accepted) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection not closed by the server: %v", err)
	}
	select {
	case a := <-ch:
		t.Fatalf("refused connection was accepted: %v %v", a.c, a.err)
	default:
	}
}

const request = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

// readAll reads exactly len(request) bytes from c.
func readRequest(t *testing.T, c net.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitLimit))
	b := make([]byte, len(request))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading the request after the header: %v (got %q)", err, b)
	}
	return string(b)
}

func v2(cmd, fam byte, addrs []byte, tlvs []byte) []byte {
	b := append([]byte(nil), v2sig...)
	b = append(b, 0x20|cmd, fam)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)+len(tlvs)))
	b = append(b, addrs...)
	return append(b, tlvs...)
}

func v2tcp4(src, dst string, sp, dp uint16) []byte {
	a := netip.MustParseAddr(src).As4()
	d := netip.MustParseAddr(dst).As4()
	b := append(a[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sp)
	return binary.BigEndian.AppendUint16(b, dp)
}

func v2tcp6(src, dst string, sp, dp uint16) []byte {
	a := netip.MustParseAddr(src).As16()
	d := netip.MustParseAddr(dst).As16()
	b := append(a[:], d[:]...)
	b = binary.BigEndian.AppendUint16(b, sp)
	return binary.BigEndian.AppendUint16(b, dp)
}

func TestHeaders(t *testing.T) {
	// AWS NLB style TLVs: type 0xEA, and a NOOP.
	tlvs := []byte{0xEA, 0x00, 0x05, 0x01, 'v', 'p', 'c', 'e', 0x04, 0x00, 0x02, 0x00, 0x00}
	tests := []struct {
		name          string
		header        []byte
		remote, local string // "" → the real endpoint
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 198.51.100.1 56324 443\r\n"), "203.0.113.7:56324", "198.51.100.1:443"},
		{"v1 TCP4 shortest", []byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "1.2.3.4:1", "5.6.7.8:2"},
		{"v1 TCP4 longest ports", []byte("PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n"), "255.255.255.255:65535", "255.255.255.255:65535"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 4711 8443\r\n"), "[2001:db8::7]:4711", "[2001:db8::1]:8443"},
		{"v1 TCP6 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"},
		{"v1 UNKNOWN shortest", []byte("PROXY UNKNOWN\r\n"), "", ""},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:f::1 ffff:f::2 1 2\r\n"), "", ""},
		{"v2 TCP4", v2(1, 0x11, v2tcp4("203.0.113.7", "198.51.100.1", 56324, 443), nil), "203.0.113.7:56324", "198.51.100.1:443"},
		{"v2 TCP4 with TLVs", v2(1, 0x11, v2tcp4("203.0.113.8", "198.51.100.1", 1, 80), tlvs), "203.0.113.8:1", "198.51.100.1:80"},
		{"v2 TCP6", v2(1, 0x21, v2tcp6("2001:db8::7", "2001:db8::1", 4711, 8443), nil), "[2001:db8::7]:4711", "[2001:db8::1]:8443"},
		{"v2 LOCAL (health check)", v2(0, 0x00, nil, nil), "", ""},
		{"v2 LOCAL ignores its addresses", v2(0, 0x11, v2tcp4("203.0.113.7", "198.51.100.1", 1, 2), nil), "", ""},
		{"v2 UNSPEC", v2(1, 0x00, nil, nil), "", ""},
		{"v2 UNIX", v2(1, 0x31, make([]byte, 216), nil), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ch := listen(t, "tcp", "127.0.0.1:0", Config{})
			client := dial(t, l, append(append([]byte(nil), tt.header...), request...))
			c := next(t, ch)
			wantRemote, wantLocal := tt.remote, tt.local
			if wantRemote == "" {
				wantRemote, wantLocal = client.LocalAddr().String(), client.RemoteAddr().String()
			}
			if got := c.RemoteAddr().String(); got != wantRemote {
				t.Errorf("RemoteAddr %s, want %s", got, wantRemote)
			}
			if got := c.LocalAddr().String(); got != wantLocal {
				t.Errorf("LocalAddr %s, want %s", got, wantLocal)
			}
			if _, ok := c.RemoteAddr().(*net.TCPAddr); !ok {
				t.Errorf("RemoteAddr is a %T, want *net.TCPAddr (the engine reads the IP from it)", c.RemoteAddr())
			}
			if got := readRequest(t, c); got != request {
				t.Errorf("bytes after the header: %q, want %q", got, request)
			}
			// Both directions work.
			if _, err := c.Write([]byte("ok")); err != nil {
				t.Fatal(err)
			}
			_ = client.SetReadDeadline(time.Now().Add(waitLimit))
			var b [2]byte
			if _, err := io.ReadFull(client, b[:]); err != nil || string(b[:]) != "ok" {
				t.Fatalf("reply: %q %v", b, err)
			}
		})
	}
}

// The header is read exactly, so the request bytes are still in the
// socket: the engine can read them from the raw descriptor.
func TestRawDescriptorSeesRequest(t *testing.T) {
	l, ch := listen(t, "tcp", "127.0.0.1:0", Config{})
	dial(t, l, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 56324 443\r\n"+request))
	c := next(t, ch)
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T does not implement syscall.Conn", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var got []byte
	deadline := time.Now().Add(waitLimit)
	for len(got) < len(request) && time.Now().Before(deadline) {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf)
			return !errors.Is(rerr, syscall.EAGAIN)
		})
		if err != nil || rerr != nil || n == 0 {
			t.Fatalf("raw read: %d %v %v", n, err, rerr)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != request {
		t.Fatalf("raw descriptor read %q, want %q", got, request)
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		send string
	}{
		{"no header: plain HTTP", request},
		{"v1 bad address", "PROXY TCP4 203.0.113.x 198.51.100.1 1 2\r\n" + request},
		{"v1 TCP4 with IPv6 addresses", "PROXY TCP4 ::1 ::2 1 2\r\n" + request},
		{"v1 TCP6 with IPv4 addresses", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n" + request},
		{"v1 port out of range", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n" + request},
		{"v1 port leading zero", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n" + request},
		{"v1 missing field", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + request},
		{"v1 extra field", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n" + request},
		{"v1 bare LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n" + request},
		{"v1 unknown protocol", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n" + request},
		{"v1 too long", "PROXY UNKNOWN " + strings.Repeat("a", 100) + "\r\n" + request},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n" + request},
		{"v2 bad version", string(append(append([]byte(nil), v2sig...), 0x31, 0x11, 0, 12)) + strings.Repeat("\x00", 12) + request},
		{"v2 bad command", string(v2(2, 0x11, v2tcp4("1.2.3.4", "5.6.7.8", 1, 2), nil)) + request},
		{"v2 UDP family", string(v2(1, 0x12, v2tcp4("1.2.3.4", "5.6.7.8", 1, 2), nil)) + request},
		{"v2 short address block", string(v2(1, 0x21, v2tcp4("1.2.3.4", "5.6.7.8", 1, 2), nil)) + request},
		{"v2 truncated", string(v2sig) + "\x21\x11\x00\x0c\x01\x02"},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03abcdefgh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, ch := listen(t, "tcp", "127.0.0.1:0", Config{HeaderTimeout: 500 * time.Millisecond})
			c := dial(t, l, []byte(tt.send))
			closedByServer(t, c, ch)
			// The listener goes on accepting.
			dial(t, l, []byte("PROXY TCP4 203.0.113.9 198.51.100.1 1 2\r\n"))
			if got := next(t, ch).RemoteAddr().String(); got != "203.0.113.9:1" {
				t.Fatalf("next connection: %s", got)
			}
		})
	}
}

func TestHeaderTimeout(t *testing.T) {
	l, ch := listen(t, "tcp", "127.0.0.1:0", Config{HeaderTimeout: 200 * time.Millisecond})
	closedByServer(t, dial(t, l, nil), ch)
	closedByServer(t, dial(t, l, []byte("PROXY TCP4 1.2.3.4 ")), ch)
}

func TestUntrustedPeerClosed(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	l, ch := listen(t, "tcp", "127.0.0.1:0", Config{Trusted: trusted})
	closedByServer(t, dial(t, l, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n"+request)), ch)
	// An empty list trusts nobody either.
	l2, ch2 := listen(t, "tcp", "127.0.0.1:0", Config{Trusted: []netip.Prefix{}})
	closedByServer(t, dial(t, l2, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n"+request)), ch2)
}

func TestIPv6LoopbackTrustedByDefault(t *testing.T) {
	inner, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = inner.Close()
	l, ch := listen(t, "tcp", "[::1]:0", Config{})
	dial(t, l, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n"))
	if got := next(t, ch).RemoteAddr().String(); got != "203.0.113.7:1" {
		t.Fatalf("RemoteAddr %s", got)
	}
}

func TestUnixSocketPeerTrusted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, ch := listen(t, "unix", path, Config{Trusted: []netip.Prefix{}})
	dial(t, l, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n"+request))
	c := next(t, ch)
	if got := c.RemoteAddr().String(); got != "203.0.113.7:1" {
		t.Fatalf("RemoteAddr %s", got)
	}
	if got := readRequest(t, c); got != request {
		t.Fatalf("request %q", got)
	}
}

// A peer that never sends its header must not hold up the others.
func TestSlowPeerDoesNotBlockAccept(t *testing.T) {
	l, ch := listen(t, "tcp", "127.0.0.1:0", Config{HeaderTimeout: time.Minute})
	dial(t, l, []byte("PROX"))
	dial(t, l, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n"))
	if got := next(t, ch).RemoteAddr().String(); got != "203.0.113.7:1" {
		t.Fatalf("RemoteAddr %s", got)
	}
}

// Close ends Accept and closes connections still in their header.
func TestClose(t *testing.T) {
	l, ch := listen(t, "tcp", "127.0.0.1:0", Config{HeaderTimeout: time.Minute})
	slow := dial(t, l, []byte("PROXY "))
	// Make sure the slow connection was taken by the accept loop: a good
	// one dialled after it is accepted.
	dial(t, l, []byte("PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\n"))
	next(t, ch)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-ch:
		if !errors.Is(a.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v %v, want net.ErrClosed", a.c, a.err)
		}
	case <-time.After(waitLimit):
		t.Fatal("Accept did not return after Close")
	}
	closedByServer(t, slow, ch)
}

func TestV1Need(t *testing.T) {
	// Every prefix of a valid line must ask for no more than the line
	// still holds.
	lines := []string{
		"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
		"PROXY TCP4 203.0.113.7 198.51.100.1 56324 443\r\n",
		"PROXY TCP6 ::1 ::2 1 2\r\n",
		"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
		"PROXY UNKNOWN\r\n",
		"PROXY UNKNOWN 1 2 3 4 5 6 7\r\n",
	}
	for _, line := range lines {
		for n := v1MinLen; n < len(line); n++ {
			if line[n-2:n] == "\r\n" {
				break
			}
			need, ok := v1Need([]byte(line[:n]))
			if !ok || need < 1 || n+need > len(line) {
				t.Errorf("v1Need(%q) = %d, %v; the line has %d more", line[:n], need, ok, len(line)-n)
			}
		}
	}
}
