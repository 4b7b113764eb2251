package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

// ctxWait is how long a test waits for a context to be cancelled before
// failing with a message (never the 20-minute test timeout).
const ctxWait = 10 * time.Second

// longRequest is a handler that reports when it runs, then waits for its
// request's context to end (or ctxWait) and reports ctx.Err().
type longRequest struct {
	watch   bool
	derive  bool // wait on a context.WithCancel child instead
	started chan struct{}
	result  chan error
}

func newLongRequest(watch bool) *longRequest {
	return &longRequest{watch: watch, started: make(chan struct{}, 1), result: make(chan error, 1)}
}

func (h *longRequest) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	if h.watch {
		r.Watch()
	}
	ctx := r.Context()
	if h.derive {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
	}
	h.started <- struct{}{}
	t := time.NewTimer(ctxWait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		h.result <- ctx.Err()
	case <-t.C:
		h.result <- errors.New("the request context was not cancelled within 10s")
	}
	_ = w.WriteHeader(200, nil, nil, 0)
}

func waitStarted(t *testing.T, h *longRequest) {
	t.Helper()
	select {
	case <-h.started:
	case <-time.After(ctxWait):
		t.Fatal("the handler did not start within 10s")
	}
}

func waitResult(t *testing.T, h *longRequest) error {
	t.Helper()
	select {
	case err := <-h.result:
		return err
	case <-time.After(2 * ctxWait):
		t.Fatal("the handler did not report within 20s")
		return nil
	}
}

// TestContextCancelledWhenClientLeaves: a handler that asked to watch the
// connection sees its context cancelled when the client closes during a
// long request.
func TestContextCancelledWhenClientLeaves(t *testing.T) {
	for _, derive := range []bool{false, true} {
		h := newLongRequest(true)
		h.derive = derive
		_, addr := startServer(t, h, Config{})
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitStarted(t, h)
		c.Close()
		if err := waitResult(t, h); err != context.Canceled {
			t.Errorf("derive=%v: ctx.Err() = %v, want context.Canceled", derive, err)
		}
	}
}

// TestContextCancelledOnClose: Server.Close cancels the context of a
// request in flight, watched or not, and of a context derived from it.
func TestContextCancelledOnClose(t *testing.T) {
	for _, tc := range []struct{ watch, derive bool }{{false, false}, {true, false}, {false, true}} {
		h := newLongRequest(tc.watch)
		h.derive = tc.derive
		srv, addr := startServer(t, h, Config{})
		c := dial(t, addr)
		if _, err := io.WriteString(c, "GET /long HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		waitStarted(t, h)
		_ = srv.Close()
		if err := waitResult(t, h); err != context.Canceled {
			t.Errorf("%+v: ctx.Err() = %v, want context.Canceled", tc, err)
		}
		c.Close()
	}
}

// TestContextLiveDuringGracefulShutdown: a graceful Shutdown lets the
// request finish with its context live; it is not a hard stop.
func TestContextLiveDuringGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	errs := make(chan error, 1)
	started := make(chan struct{})
	srv, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		r.Watch()
		close(started)
		<-release
		errs <- r.Context().Err()
		_ = w.WriteHeader(200, nil, nil, 0)
	}), Config{})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	<-started
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(shutdownCtx(t, 20*time.Second)) }()
	waitUntil(t, "Shutdown to begin", srv.shutting.Load)
	close(release)
	if err := <-errs; err != nil {
		t.Errorf("ctx.Err() during a graceful shutdown = %v, want nil", err)
	}
	resp, _ := readResponse(t, bufio.NewReader(c), "GET")
	if resp.StatusCode != 200 {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// TestContextFreshPerRequest: on a keep-alive connection each request
// starts with a live context even after the previous one asked for Done,
// and a watched request that ends normally leaves the next one live.
func TestContextFreshPerRequest(t *testing.T) {
	var mu sync.Mutex
	var errs []error
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		r.Watch()
		ctx := r.Context()
		_ = ctx.Done()
		mu.Lock()
		errs = append(errs, ctx.Err())
		mu.Unlock()
		hello(w, r)
	}), Config{})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for range 3 {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		if resp, _ := readResponse(t, br, "GET"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 3 || errs[0] != nil || errs[1] != nil || errs[2] != nil {
		t.Errorf("ctx.Err() per request = %v, want [nil nil nil]", errs)
	}
}

// TestContextHotPathAllocs: a handler that waits on its request's context
// (asks for Done and Err on every request) still costs no allocation per
// keep-alive request: the Done channel is kept from request to request.
func TestContextHotPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under -race")
	}
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		ctx := r.Context()
		select {
		case <-ctx.Done():
			panic("cancelled")
		default:
		}
		if ctx.Err() != nil {
			panic("cancelled")
		}
		hello(w, r)
	}), Config{})
	c := dial(t, addr)
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(benchRequest); err != nil {
			t.Fatal(err)
		}
		if err := readHello(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		roundTrip()
	}
	if avg := testing.AllocsPerRun(2000, roundTrip); avg != 0 {
		t.Fatalf("%.2f allocations per request, want 0", avg)
	}
}

