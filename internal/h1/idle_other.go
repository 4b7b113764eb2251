//go:build !unix

package h1

import (
	"net"
	"syscall"
)

// rawConn returns nil: without unix non-blocking reads an idle connection
// waits in Read with a pooled buffer.
func rawConn(net.Conn) syscall.RawConn { return nil }

// idleRead is never called where rawConn returns nil.
func (c *conn) idleRead(uintptr) bool { panic("h1: idleRead without a raw connection") }
