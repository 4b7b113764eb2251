package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/forwarded"
)

// DefaultHeaderTimeout bounds the wait for the PROXY header of a new
// connection when Config.HeaderTimeout is 0.
const DefaultHeaderTimeout = 5 * time.Second

// Config configures a Listener.
type Config struct {
	// Trusted are the peers allowed to send a PROXY header (the load
	// balancers). nil means 127.0.0.1 and ::1; unix socket peers are
	// always trusted. A connection from any other peer is closed.
	Trusted []netip.Prefix
	// HeaderTimeout bounds reading the header; 0 means DefaultHeaderTimeout.
	HeaderTimeout time.Duration
	// Log receives rate-limited warnings about refused connections; nil
	// discards them.
	Log *slog.Logger
}

// Listener accepts connections that start with a PROXY protocol v1 or v2
// header. It is safe for concurrent use.
type Listener struct {
	inner   net.Listener
	trust   forwarded.Trust
	timeout time.Duration
	log     *slog.Logger
	warn    limiter

	start sync.Once
	ready chan net.Conn // connections whose header was read
	errc  chan error    // temporary accept errors, handed to Accept one at a time
	// failed is closed when the inner listener failed for good; failErr
	// is then that error (written before the close).
	failed  chan struct{}
	failErr error

	closeOnce sync.Once
	done      chan struct{} // closed by Close

	mu      sync.Mutex
	pending map[net.Conn]struct{} // connections whose header is being read
	closed  bool
}

// NewListener wraps inner. The caller must not use inner afterwards.
func NewListener(inner net.Listener, cfg Config) *Listener {
	t := cfg.HeaderTimeout
	if t <= 0 {
		t = DefaultHeaderTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		inner:   inner,
		trust:   forwarded.NewTrust(cfg.Trusted),
		timeout: t,
		log:     log,
		ready:   make(chan net.Conn),
		errc:    make(chan error),
		failed:  make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[net.Conn]struct{}),
	}
}

// Accept returns the next connection whose PROXY header was read and
// applied. Headers are read on a goroutine per connection, so a peer that
// is slow to send its header delays nobody else.
func (l *Listener) Accept() (net.Conn, error) {
	l.start.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.ready:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.failed:
		return nil, l.failErr
	case <-l.done:
		return nil, fmt.Errorf("proxyproto: accept: %w", net.ErrClosed)
	}
}

// Close closes the inner listener and every connection whose header is
// still being read.
func (l *Listener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		l.closed = true
		for c := range l.pending {
			_ = c.Close() // it never reached anyone: nothing to report
		}
		clear(l.pending)
		l.mu.Unlock()
	})
	return err
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

func (l *Listener) acceptLoop() {
	for {
		nc, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Hand it to Accept's caller, whose retry backoff then
				// paces this loop too.
				select {
				case l.errc <- err:
					continue
				case <-l.done:
					return
				}
			}
			l.failErr = err
			close(l.failed)
			return
		}
		if !l.track(nc) {
			_ = nc.Close()
			return
		}
		go l.handshake(nc)
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (l *Listener) track(nc net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.pending[nc] = struct{}{}
	return true
}

// untrack reports false when Close already closed nc.
func (l *Listener) untrack(nc net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	delete(l.pending, nc)
	return true
}

func (l *Listener) handshake(nc net.Conn) {
	c, err := l.readHeader(nc)
	if !l.untrack(nc) {
		return
	}
	if err != nil {
		_ = nc.Close()
		l.warn.do(func(dropped int) {
			l.log.Warn("PROXY protocol: connection refused", "peer", addrString(nc.RemoteAddr()), "err", err, "similar_refusals_not_logged", dropped)
		})
		return
	}
	select {
	case l.ready <- c:
	case <-l.done:
		_ = nc.Close()
	}
}

// Errors a connection is refused with.
var (
	ErrUntrusted = errors.New("peer is not trusted to send a PROXY header")
	ErrNoHeader  = errors.New("no PROXY protocol header")
	ErrMalformed = errors.New("malformed PROXY protocol header")
)

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	v1MaxLen = 107 // the longest v1 line, CRLF included (spec §2.1)
	v1MinLen = 15  // "PROXY UNKNOWN\r\n"
)

