package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/worker"
)

// openEcho starts a /echo request whose body never ends: the stream stays
// in flight on the fake worker until the worker dies.
func openEcho(t *testing.T, w *worker.Worker) *worker.Stream {
	t.Helper()
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendRequest(request(s.ID(), "/echo", false)); err != nil {
		t.Fatal(err)
	}
	return s
}

// recvUntilErr reads the stream until it fails (bounded).
func recvUntilErr(t *testing.T, s *worker.Stream) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, err := s.Recv(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the stream did not fail within 20s: %v", err)
			}
			return err
		}
	}
}

func startCfg(t *testing.T, cfg worker.Config) *worker.Worker {
	t.Helper()
	w, err := worker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Kill()
		<-w.Done()
	})
	return w
}

// A worker that never answers PING is killed after HeartbeatTimeout; the
// stream in flight fails with ErrWorkerDied naming the heartbeat.
func TestHeartbeatKillsSilentWorker(t *testing.T) {
	cfg := fakeConfig("no-pong", nil)
	cfg.HeartbeatTimeout = 200 * time.Millisecond
	w := startCfg(t, cfg)
	s := openEcho(t, w)
	defer s.Close()
	err := recvUntilErr(t, s)
	if !errors.Is(err, worker.ErrWorkerDied) || !strings.Contains(err.Error(), "killed: no answer to the heartbeat for 200ms") {
		t.Fatalf("stream error %v, want ErrWorkerDied naming the heartbeat", err)
	}
	select {
	case <-w.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the worker was not reaped")
	}
	if got := w.ExitStatus(); got != "signal: killed" {
		t.Fatalf("exit status %q, want signal: killed", got)
	}
}

// A worker that answers is left alone through many heartbeat timeouts,
// busy or idle.
func TestHeartbeatSparesAnsweringWorker(t *testing.T) {
	cfg := fakeConfig("ready", nil)
	cfg.HeartbeatTimeout = 50 * time.Millisecond
	w := startCfg(t, cfg)
	s := openEcho(t, w)
	// Proving that nothing happens takes time: ten heartbeat timeouts.
	time.Sleep(500 * time.Millisecond)
	if w.Dead() {
		t.Fatalf("a worker answering PING was killed: %s", w.ExitStatus())
	}
	s.Close()
	s2, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.SendRequest(request(s2.ID(), "/", true)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for !s2.Ended() {
		if _, err := s2.Recv(ctx); err != nil {
			t.Fatalf("a request after the heartbeats: %v", err)
		}
	}
}

// KillFor's cause reaches every stream in flight, so the requests that
// lose their worker are logged with the reason.
func TestKillForNamesCause(t *testing.T) {
	w := startCfg(t, fakeConfig("ready", nil))
	a, b := openEcho(t, w), openEcho(t, w)
	defer a.Close()
	defer b.Close()
	w.KillFor(errors.New("request GET /slow on stream 1 exceeded --timeout 1s"))
	for _, s := range []*worker.Stream{a, b} {
		err := recvUntilErr(t, s)
		if !errors.Is(err, worker.ErrWorkerDied) || !strings.Contains(err.Error(), "killed: request GET /slow on stream 1 exceeded --timeout 1s") {
			t.Fatalf("stream %d: %v, want ErrWorkerDied naming the cause", s.ID(), err)
		}
	}
}
