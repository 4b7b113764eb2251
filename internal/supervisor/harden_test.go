package supervisor

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker"
	"github.com/krait-server/krait/internal/worker/workertest"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// loggedPool is fakePool with the pool's log and the workers' output
// captured, and the fake's mode read from modeFile.
func loggedPool(t *testing.T, workers, capacity int, modeFile string) (*Pool, *syncBuf, *syncBuf) {
	t.Helper()
	log, out := &syncBuf{}, &syncBuf{}
	if err := os.WriteFile(modeFile, []byte("ready"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), Config{
		Worker: fakeSettings(capacity, workertest.EnvMode+"=ready", workertest.EnvCapacity+"="+strconv.Itoa(capacity),
			workertest.EnvModeFile+"="+modeFile),
		Workers: workers,
		Log:     slog.New(slog.NewTextHandler(log, nil)),
		Output:  out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, log, out
}

func slotWorker(p *Pool, i int) *worker.Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slots[i].w
}

func setMode(t *testing.T, file, mode string) {
	t.Helper()
	if err := os.WriteFile(file, []byte(mode), 0o644); err != nil {
		t.Fatal(err)
	}
}

// roundTrip opens a stream (queueing up to 10), runs "/" on it and returns
// the worker that served it.
func roundTrip(t *testing.T, p *Pool) *worker.Worker {
	t.Helper()
	s, err := openWithin(t, p, 10)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := s.SendRequest(fakeRequest(s.ID(), "/")); err != nil {
		t.Fatalf("SendRequest: %v", err)
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for {
		_, err := s.RecvUntil(context.Background(), timeout.C)
		if errors.Is(err, worker.ErrWake) {
			t.Fatal("no answer within 30s")
		}
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("Recv: %v", err)
			}
			return s.Worker()
		}
	}
}

func fakeRequest(id uint32, path string) []byte {
	b, off := wire.BeginFrame(nil)
	b = wire.AppendDictStart(b)
	b = wire.AppendStrPair(b, "PATH_INFO", path)
	b = wire.AppendStrPair(b, "QUERY_STRING", "")
	b = wire.AppendDictEnd(b)
	if err := wire.FinishFrame(b, off, wire.Request, wire.FlagEndStream, id); err != nil {
		panic(err)
	}
	return b
}

// A replacement that fails to boot is retried with backoff while the other
// workers serve; when every worker is down and failing, requests (queued
// and new) get ErrUnavailable (503) instead of waiting for ever; once the
// app boots again the pool recovers by itself.
func TestReplacementBootFailureRetried(t *testing.T) {
	modeFile := filepath.Join(t.TempDir(), "mode")
	p, log, out := loggedPool(t, 2, 1, modeFile)

	setMode(t, modeFile, "import-error")
	w2 := slotWorker(p, 1)
	w2.Kill()
	waitFor(t, "a failed replacement of worker 2", func() bool {
		return strings.Contains(log.String(), "a replacement worker failed to start; retrying after a backoff")
	})
	// The app's traceback reaches the output, unescaped.
	waitFor(t, "the traceback in the output", func() bool {
		return strings.Contains(out.String(), "[worker 2] SyntaxError: invalid syntax\n")
	})
	// Worker 1 still serves.
	if got := roundTrip(t, p); got.ID() != 1 {
		t.Fatalf("served by worker %d, want 1", got.ID())
	}

	// Hold worker 1's only slot, queue a request, then lose worker 1 too.
	held, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	queued := make(chan error, 1)
	go func() {
		s, err := p.Open(context.Background(), 10)
		if err == nil {
			s.Close()
		}
		queued <- err
	}()
	waitFor(t, "a waiter", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting == 1 })
	slotWorker(p, 0).Kill()
	if err := recvErr(t, "the queued request to be refused", queued); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("queued request: err = %v, want ErrUnavailable", err)
	}
	held.Close()
	if _, err := openWithin(t, p, 10); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("new request with every worker failing: err = %v, want ErrUnavailable", err)
	}

	// The app is fixed: both slots come back without anyone's help.
	setMode(t, modeFile, "ready")
	waitFor(t, "both workers back", func() bool { return slotWorker(p, 0) != nil && slotWorker(p, 1) != nil })
	if got := strings.Count(log.String(), "after_failures=true"); got != 2 {
		t.Errorf("%d recoveries logged with after_failures=true, want 2; log:\n%s", got, log.String())
	}
	roundTrip(t, p)
}

