package rawio

import (
	"io"
	"net"
	"syscall"
)

// Conn reads and writes a net.Conn with raw system calls where they apply
// (see the package documentation), and with its Read and Write otherwise.
// The zero value is not usable: call New or Init.
type Conn struct {
	nc net.Conn
	rc syscall.RawConn // nil: the ordinary path
	rs readState
	ws writeState
}

// New returns a Conn for nc.
func New(nc net.Conn) *Conn {
	c := new(Conn)
	c.Init(nc)
	return c
}

// Init readies c, which may be embedded in a larger struct, for nc.
func (c *Conn) Init(nc net.Conn) {
	*c = Conn{nc: nc}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	c.initRaw()
}

// RawConn returns nc's syscall.RawConn, or nil when it has none.
func (c *Conn) RawConn() syscall.RawConn { return c.rc }

// Raw reports whether reads and writes use raw system calls.
func (c *Conn) Raw() bool { return c.rc != nil && rawEnabled }

// Read reads into p once bytes are available, like net.Conn.Read.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.Raw() || len(p) == 0 {
		return c.nc.Read(p)
	}
	return c.rawRead(p)
}

// Write writes all of p, like net.Conn.Write.
func (c *Conn) Write(p []byte) (int, error) {
	if !c.Raw() || len(p) == 0 {
		return c.nc.Write(p)
	}
	n, err := c.rawWritev(p, nil)
	return n, err
}

// Writev writes a and then b (either may be empty) in full, with one
// writev(2) when the socket takes both at once.
func (c *Conn) Writev(a, b []byte) error {
	if !c.Raw() {
		return c.writeBuffers(a, b)
	}
	_, err := c.rawWritev(a, b)
	return err
}

// writeBuffers is Writev on the ordinary path: a net.Buffers when both
// are there (one writev on a TCP or unix connection), else one Write.
func (c *Conn) writeBuffers(a, b []byte) error {
	var err error
	switch {
	case len(b) == 0:
		if len(a) > 0 {
			_, err = c.nc.Write(a)
		}
	case len(a) == 0:
		_, err = c.nc.Write(b)
	default:
		bufs := net.Buffers{a, b}
		_, err = bufs.WriteTo(c.nc)
	}
	return err
}

// opError wraps a failed raw system call as net.Conn's methods do, so that
// callers matching errors (errors.Is(err, syscall.EPIPE), net.Error) see
// the same thing on both paths.
func (c *Conn) opError(op string, err error) error {
	e := &net.OpError{Op: op, Err: err}
	if la := c.nc.LocalAddr(); la != nil {
		e.Net, e.Source = la.Network(), la
	}
	if ra := c.nc.RemoteAddr(); ra != nil {
		e.Addr = ra
	}
	return e
}

// eof is what a zero-byte read means on a stream socket.
var eof = io.EOF