// readHeader reads the header of nc, never a byte past it: the bytes after
// it stay in the socket, so the engine may read them through the file
// descriptor (Conn.SyscallConn) as well as through Read.
func (l *Listener) readHeader(nc net.Conn) (*Conn, error) {
	if !l.trustedPeer(nc.RemoteAddr()) {
		return nil, ErrUntrusted
	}
	if err := nc.SetReadDeadline(time.Now().Add(l.timeout)); err != nil {
		return nil, fmt.Errorf("setting the header deadline: %w", err)
	}
	var buf [v1MaxLen]byte
	// 15 bytes never run past a header: v1 is at least 15, v2 at least 16.
	if _, err := io.ReadFull(nc, buf[:v1MinLen]); err != nil {
		return nil, fmt.Errorf("%w: reading it: %w", ErrNoHeader, err)
	}
	var c *Conn
	var err error
	switch {
	case bytes.HasPrefix(buf[:], []byte("PROXY ")):
		c, err = readV1(nc, &buf)
	case bytes.Equal(buf[:12], v2sig):
		c, err = readV2(nc, &buf)
	default:
		return nil, ErrNoHeader
	}
	if err != nil {
		return nil, err
	}
	if err := nc.SetReadDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("clearing the header deadline: %w", err)
	}
	return c, nil
}

func (l *Listener) trustedPeer(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return l.trust.Contains(a.AddrPort().Addr())
	case *net.UnixAddr:
		return true // as in package forwarded: local processes only
	}
	return false
}

// readV1 reads the rest of a v1 line whose first v1MinLen bytes are in
// buf, and parses it.
func readV1(nc net.Conn, buf *[v1MaxLen]byte) (*Conn, error) {
	n := v1MinLen
	for !bytes.HasSuffix(buf[:n], []byte("\r\n")) {
		need, ok := v1Need(buf[:n])
		if !ok || n+need > v1MaxLen {
			return nil, fmt.Errorf("%w: %q", ErrMalformed, buf[:n])
		}
		if _, err := io.ReadFull(nc, buf[n:n+need]); err != nil {
			return nil, fmt.Errorf("%w: reading it: %w", ErrMalformed, err)
		}
		n += need
	}
	return parseV1(nc, buf[:n-2])
}

// v1Need returns how many more bytes a valid v1 line starting with p
// (no CRLF yet) has at least, so that reading them cannot run past the
// line: reading byte by byte would cost a system call per byte.
func v1Need(p []byte) (int, bool) {
	if i := bytes.IndexByte(p, '\n'); i >= 0 {
		return 0, false
	}
	if i := bytes.IndexByte(p, '\r'); i >= 0 && i != len(p)-1 {
		return 0, false
	}
	if p[len(p)-1] == '\r' {
		return 1, true
	}
	rest := p[len("PROXY "):]
	if bytes.HasPrefix(rest, []byte("UNKNOWN")) {
		return 2, true // anything up to CRLF, ignored
	}
	if !bytes.HasPrefix(rest, []byte("TCP4 ")) && !bytes.HasPrefix(rest, []byte("TCP6 ")) {
		return 0, false
	}
	// "PROXY TCPx src dst sport dport": five spaces, each followed by
	// a non-empty field.
	missing := 5 - bytes.Count(p, []byte{' '})
	if missing < 0 {
		return 0, false
	}
	need := 2*missing + 2
	if p[len(p)-1] == ' ' {
		need++
	}
	return need, true
}

// parseV1 parses a v1 line without its CRLF.
func parseV1(nc net.Conn, line []byte) (*Conn, error) {
	bad := func() (*Conn, error) { return nil, fmt.Errorf("%w: %q", ErrMalformed, line) }
	f := bytes.Split(line, []byte{' '})
	if len(f) >= 2 && string(f[1]) == "UNKNOWN" {
		// The proxy could not tell (spec: use the real endpoints).
		return &Conn{Conn: nc}, nil
	}
	if len(f) != 6 {
		return bad()
	}
	src, err1 := netip.ParseAddr(string(f[2]))
	dst, err2 := netip.ParseAddr(string(f[3]))
	sp, ok1 := parseV1Port(f[4])
	dp, ok2 := parseV1Port(f[5])
	if err1 != nil || err2 != nil || !ok1 || !ok2 || src.Zone() != "" || dst.Zone() != "" {
		return bad()
	}
	switch string(f[1]) {
	case "TCP4":
		if !src.Is4() || !dst.Is4() {
			return bad()
		}
	case "TCP6":
		if !src.Is6() || !dst.Is6() {
			return bad()
		}
	default:
		return bad()
	}
	return &Conn{Conn: nc, remote: tcpAddr(src, sp), local: tcpAddr(dst, dp)}, nil
}

