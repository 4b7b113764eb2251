package integration

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// drainEvents returns the lines the drain test apps appended to
// dir/events.log.
func drainEvents(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "events.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// openSSE opens /sse and reads its first event; the returned channel
// gets the error that ends the rest of the body (nil for a clean EOF).
func openSSE(t *testing.T, k *Krait) <-chan error {
	t.Helper()
	// No client timeout: the stream is meant to stay open; the test bounds
	// every wait itself.
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Get(k.URL("/sse"))
	if err != nil {
		t.Fatalf("GET /sse: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("GET /sse: status %d", resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: hello\n" {
		t.Fatalf("first SSE line = %q, %v; want %q", line, err, "data: hello\n")
	}
	ended := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		ended <- err
	}()
	return ended
}

// When --graceful-timeout runs out with an ASGI stream still open, krait
// has the worker cancel the stream's task, run lifespan shutdown and exit
// (as uvicorn does) instead of killing it: the client's stream ends, the
// app saw CancelledError, lifespan shutdown ran, krait exits 0.
func TestDrainASGICancelsOpenStreamsAtGracefulTimeout(t *testing.T) {
	dir := t.TempDir()
	k := startKrait(t, nil, "drain_asgi:app", "--chdir", filepath.Join(repoRoot, "python/tests/apps"),
		"--env", "KRAIT_TEST_DIR="+dir, "--lifespan", "on", "--graceful-timeout", "1")
	ended := openSSE(t, k)
	k.Signal(syscall.SIGTERM)
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatalf("the SSE stream was still open 30 s after SIGTERM; log:\n%s", k.Log())
	}
	code, ok := k.WaitExit(30 * time.Second)
	if !ok {
		t.Fatalf("krait still running 30 s after SIGTERM; log:\n%s", k.Log())
	}
	if code != 0 {
		t.Fatalf("krait exited %d, want 0; log:\n%s", code, k.Log())
	}
	got := strings.Join(drainEvents(t, dir), "|")
	if want := "sse cancelled|lifespan shutdown"; got != want {
		t.Fatalf("app events = %q, want %q (the task cancelled, then lifespan shutdown); log:\n%s", got, want, k.Log())
	}
	log := k.Log()
	for _, want := range []string{"graceful timeout over: cancelling the worker's ASGI tasks",
		"cancelling the application task", "krait's graceful timeout ran out"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q; log:\n%s", want, log)
		}
	}
	if strings.Contains(log, "workers killed before finishing") {
		t.Errorf("a worker was killed; log:\n%s", log)
	}
}

// Lifespan shutdown that never completes is bounded once the graceful
// timeout ran out: the worker exits on its own (no SIGKILL) and krait
// exits 0.
func TestDrainASGILifespanShutdownBounded(t *testing.T) {
	dir := t.TempDir()
	k := startKrait(t, nil, "drain_asgi:app", "--chdir", filepath.Join(repoRoot, "python/tests/apps"),
		"--env", "KRAIT_TEST_DIR="+dir, "--env", "KRAIT_TEST_HANG_SHUTDOWN=1",
		"--lifespan", "on", "--graceful-timeout", "1")
	ended := openSSE(t, k)
	k.Signal(syscall.SIGTERM)
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatalf("the SSE stream was still open 30 s after SIGTERM; log:\n%s", k.Log())
	}
	code, ok := k.WaitExit(30 * time.Second)
	if !ok {
		t.Fatalf("krait still running 30 s after SIGTERM; log:\n%s", k.Log())
	}
	if code != 0 {
		t.Fatalf("krait exited %d, want 0; log:\n%s", code, k.Log())
	}
	got := strings.Join(drainEvents(t, dir), "|")
	if want := "sse cancelled|lifespan hang"; got != want {
		t.Fatalf("app events = %q, want %q; log:\n%s", got, want, k.Log())
	}
	log := k.Log()
	if !strings.Contains(log, "ASGI lifespan shutdown did not finish within 5 s after krait's graceful timeout") {
		t.Errorf("log lacks the lifespan bound message; log:\n%s", log)
	}
	if strings.Contains(log, "workers killed before finishing") {
		t.Errorf("the worker was killed instead of exiting after the bound; log:\n%s", log)
	}
}

var crashLogRE = regexp.MustCompile(`msg="worker died soon after boot[^"]*".* failures=(\d+) output=("(?:[^"\\]|\\.)*")`)

// A worker that dies soon after boot is logged with its last output lines
// and the slot's count of such deaths in a row; krait goes on serving once
// a replacement stays up.
func TestDrainCrashLoopLogsOutputTail(t *testing.T) {
	dir := t.TempDir()
	k := startKrait(t, nil, "drain_crash:application", "--chdir", filepath.Join(repoRoot, "python/tests/apps"),
		"--env", "KRAIT_TEST_DIR="+dir, "--env", "KRAIT_TEST_CRASHES=3", "-w", "1")
	// Three early deaths, then boot 4 serves.
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(k.Log(), `msg="worker died`) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than 3 worker deaths logged after 60 s; log:\n%s", k.Log())
		}
		k.WaitLogFrom(k.LogLen(), regexp.MustCompile(`.`), time.Second)
	}
	ms := crashLogRE.FindAllStringSubmatch(k.Log(), -1)
	if len(ms) != 3 {
		t.Fatalf("%d crash-loop log lines with failures= and output=, want 3; log:\n%s", len(ms), k.Log())
	}
	for i, m := range ms {
		n := i + 1
		if m[1] != strconv.Itoa(n) {
			t.Errorf("crash %d: failures=%s, want %d", n, m[1], n)
		}
		out, err := strconv.Unquote(m[2])
		if err != nil {
			t.Fatalf("crash %d: output %s: %v", n, m[2], err)
		}
		want := "drain_crash: boot " + strconv.Itoa(n) + " is about to die\nRuntimeError: simulated crash " + strconv.Itoa(n)
		if out != want {
			t.Errorf("crash %d: output = %q, want %q", n, out, want)
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(k.URL("/"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				if string(body) != "ok boot 4" {
					t.Fatalf("body %q, want %q", body, "ok boot 4")
				}
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 200 from the 4th worker within 30 s (last err %v); log:\n%s", err, k.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SIGQUIT stops now: an ASGI worker with a stream open is killed at once,
// without the extra grace the end of --graceful-timeout gets (its task is
// never cancelled, lifespan shutdown never runs).
func TestDrainASGIQuitKillsAtOnce(t *testing.T) {
	dir := t.TempDir()
	k := startKrait(t, nil, "drain_asgi:app", "--chdir", filepath.Join(repoRoot, "python/tests/apps"),
		"--env", "KRAIT_TEST_DIR="+dir, "--lifespan", "on", "--graceful-timeout", "60")
	ended := openSSE(t, k)
	k.Signal(syscall.SIGQUIT)
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatalf("the SSE stream was still open 30 s after SIGQUIT; log:\n%s", k.Log())
	}
	code, ok := k.WaitExit(30 * time.Second)
	if !ok {
		t.Fatalf("krait still running 30 s after SIGQUIT; log:\n%s", k.Log())
	}
	if code != 0 {
		t.Fatalf("krait exited %d, want 0; log:\n%s", code, k.Log())
	}
	if got := drainEvents(t, dir); len(got) != 0 {
		t.Fatalf("app events = %q, want none (the worker killed at once); log:\n%s", got, k.Log())
	}
	if log := k.Log(); strings.Contains(log, "graceful timeout over") {
		t.Fatalf("SIGQUIT took the graceful-timeout path; log:\n%s", log)
	}
}
