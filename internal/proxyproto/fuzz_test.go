package proxyproto

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// fakeConn serves reads from a buffer and counts what was consumed.
type fakeConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *fakeConn) Read(p []byte) (int, error) {
	if c.r.Len() == 0 {
		return 0, io.EOF
	}
	return c.r.Read(p)
}
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
}
func (c *fakeConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
}
func (c *fakeConn) SetReadDeadline(time.Time) error { return nil }

// FuzzReadHeader: no input panics, and an accepted header is consumed
// exactly: up to its CRLF (v1) or its declared length (v2), not a byte
// more.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET /"))
	f.Add([]byte("PROXY TCP6 ::1 ::2 65535 1\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\nGET"))
	f.Add(v2(1, 0x11, v2tcp4("1.2.3.4", "5.6.7.8", 1, 2), []byte{1, 0, 1, 'x'}))
	f.Add(v2(0, 0x00, nil, nil))
	f.Add(v2(1, 0x21, v2tcp6("::1", "::2", 1, 2), nil))
	l := NewListener(nil, Config{})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &fakeConn{r: bytes.NewReader(data)}
		pc, err := l.readHeader(c)
		if err != nil {
			return
		}
		consumed := len(data) - c.r.Len()
		var want int
		if bytes.HasPrefix(data, []byte("PROXY ")) {
			want = bytes.Index(data, []byte("\r\n")) + 2
		} else {
			want = 16 + int(binary.BigEndian.Uint16(data[14:16]))
		}
		if consumed != want {
			t.Fatalf("consumed %d bytes of %q, the header is %d", consumed, data, want)
		}
		if pc.RemoteAddr() == nil || pc.LocalAddr() == nil {
			t.Fatal("nil address")
		}
	})
}
