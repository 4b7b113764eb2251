//go:build unix

package h1

import (
	"io"
	"net"
	"syscall"

	"github.com/krait-server/krait/internal/rawio"
)

// rawConn returns nc's raw connection for waiting idle without a buffer,
// or nil when nc has none (test pipes, wrapped connections).
func rawConn(nc net.Conn) syscall.RawConn {
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			return rc
		}
	}
	return nil
}

// idleRead is readIdle's callback for syscall.RawConn.Read, which calls it
// whenever the socket may be readable: a non-blocking read into a pooled
// buffer, which goes back to the pool when there is nothing to read yet
// (false: wait for readability and call again).
func (c *conn) idleRead(fd uintptr) bool {
	b := readPool.Get().(*[]byte)
	for {
		n, err := rawio.ReadFD(fd, *b) // no entersyscall: see internal/rawio
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			readPool.Put(b)
			return false
		case err != nil:
			c.idleN, c.idleEr = 0, err
		case n == 0:
			c.idleN, c.idleEr = 0, io.EOF
		default:
			c.idleN = n
		}
		c.rbuf, c.buf = b, *b
		return true
	}
}
