package h1

import (
	"context"
	"sync"
	"time"
)

// reqCtx is the context.Context of a connection's current request
// (exchange.Request.Ctx). One lives in each conn and serves request after
// request, so a request costs no allocation: the Done channel is made only
// when someone asks for it, and kept for the next request unless it was
// closed. It is cancelled by the connection's watcher when the client is
// gone (once the handler called Request.Watch) and by Server.Close.
//
// It implements AfterFunc, so context.WithTimeout and context.AfterFunc
// derived from it register a callback instead of starting a goroutine.
type reqCtx struct {
	mu    sync.Mutex
	done  chan struct{} // nil until Done is called; closed on cancel
	err   error         // context.Canceled once cancelled
	gen   uint64        // bumped per request: stale AfterFunc stops are no-ops
	next  uint64        // AfterFunc registration ids
	after []afterFunc
}

type afterFunc struct {
	id uint64
	f  func()
}

var _ context.Context = (*reqCtx)(nil)

func (x *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (x *reqCtx) Value(any) any               { return nil }

// closedChan is the Done of a context cancelled before Done was asked for.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (x *reqCtx) Done() <-chan struct{} {
	x.mu.Lock()
	if x.done == nil {
		if x.err != nil {
			x.done = closedChan
		} else {
			x.done = make(chan struct{})
		}
	}
	d := x.done
	x.mu.Unlock()
	return d
}

func (x *reqCtx) Err() error {
	x.mu.Lock()
	err := x.err
	x.mu.Unlock()
	return err
}

// cancel cancels the current request's context; later calls do nothing.
func (x *reqCtx) cancel() {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		return
	}
	x.err = context.Canceled
	if x.done != nil {
		close(x.done)
	}
	after := x.after
	x.after = nil
	x.mu.Unlock()
	for _, a := range after {
		go a.f() // as context.AfterFunc does
	}
}

// reset readies the context for the connection's next request: a
// cancelled one gets a fresh state, and callbacks registered during the
// previous request (by a handler that did not cancel what it derived) are
// dropped. A live Done channel is kept: it was never closed.
func (x *reqCtx) reset() {
	x.mu.Lock()
	if x.err != nil {
		x.err = nil
		x.done = nil
	}
	x.gen++
	clear(x.after)
	x.after = x.after[:0]
	x.mu.Unlock()
}

// AfterFunc arranges for f to run in its own goroutine once the context is
// cancelled (at once if it is already); stop unregisters it and reports
// whether it did so before f was started. The context package uses it for
// contexts derived from this one.
func (x *reqCtx) AfterFunc(f func()) (stop func() bool) {
	x.mu.Lock()
	if x.err != nil {
		x.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	x.next++
	id, gen := x.next, x.gen
	x.after = append(x.after, afterFunc{id, f})
	x.mu.Unlock()
	return func() bool {
		x.mu.Lock()
		defer x.mu.Unlock()
		if x.gen != gen {
			return false
		}
		for i, a := range x.after {
			if a.id == id {
				x.after = append(x.after[:i], x.after[i+1:]...)
				return true
			}
		}
		return false
	}
}
