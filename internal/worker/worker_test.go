package worker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
	"github.com/krait-server/krait/internal/worker/workertest"
)

func TestMain(m *testing.M) {
	workertest.Main()
	os.Exit(m.Run())
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func fakeConfig(mode string, out io.Writer) worker.Config {
	// The settings krait serve would pass, with the fake worker as the
	// interpreter.
	wc := config.Default().Worker
	wc.Python = os.Args[0]
	wc.App = "app:application"
	wc.Threads = 4
	wc.Env = []string{workertest.EnvMode + "=" + mode}
	wc.BootTimeout = 30 * time.Second
	return worker.Config{Worker: wc, ID: 1, Output: out}
}

func TestBootFailures(t *testing.T) {
	tests := []struct {
		mode    string
		timeout time.Duration
		want    string
		boot    bool
	}{
		{"import-error", 0, "SyntaxError: invalid syntax", true},
		{"exit", 0, "No module named 'nope'", true},
		{"hang", 300 * time.Millisecond, "did not report ready", true},
		{"garbage", 0, "protocol error", false},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			cfg := fakeConfig(tt.mode, nil)
			if tt.timeout > 0 {
				cfg.BootTimeout = tt.timeout
			}
			w, err := worker.Start(context.Background(), cfg)
			if err == nil {
				w.Kill()
				t.Fatal("Start succeeded")
			}
			var be *worker.BootError
			if errors.As(err, &be) != tt.boot {
				t.Fatalf("err = %T %v; want BootError %v", err, err, tt.boot)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBootMissingInterpreter(t *testing.T) {
	cfg := fakeConfig("ready", nil)
	cfg.Python = "/nonexistent/python"
	_, err := worker.Start(context.Background(), cfg)
	var be *worker.BootError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want BootError", err)
	}
}

func TestBootCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go cancel()
	_, err := worker.Start(ctx, fakeConfig("hang", nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func startFake(t *testing.T, out io.Writer) *worker.Worker {
	t.Helper()
	w, err := worker.Start(context.Background(), fakeConfig("ready", out))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Kill()
		<-w.Done()
	})
	return w
}

func request(id uint32, path string, end bool) []byte {
	var flags uint8
	if end {
		flags = wire.FlagEndStream
	}
	b, off := wire.BeginFrame(nil)
	b = wire.AppendDictStart(b)
	b = wire.AppendStrPair(b, "PATH_INFO", path)
	b = wire.AppendStrPair(b, "QUERY_STRING", "")
	b = wire.AppendDictEnd(b)
	if err := wire.FinishFrame(b, off, wire.Request, flags, id); err != nil {
		panic(err)
	}
	return b
}

// collect receives frames until the stream ends and returns the types seen
// and the DATA bytes.
func collect(t *testing.T, s *worker.Stream) ([]wire.Type, []byte, error) {
	t.Helper()
	var types []wire.Type
	var body []byte
	for {
		b, err := s.Recv(context.Background())
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return types, body, err
		}
		for len(b) > 0 {
			h, err := wire.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			p := b[wire.HeaderSize : wire.HeaderSize+int(h.Length)]
			b = b[wire.HeaderSize+int(h.Length):]
			types = append(types, h.Type)
			if h.Type == wire.Data {
				body = append(body, p...)
				s.Credit(len(p))
			}
		}
	}
}

func TestRequestRoundTrip(t *testing.T) {
	out := &syncBuffer{}
	var released sync.WaitGroup
	cfg := fakeConfig("ready", out)
	cfg.OnRelease = func() { released.Done() }
	w, err := worker.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { w.Kill(); <-w.Done() }()
	if w.Capacity() != 4 || w.Interface() != "wsgi" || w.Pid() <= 0 {
		t.Fatalf("capacity %d interface %q pid %d", w.Capacity(), w.Interface(), w.Pid())
	}
	for i := 0; i < 20; i++ {
		released.Add(1)
		s, err := w.Open()
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SendRequest(request(s.ID(), "/", true)); err != nil {
			t.Fatal(err)
		}
		types, _, err := collect(t, s)
		if err != nil {
			t.Fatal(err)
		}
		if types[0] != wire.Response {
			t.Fatalf("frames %v", types)
		}
		s.Close()
	}
	released.Wait()
	if !strings.Contains(out.String(), "[worker 1] fake worker starting\n") ||
		!strings.Contains(out.String(), "[worker 1] fake worker stderr line\n") {
		t.Fatalf("output %q", out.String())
	}
}

func TestLargeResponseFlowControl(t *testing.T) {
	w := startFake(t, nil)
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 5 << 20
	b, off := wire.BeginFrame(nil)
	b = wire.AppendDictStart(b)
	b = wire.AppendStrPair(b, "PATH_INFO", "/big")
	b = wire.AppendStrPair(b, "QUERY_STRING", "5242880")
	b = wire.AppendDictEnd(b)
	wire.FinishFrame(b, off, wire.Request, wire.FlagEndStream, s.ID())
	if err := s.SendRequest(b); err != nil {
		t.Fatal(err)
	}
	_, body, err := collect(t, s)
	if err != nil || len(body) != n {
		t.Fatalf("got %d bytes, err %v", len(body), err)
	}
}

func TestRequestBodyEcho(t *testing.T) {
	w := startFake(t, nil)
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 3 << 20
	if err := s.SendRequest(request(s.ID(), "/echo", false)); err != nil {
		t.Fatal(err)
	}
	go func() {
		chunk := bytes.Repeat([]byte("y"), 100000)
		for sent := 0; sent < n; {
			m, err := s.AcquireSendWindow(context.Background(), min(len(chunk), n-sent))
			if err != nil {
				t.Error(err)
				return
			}
			sent += m
			var fl uint8
			if sent == n {
				fl = wire.FlagEndStream
			}
			s.Send(wire.AppendFrame(nil, wire.Data, fl, s.ID(), chunk[:m]))
		}
	}()
	_, body, err := collect(t, s)
	if err != nil || len(body) != n {
		t.Fatalf("got %d bytes, err %v", len(body), err)
	}
}

func TestWorkerDeath(t *testing.T) {
	w := startFake(t, nil)
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendRequest(request(s.ID(), "/die", true)); err != nil {
		t.Fatal(err)
	}
	_, _, err = collect(t, s)
	if !errors.Is(err, worker.ErrWorkerDied) {
		t.Fatalf("err = %v, want ErrWorkerDied", err)
	}
	s.Close()
	<-w.Done()
	if got := w.ExitStatus(); got != "exit status 1" {
		t.Fatalf("exit status %q", got)
	}
	if _, err := w.Open(); !errors.Is(err, worker.ErrWorkerDied) {
		t.Fatalf("Open after death: %v", err)
	}
}

func TestResetWhileWaiting(t *testing.T) {
	out := &syncBuffer{}
	w := startFake(t, out)
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendRequest(request(s.ID(), "/wait-reset", true)); err != nil {
		t.Fatal(err)
	}
	s.Reset()
	if _, err := s.Recv(context.Background()); err != io.EOF {
		t.Fatalf("Recv after Reset: %v", err)
	}
	s.Close()
	// The worker still works.
	s, err = w.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SendRequest(request(s.ID(), "/", true))
	if _, body, err := collect(t, s); err != nil || string(body) != "hello" {
		t.Fatalf("body %q err %v", body, err)
	}
}

func TestShutdownGraceful(t *testing.T) {
	w, err := worker.Start(context.Background(), fakeConfig("ready", nil))
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.Open()
	if err != nil {
		t.Fatal(err)
	}
	s.SendRequest(request(s.ID(), "/chunks", true))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Shutdown(ctx) }()
	// The in-flight stream still completes.
	_, body, err := collect(t, s)
	if err != nil || string(body) != "one two three" {
		t.Fatalf("body %q err %v", body, err)
	}
	s.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := w.ExitStatus(); got != "exit status 0" {
		t.Fatalf("exit status %q", got)
	}
	if _, err := w.Open(); !errors.Is(err, worker.ErrStopping) {
		t.Fatalf("Open after Shutdown: %v", err)
	}
}

func TestShutdownTimeoutKills(t *testing.T) {
	w, err := worker.Start(context.Background(), fakeConfig("ready", nil))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := w.Open()
	s.SendRequest(request(s.ID(), "/wait-reset", true))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := w.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := s.Recv(context.Background()); !errors.Is(err, worker.ErrWorkerDied) {
		t.Fatalf("Recv: %v", err)
	}
	s.Close()
}
