package wsbridge

import (
	"context"
	"time"

	"github.com/coder/websocket"
)

// pingLoop pings the client every PingInterval and drops the
// connection when a pong does not come within PingTimeout.
func (br *Bridge) pingLoop(ctx context.Context, c *websocket.Conn) {
	t := time.NewTicker(br.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, br.cfg.PingTimeout)
		err := c.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				br.log.Debug("WebSocket ping failed, dropping the connection", "err", err)
			}
			_ = c.CloseNow()
			return
		}
	}
}

func (br *Bridge) track(c *websocket.Conn) bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.stopping {
		return false
	}
	if br.conns == nil {
		br.conns = map[*websocket.Conn]struct{}{}
	}
	br.conns[c] = struct{}{}
	return true
}

func (br *Bridge) isStopping() bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.stopping
}

func (br *Bridge) untrack(c *websocket.Conn) {
	br.mu.Lock()
	delete(br.conns, c)
	br.mu.Unlock()
}

// Shutdown starts closing every WebSocket session with code 1012 (service
// restart), as uvicorn does, and makes sessions accepted from now on close
// at once: the apps see websocket.disconnect and end, so the workers can
// finish their graceful stop. Call it when a graceful stop begins; it does
// not wait. HTTP requests are not affected.
func (br *Bridge) Shutdown() {
	br.mu.Lock()
	defer br.mu.Unlock()
	br.stopping = true
	for c := range br.conns {
		go func() { _ = c.Close(closeRestart, "server shutting down") }()
	}
}
