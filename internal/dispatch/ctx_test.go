package dispatch

import (
	"context"
	"testing"
	"time"
)

// serveAsync serves r on its own goroutine; the result comes on the
// returned channel.
func serveAsync(e *env, r func() *recorder) <-chan *recorder {
	done := make(chan *recorder, 1)
	go func() { done <- r() }()
	return done
}

func waitRec(t *testing.T, what string, ch <-chan *recorder) *recorder {
	t.Helper()
	select {
	case rec := <-ch:
		return rec
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: the request did not finish within 20s", what)
		return nil
	}
}

func waitQueued(t *testing.T, e *env, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for e.pool.Stats().Queued != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests queued after 20s, want %d", e.pool.Stats().Queued, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestQueuedRequestContext: a request waiting in the queue leaves it when
// its context ends: cancelled (client gone, server stopping hard) it is
// aborted without an answer; past a deadline it gets 503. Either way it
// no longer counts in the queue, and the next request is served.
func TestQueuedRequestContext(t *testing.T) {
	e := newEnv(t, 1, 1, 5)
	held, err := e.pool.Open(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r := get("/")
	r.Ctx = ctx
	done := serveAsync(e, func() *recorder { return e.serve(r) })
	waitQueued(t, e, 1)
	cancel()
	rec := waitRec(t, "cancelled in the queue", done)
	if !rec.aborted || rec.headerCall != 0 {
		t.Errorf("cancelled in the queue: aborted %v, %d headers written (status %d); want aborted, none",
			rec.aborted, rec.headerCall, rec.status)
	}
	waitQueued(t, e, 0)

	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	r = get("/")
	r.Ctx = dctx
	rec = waitRec(t, "deadline in the queue", serveAsync(e, func() *recorder { return e.serve(r) }))
	if rec.status != 503 || rec.aborted {
		t.Errorf("deadline in the queue: status %d aborted %v, want 503", rec.status, rec.aborted)
	}
	waitQueued(t, e, 0)

	held.Close()
	if rec := e.serve(get("/")); rec.status != 200 {
		t.Fatalf("after the slot was freed: status %d, want 200", rec.status)
	}
}

// TestRunningRequestContext: a request the worker is running whose
// context ends (the server stops hard; no watch needed) has its stream
// reset and its response aborted, for WSGI as for ASGI; the worker's slot
// comes back.
func TestRunningRequestContext(t *testing.T) {
	e := newEnv(t, 1, 1, 5)
	ctx, cancel := context.WithCancel(context.Background())
	r := get("/wait-reset") // the app answers nothing until the stream is reset
	r.Ctx = ctx
	done := serveAsync(e, func() *recorder { return e.serve(r) })
	deadline := time.Now().Add(20 * time.Second)
	for e.pool.Stats().Workers[0].Busy != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach the worker within 20s")
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	rec := waitRec(t, "cancelled while running", done)
	if !rec.aborted || rec.headerCall != 0 {
		t.Errorf("cancelled while running: aborted %v, %d headers written (status %d); want aborted, none",
			rec.aborted, rec.headerCall, rec.status)
	}
	// The reset reached the worker: it ended the stream and the only
	// slot serves again.
	waitServes(t, e)
}
