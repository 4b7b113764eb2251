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
	return nc, brw, nil
}
