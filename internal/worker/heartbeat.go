package worker

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/krait-server/krait/internal/wire"
)

// heartbeat pings the worker on stream 0 every limit/4 and kills it
// (KillFor) when a PING has gone unanswered for limit. Python answers a
// PING from the code that reads the socket: the ASGI event loop, so a
// loop blocked by a synchronous call misses it; the WSGI main thread,
// which proves the process is alive and the GIL can be had. A WSGI worker
// with one thread runs the app on that reading thread, so while it has a
// request in flight the clock does not run: a hung request there is
// --timeout's to end, not the heartbeat's.
func (w *Worker) heartbeat(limit time.Duration) {
	interval := max(limit/4, 10*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	inline := w.iface == "wsgi" && w.capacity == 1
	var seq uint64     // the last PING sent
	var sent time.Time // when the oldest unanswered PING went out; zero when none
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
		}
		if w.gone.Load() {
			return
		}
		if !sent.IsZero() {
			switch {
			case w.pong.Load() >= seq:
				sent = time.Time{}
			case inline && w.active.Load() > 0:
				sent = time.Now() // busy reading thread: see above
				continue
			case time.Since(sent) >= limit:
				w.KillFor(fmt.Errorf("no answer to the heartbeat for %v (--heartbeat-timeout): the worker's event loop or main thread is blocked", limit))
				return
			default:
				continue
			}
		}
		seq++
		sent = time.Now()
		var b [wire.HeaderSize + 8]byte
		wire.PutHeader(b[:], 8, wire.Ping, 0, 0)
		binary.LittleEndian.PutUint64(b[wire.HeaderSize:], seq)
		// Not on this goroutine: a worker that stopped reading can block
		// the write, and the deadline above must still be checked.
		go func() { _ = w.wr.Append(b[:]) }()
	}
}
