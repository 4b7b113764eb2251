package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
)

// recvNoCredit receives frames until the stream ends without returning
// any flow-control credit, and returns the DATA bytes and the error.
func recvNoCredit(t *testing.T, s *worker.Stream) (int, error) {
	t.Helper()
	n := 0
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		b, err := s.RecvUntil(context.Background(), timeout.C)
		if errors.Is(err, worker.ErrWake) {
			t.Fatalf("the stream did not end within 30s (%d body bytes so far)", n)
		}
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return n, err
		}
		for len(b) > 0 {
			h, err := wire.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if h.Type == wire.Data {
				n += int(h.Length)
			}
			b = b[wire.HeaderSize+int(h.Length):]
		}
	}
}

// A worker may send exactly its window without credit; one byte more is a
// protocol error: krait kills it and the stream fails. This only holds if
// krait charges its receive window for every DATA byte.
func TestReceiveWindowOverrun(t *testing.T) {
	var log syncBuffer
	cfg := fakeConfig("ready", nil)
	cfg.Log = slog.New(slog.NewTextHandler(&log, nil))
	w, err := worker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Kill(); <-w.Done() })

	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendRequest(request(s.ID(), "/fill-window", true)); err != nil {
		t.Fatal(err)
	}
	n, err := recvNoCredit(t, s)
	s.Close()
	if err != nil || n != wire.InitialWindow {
		t.Fatalf("a full window without credit: %d bytes, err %v; want %d bytes and no error", n, err, wire.InitialWindow)
	}

	s, err = w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The worker may overrun and be killed before SendRequest returns;
	// then the send reports the death (the request was delivered).
	err = s.SendRequest(request(s.ID(), "/overrun", true))
	if err == nil {
		n, err = recvNoCredit(t, s)
	}
	if !errors.Is(err, worker.ErrWorkerDied) {
		t.Fatalf("a window plus one byte: %d bytes, err %v; want ErrWorkerDied", n, err)
	}
	select {
	case <-w.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the worker that overran its window was not killed")
	}
	if !bytes.Contains([]byte(log.String()), []byte("beyond the flow-control window")) {
		t.Errorf("log does not name the overrun:\n%s", log.String())
	}
	if !w.Dead() {
		t.Errorf("Dead() = false after the worker was killed")
	}
}

// krait sends at most a window of request body before the worker credits
// it: the fake (like the real adapter) counts, and exits with a protocol
// error on overrun; /hold-body reports how much it got before crediting.
func TestSendWindowCharged(t *testing.T) {
	w := startFake(t, nil)
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 1 << 20
	if err := s.SendRequest(request(s.ID(), "/hold-body", false)); err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("z"), 64<<10)
		for sent := 0; sent < n; {
			m, err := s.AcquireSendWindow(context.Background(), min(len(chunk), n-sent))
			if err != nil {
				sendErr <- err
				return
			}
			sent += m
			var fl uint8
			if sent == n {
				fl = wire.FlagEndStream
			}
			if err := s.Send(wire.AppendFrame(nil, wire.Data, fl, s.ID(), chunk[:m])); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	_, body, err := collect(t, s)
	if err != nil {
		t.Fatalf("err %v (a send window krait does not charge makes the fake exit with a protocol error)", err)
	}
	want := fmt.Sprintf("held %d total %d", wire.InitialWindow, n)
	if string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	select {
	case err := <-sendErr:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the body sender did not finish")
	}
}