var restartRE = regexp.MustCompile(`msg="worker died([^"]*)"`)

// A worker that served requests is replaced at once when it dies; one that
// dies right after boot without serving anything is restarted after a
// backoff that doubles.
func TestRestartPolicy(t *testing.T) {
	modeFile := filepath.Join(t.TempDir(), "mode")
	p, log, _ := loggedPool(t, 1, 1, modeFile)

	w := roundTrip(t, p)
	w.Kill()
	waitFor(t, "a replacement", func() bool { nw := slotWorker(p, 0); return nw != nil && nw != w })

	setMode(t, modeFile, "exit-after-hello")
	slotWorker(p, 0).Kill()
	waitFor(t, "three crash-loop restarts", func() bool {
		return strings.Count(log.String(), "died soon after boot") >= 3
	})
	setMode(t, modeFile, "ready")
	waitFor(t, "a worker that stays up", func() bool {
		nw := slotWorker(p, 0)
		return nw != nil && !nw.Dead()
	})
	roundTrip(t, p)

	var kinds []string
	for _, m := range restartRE.FindAllStringSubmatch(log.String(), -1) {
		kinds = append(kinds, m[1])
	}
	// 1: served a request -> at once. 2: the first replacement (ran fine
	// before? no: it served nothing) was killed -> backoff 100ms, then
	// the crash loop: 200ms, 400ms, ...
	if len(kinds) < 4 || kinds[0] != ", restarting it at once" {
		t.Fatalf("restart log lines %q; log:\n%s", kinds, log.String())
	}
	for _, k := range kinds[1:] {
		if k != " soon after boot without serving a request, restarting it after a backoff" {
			t.Fatalf("restart log lines %q; log:\n%s", kinds, log.String())
		}
	}
	backoffs := regexp.MustCompile(`without serving a request, restarting it after a backoff.*? backoff=(\S+)`).FindAllStringSubmatch(log.String(), -1)
	want := []string{"100ms", "200ms", "400ms"}
	for i, w := range want {
		if i >= len(backoffs) || backoffs[i][1] != w {
			t.Fatalf("backoffs %v, want them to start %v", backoffs, want)
		}
	}
}

// A worker whose process is gone takes no new stream, even while its
// socket lives on in a child (so Done has not closed yet): requests go to
// the other worker instead of hanging on the dead one.
func TestDeadWorkerSkippedBeforeDone(t *testing.T) {
	modeFile := filepath.Join(t.TempDir(), "mode")
	p, _, out := loggedPool(t, 2, 2, modeFile)
	a := slotWorker(p, 0)
	b := slotWorker(p, 1)

	s, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Worker() != a {
		t.Fatalf("first stream on worker %d, want 1", s.Worker().ID())
	}
	if err := s.SendRequest(fakeRequest(s.ID(), "/die-holding")); err != nil {
		t.Fatal(err)
	}
	m := waitMatch(t, out, regexp.MustCompile(`holder pid (\d+)`))
	holder, _ := strconv.Atoi(m[1])
	t.Cleanup(func() { _ = syscall.Kill(holder, syscall.SIGKILL) })
	waitFor(t, "worker 1 reaped", a.Dead)
	select {
	case <-a.Done():
		t.Fatal("Done closed although the socket is still open: the test proves nothing")
	default:
	}
	// Worker 1 has a free slot and the fewest streams after the first of
	// these: it must still not be picked.
	var streams []*worker.Stream
	for i := 0; i < 2; i++ {
		s, err := openWithin(t, p, 0)
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		streams = append(streams, s)
		if s.Worker() != b {
			t.Fatalf("stream %d on worker %d (pid %d), which is dead", i, s.Worker().ID(), s.Worker().Pid())
		}
	}
	for _, s := range streams {
		s.Close()
	}
	s.Close()
}

func waitMatch(t *testing.T, b *syncBuf, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	waitFor(t, "output matching "+re.String(), func() bool {
		m = re.FindStringSubmatch(b.String())
		return m != nil
	})
	return m
}