// TestReqCtxAfterFunc: the context implements AfterFunc as the context
// package expects: a registered function runs once on cancel, a stopped
// one never, and registering on a cancelled context runs it at once.
func TestReqCtxAfterFunc(t *testing.T) {
	var x reqCtx
	ran := make(chan int, 3)
	stop1 := x.AfterFunc(func() { ran <- 1 })
	stop2 := x.AfterFunc(func() { ran <- 2 })
	if !stop2() {
		t.Fatal("stop of a pending AfterFunc returned false")
	}
	x.cancel()
	select {
	case v := <-ran:
		if v != 1 {
			t.Fatalf("AfterFunc %d ran, want 1", v)
		}
	case <-time.After(ctxWait):
		t.Fatal("AfterFunc did not run within 10s of cancel")
	}
	if stop1() {
		t.Error("stop after the function ran returned true")
	}
	x.AfterFunc(func() { ran <- 3 })
	select {
	case v := <-ran:
		if v != 3 {
			t.Fatalf("AfterFunc %d ran, want 3", v)
		}
	case <-time.After(ctxWait):
		t.Fatal("AfterFunc on a cancelled context did not run within 10s")
	}
	// A new request: live again, its Done a fresh open channel.
	x.reset()
	if x.Err() != nil {
		t.Fatalf("Err after reset = %v", x.Err())
	}
	select {
	case <-x.Done():
		t.Fatal("Done closed after reset")
	default:
	}
	// WithTimeout layers a deadline on it.
	ctx, cancel := context.WithTimeout(&x, time.Millisecond)
	defer cancel()
	select {
	case <-ctx.Done():
	case <-time.After(ctxWait):
		t.Fatal("a WithTimeout child did not time out")
	}
	if ctx.Err() != context.DeadlineExceeded || x.Err() != nil {
		t.Errorf("child %v parent %v, want DeadlineExceeded and nil", ctx.Err(), x.Err())
	}
}

// TestHeadBudgetShared: two Servers given one HeadBudget (one per
// listener, as krait runs them) share it: large heads held on the first
// leave too little for one on the second, which gets 503.
func TestHeadBudgetShared(t *testing.T) {
	const perConn = 32<<10 - readBufSize
	budget := NewHeadBudget(2*perConn + perConn/2)
	cfg := Config{HeadBudget: budget, Log: slog.New(slog.DiscardHandler)}
	srvA, addrA := startServer(t, handlerFunc(hello), cfg)
	srvB, addrB := startServer(t, handlerFunc(hello), cfg)
	partial := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("p", 990)+"\r\n", 20)

	c1, c2 := dial(t, addrA), dial(t, addrA)
	io.WriteString(c1, partial)
	waitUntil(t, "the first head's buffer", func() bool { return budget.InUse() == perConn })
	io.WriteString(c2, partial)
	waitUntil(t, "the second head's buffer", func() bool { return srvA.HeadMemory() == 2*perConn })
	if got := srvB.HeadMemory(); got != 2*perConn {
		t.Errorf("the other server's HeadMemory = %d, want the shared %d", got, 2*perConn)
	}
	c3 := dial(t, addrB)
	io.WriteString(c3, partial)
	resp, _ := readResponse(t, bufio.NewReader(c3), "GET")
	if resp.StatusCode != 503 || !resp.Close {
		t.Fatalf("large head on the second server: status %d close=%v, want 503 and close", resp.StatusCode, resp.Close)
	}
	c1.Close()
	c2.Close()
	waitUntil(t, "the budget to be given back", func() bool { return budget.InUse() == 0 })
	c4 := dial(t, addrB)
	io.WriteString(c4, partial+"\r\n")
	if resp, _ := readResponse(t, bufio.NewReader(c4), "GET"); resp.StatusCode != 200 {
		t.Fatalf("large head with room again: status %d, want 200", resp.StatusCode)
	}
}
