package worker_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
)

// boundedErr runs f on its own goroutine and returns its error, failing
// the test with a message when it does not return within 10s: a wait that
// ignores its context must show in seconds, not hang the test binary.
func boundedErr(t *testing.T, what string, f func() error) error {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not return within 10s of its context ending", what)
		return nil
	}
}

// openWaiting opens a stream on w whose app answers nothing until the
// stream is reset (/wait-reset), with its body still open so the worker
// never grants send-window credit.
func openWaiting(t *testing.T, w *worker.Worker) *worker.Stream {
	t.Helper()
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendRequest(request(s.ID(), "/wait-reset", false)); err != nil {
		t.Fatal(err)
	}
	return s
}

// endAfterReset resets s and checks the stream then ends (io.EOF): a wait
// its context ended leaves the stream usable.
func endAfterReset(t *testing.T, s *worker.Stream) {
	t.Helper()
	s.Reset()
	err := boundedErr(t, "Recv after Reset", func() error {
		for {
			if _, err := s.Recv(context.Background()); err != nil {
				return err
			}
		}
	})
	if err != io.EOF {
		t.Fatalf("Recv after Reset: %v, want io.EOF", err)
	}
	s.Close()
}

var errDeadlineHit = errors.New("the request's deadline")

// ctxCases are the ways a context ends a wait, with what the error must
// wrap. Each makes a fresh context; "during" ones end while the call
// already waits.
func ctxCases() []struct {
	name string
	make func() (context.Context, context.CancelFunc)
	want []error
} {
	return []struct {
		name string
		make func() (context.Context, context.CancelFunc)
		want []error
	}{
		{"cancelled before", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, []error{context.Canceled}},
		{"cancelled during", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(20*time.Millisecond, cancel)
			return ctx, cancel
		}, []error{context.Canceled}},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, []error{context.DeadlineExceeded}},
		{"cause", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(context.Background())
			time.AfterFunc(20*time.Millisecond, func() { cancel(errDeadlineHit) })
			return ctx, func() { cancel(nil) }
		}, []error{context.Canceled, errDeadlineHit}},
	}
}

func checkWraps(t *testing.T, what string, err error, want []error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: nil error, want one wrapping %v", what, want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("%s: %v does not wrap %v", what, err, w)
		}
	}
	if errors.Is(err, worker.ErrWorkerDied) || err == io.EOF {
		t.Errorf("%s: %v: a cancelled wait is not a dead worker nor the stream's end", what, err)
	}
}

// TestRecvContext: Recv and RecvUntil end their wait with an
// error wrapping ctx.Err() (and its cause) when the context ends.
func TestRecvContext(t *testing.T) {
	w := startFake(t, nil)
	for _, tc := range ctxCases() {
		s := openWaiting(t, w)
		ctx, cancel := tc.make()
		err := boundedErr(t, "Recv", func() error { _, err := s.Recv(ctx); return err })
		checkWraps(t, "Recv "+tc.name, err, tc.want)
		cancel()

		ctx, cancel = tc.make()
		err = boundedErr(t, "RecvUntil", func() error { _, err := s.RecvUntil(ctx, nil); return err })
		checkWraps(t, "RecvUntil "+tc.name, err, tc.want)
		cancel()
		endAfterReset(t, s)
	}
}

// TestRecvContextFramesFirst: frames that arrived are returned even when
// the context has ended, and the end of the stream is still io.EOF: the
// context ends only a wait.
func TestRecvContextFramesFirst(t *testing.T) {
	w := startFake(t, nil)
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SendRequest(request(s.ID(), "/", true)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !s.Ended() { // the whole answer is in the inbox
		if time.Now().After(deadline) {
			t.Fatal("the fake worker did not answer within 10s")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, err := s.Recv(ctx)
	if err != nil || len(b) == 0 {
		t.Fatalf("Recv with frames pending and ctx cancelled: %d bytes, %v; want the frames", len(b), err)
	}
	if h, _ := wire.ParseHeader(b); h.Type != wire.Response {
		t.Errorf("first frame %s, want RESPONSE", h.Type)
	}
	if _, err := s.Recv(ctx); err != io.EOF {
		t.Errorf("Recv after the last frame: %v, want io.EOF", err)
	}
}

// TestAcquireSendWindowContext: a body sender waiting for window credit
// the worker never grants leaves with an error wrapping ctx.Err().
func TestAcquireSendWindowContext(t *testing.T) {
	w := startFake(t, nil)
	for _, tc := range ctxCases() {
		s := openWaiting(t, w)
		// Take the whole initial window: the next call has to wait.
		if n, err := s.AcquireSendWindow(context.Background(), wire.InitialWindow); err != nil || n != wire.InitialWindow {
			t.Fatalf("first AcquireSendWindow: %d, %v; want %d, nil", n, err, wire.InitialWindow)
		}
		ctx, cancel := tc.make()
		var n int
		err := boundedErr(t, "AcquireSendWindow", func() error {
			var err error
			n, err = s.AcquireSendWindow(ctx, 1)
			return err
		})
		cancel()
		if n != 0 {
			t.Errorf("%s: took %d bytes of a closed window", tc.name, n)
		}
		checkWraps(t, "AcquireSendWindow "+tc.name, err, tc.want)
		if errors.Is(err, worker.ErrStreamDone) {
			t.Errorf("%s: %v: the stream is not done", tc.name, err)
		}
		endAfterReset(t, s)
	}
}

// TestStartRefusesIncompleteConfig: the worker package declares no
// defaults; a Config missing a required setting is refused, naming it,
// instead of silently running with a value krait serve would not use.
func TestStartRefusesIncompleteConfig(t *testing.T) {
	cfg := fakeConfig("ready", nil)
	cfg.BootTimeout = 0
	cfg.Threads = 0
	w, err := worker.Start(context.Background(), cfg)
	if err == nil {
		w.Kill()
		<-w.Done()
		t.Fatal("Start accepted a Config without BootTimeout and Threads")
	}
	if !strings.Contains(err.Error(), "BootTimeout") || !strings.Contains(err.Error(), "Threads") {
		t.Errorf("err = %v, want it to name BootTimeout and Threads", err)
	}
}