func parseV1Port(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	p, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(p), err == nil
}

// readV2 reads the rest of a v2 header whose first v1MinLen bytes are in
// buf, and parses it.
func readV2(nc net.Conn, buf *[v1MaxLen]byte) (*Conn, error) {
	if _, err := io.ReadFull(nc, buf[v1MinLen:16]); err != nil {
		return nil, fmt.Errorf("%w: reading it: %w", ErrMalformed, err)
	}
	verCmd, fam := buf[12], buf[13]
	length := int(binary.BigEndian.Uint16(buf[14:16]))
	if verCmd>>4 != 2 {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, verCmd>>4)
	}
	cmd := verCmd & 0xf
	if cmd > 1 {
		return nil, fmt.Errorf("%w: command %d", ErrMalformed, cmd)
	}
	var alen int
	switch fam {
	case 0x00: // UNSPEC
	case 0x11: // TCP over IPv4
		alen = 12
	case 0x21: // TCP over IPv6
		alen = 36
	case 0x31: // UNIX stream
		alen = 216
	default:
		if cmd == 1 {
			return nil, fmt.Errorf("%w: address family 0x%02x on a stream listener", ErrMalformed, fam)
		}
	}
	if cmd == 0 {
		alen = 0 // LOCAL: the family and addresses are to be ignored
	}
	if length < alen {
		return nil, fmt.Errorf("%w: %d address bytes for family 0x%02x", ErrMalformed, length, fam)
	}
	var addrs [216]byte
	if _, err := io.ReadFull(nc, addrs[:alen]); err != nil {
		return nil, fmt.Errorf("%w: reading it: %w", ErrMalformed, err)
	}
	// TLVs (AWS, GCP and Azure add some) are not used: skip them.
	if rest := int64(length - alen); rest > 0 {
		if _, err := io.CopyN(io.Discard, nc, rest); err != nil {
			return nil, fmt.Errorf("%w: reading it: %w", ErrMalformed, err)
		}
	}
	c := &Conn{Conn: nc}
	if cmd == 0 {
		// LOCAL: the proxy's own connection (a health check): serve it
		// with the real endpoints, as the spec says.
		return c, nil
	}
	switch fam {
	case 0x11:
		src := netip.AddrFrom4([4]byte(addrs[0:4]))
		dst := netip.AddrFrom4([4]byte(addrs[4:8]))
		c.remote = tcpAddr(src, binary.BigEndian.Uint16(addrs[8:10]))
		c.local = tcpAddr(dst, binary.BigEndian.Uint16(addrs[10:12]))
	case 0x21:
		src := netip.AddrFrom16([16]byte(addrs[0:16]))
		dst := netip.AddrFrom16([16]byte(addrs[16:32]))
		c.remote = tcpAddr(src, binary.BigEndian.Uint16(addrs[32:34]))
		c.local = tcpAddr(dst, binary.BigEndian.Uint16(addrs[34:36]))
	}
	// UNSPEC and UNIX: no IP to report; the real endpoints stay.
	return c, nil
}

func tcpAddr(a netip.Addr, port uint16) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, port))
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// Conn is a connection whose addresses come from its PROXY header.
type Conn struct {
	net.Conn
	remote, local net.Addr // nil: the real endpoint's
}

// RemoteAddr is the source address of the header (the client), or the
// real peer for LOCAL, UNKNOWN and UNSPEC headers.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the destination address of the header (what the client
// connected to), or the real local address.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// SyscallConn gives the underlying connection's raw connection. This is
// sound because the header was read exactly: nothing the client sent
// after it is held in user space.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.New("proxyproto: the underlying connection has no file descriptor")
}

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// limiter lets one warning through per interval and counts the others,
// so a flood of refused connections cannot flood the log.
type limiter struct {
	mu      sync.Mutex
	next    time.Time
	dropped int
}

const warnInterval = 10 * time.Second

func (l *limiter) do(fn func(dropped int)) {
	l.mu.Lock()
	now := time.Now()
	if now.Before(l.next) {
		l.dropped++
		l.mu.Unlock()
		return
	}
	d := l.dropped
	l.dropped = 0
	l.next = now.Add(warnInterval)
	l.mu.Unlock()
	fn(d)
}
