package wsbridge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/krait-server/krait/internal/exchange"
)

// upgradeWriter is the http.ResponseWriter the WebSocket library
// completes the handshake on: it collects the 101 header and writes it on
// the hijacked connection, or collects an error response for the engine.
type upgradeWriter struct {
	hdr      http.Header
	w        exchange.ResponseWriter // hijacked with exchange.Hijack
	status   int
	body     bytes.Buffer
	hijacked bool
}

var (
	_ http.ResponseWriter = (*upgradeWriter)(nil)
	_ http.Hijacker       = (*upgradeWriter)(nil)
)

func (u *upgradeWriter) Header() http.Header { return u.hdr }

func (u *upgradeWriter) WriteHeader(status int) {
	if u.status == 0 {
		u.status = status
	}
}

func (u *upgradeWriter) Write(p []byte) (int, error) {
	if u.status == 0 {
		u.status = 200
	}
	return u.body.Write(p)
}

var errNotUpgrading = errors.New("hijack without a 101 response")

// Hijack takes the connection over from the engine and writes the 101
// response collected so far.
func (u *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if u.status != http.StatusSwitchingProtocols {
		return nil, nil, errNotUpgrading
	}
	nc, brw, err := exchange.Hijack(u.w)
	if err != nil {
		return nil, nil, fmt.Errorf("hijacking the connection: %w", err)
	}
	u.hijacked = true
	_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	if err := u.hdr.Write(brw); err != nil {
		return nil, nil, fmt.Errorf("writing the 101 response: %w", err)
	}
	_, _ = brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		return nil, nil, fmt.Errorf("writing the 101 response: %w", err)
	}
	// The library reads and writes through these buffers for the life of
	// the connection. The engine's are 4 KiB: a 4 KiB message and its
	// frame header then take two writes to the client (and two reads),
	// each a syscall and a wake-up of the peer. The library takes over
	// what the reader has buffered (bytes the client sent after the
	// handshake), so those are moved into the new reader first.
	br := bufio.NewReaderSize(brw.Reader, wsBufSize)
	if n := brw.Reader.Buffered(); n > 0 {
		if _, err := br.Peek(n); err != nil {
			return nil, nil, fmt.Errorf("taking over the bytes read after the handshake: %w", err)
		}
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(nc, wsBufSize)), nil
}

// wsBufSize is the size of a WebSocket connection's read and write
// buffers: a message up to about this size (with its frame header) is
// one write and usually one read. Larger messages are written from the
// caller's slice directly, past the buffer.
const wsBufSize = 16 << 10
