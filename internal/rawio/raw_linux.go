//go:build linux && !race

package rawio

import (
	"os"
	"syscall"
	"unsafe"
)

const rawEnabled = true

// readState is one read's state, with its RawConn.Read callback bound once.
type readState struct {
	fn  func(fd uintptr) bool
	p   []byte
	n   int
	err error // the system call's error
}

// writeState is one write's state, with its RawConn.Write callback bound
// once.
type writeState struct {
	fn   func(fd uintptr) bool
	iov  [2]syscall.Iovec
	bufs [2][]byte // what is left to write
	n    int
	err  error // the system call's error
}

func (c *Conn) initRaw() {
	c.rs.fn = c.readFn
	c.ws.fn = c.writevFn
}

func (c *Conn) rawRead(p []byte) (int, error) {
	r := &c.rs
	r.p, r.n, r.err = p, 0, nil
	err := c.rc.Read(r.fn)
	n := r.n
	r.p = nil
	switch {
	case err != nil: // deadline, closed: already a *net.OpError
	case r.err != nil:
		err = c.opError("read", r.err)
	case n == 0:
		err = eof
	}
	return n, err
}

// readFn is rawRead's RawConn.Read callback: false asks the runtime to wait
// for readability (within the read deadline) and call again.
func (c *Conn) readFn(fd uintptr) bool {
	r := &c.rs
	for {
		n, err := ReadFD(fd, r.p)
		switch err {
		case nil:
			r.n = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		r.err = os.NewSyscallError("read", err)
		return true
	}
}

func (c *Conn) rawWritev(a, b []byte) (int, error) {
	w := &c.ws
	w.bufs[0], w.bufs[1], w.n, w.err = a, b, 0, nil
	err := c.rc.Write(w.fn)
	n := w.n
	// Drop the references to the caller's buffers.
	w.bufs[0], w.bufs[1] = nil, nil
	w.iov[0].Base, w.iov[1].Base = nil, nil
	if err == nil && w.err != nil {
		err = c.opError("write", w.err)
	}
	return n, err
}

// writevFn is rawWritev's RawConn.Write callback: it writes until done
// (true) or the socket is full (false: the runtime waits for writability,
// within the write deadline, and calls again).
func (c *Conn) writevFn(fd uintptr) bool {
	w := &c.ws
	for {
		k := 0
		for i := range w.bufs {
			if b := w.bufs[i]; len(b) > 0 {
				w.iov[k].Base = &b[0]
				w.iov[k].SetLen(len(b))
				k++
			}
		}
		if k == 0 {
			return true
		}
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(k))
		switch errno {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			w.err = os.NewSyscallError("writev", errno)
			return true
		}
		n := int(r)
		w.n += n
		for i := range w.bufs {
			m := min(n, len(w.bufs[i]))
			w.bufs[i] = w.bufs[i][m:]
			n -= m
		}
	}
}

// ReadFD is read(2) of fd into p, for syscall.RawConn.Read callbacks on
// non-blocking sockets: without entersyscall here. It returns the Errno
// (EAGAIN, EINTR, ...) unwrapped, and (0, nil) at end of stream.
func ReadFD(fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
