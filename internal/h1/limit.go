package h1

import (
	"net"
	"sync"
)

// LimitListener wraps l so that connections it accepts count against lim,
// for engines other than h1's (net/http's, for TLS and HTTP/2): at the
// bound Accept waits until one of them closes, as Server.Serve does. A
// connection gives its slot back on its first Close. Accept returns
// net.ErrClosed once the listener is closed.
func LimitListener(l net.Listener, lim *ConnLimit) net.Listener {
	return &limitListener{Listener: l, lim: lim, done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	lim       *ConnLimit
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.lim.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		l.lim.release()
		return nil, err
	}
	return &limitConn{Conn: c, release: sync.OnceFunc(l.lim.release)}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
