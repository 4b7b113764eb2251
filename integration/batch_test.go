package integration

// Batched dispatch to WSGI workers (--prefetch, docs/protocol.md "Prefetch
// and recall"): krait may hand a worker more requests than it has threads;
// they wait in the worker's own queue. These tests drive it through the
// real binary with python/tests/apps/batch_app.py, which records every
// start and run in events.log, so that they check exactly which requests
// ran where and how often, never timings.

import (
	"fmt"
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

// startBatch serves batch_app with KRAIT_TEST_DIR set and a metrics
// listener (worker busy counts and the queue depth are how the tests see
// that requests were handed to a worker).
func startBatch(t *testing.T, args ...string) (*metricsKrait, string) {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"batch_app:application", "--chdir", supAppsDir(), "--env", "KRAIT_TEST_DIR=" + dir,
		"--metrics-bind", "127.0.0.1:0"}, args...)
	k := startKrait(t, nil, args...)
	// Runs before krait is stopped: a failed test does not leave requests
	// blocked for the graceful timeout.
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(dir, "release-all"), nil, 0o644) })
	m := k.MustWaitLog(metricsListeningRE)
	return &metricsKrait{Krait: k, dir: dir, metrics: m[1]}, dir
}

// getOwnConn runs GET path on a connection of its own and delivers
// "STATUS BODY" (or "error: ...").
func getOwnConn(k *Krait, path string) <-chan string {
	out := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 3 * ioTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := c.Get(k.URL(path))
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			out <- fmt.Sprintf("%d error: %v", resp.StatusCode, err)
			return
		}
		out <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	return out
}

// notYet fails the test if ch already delivered (a blocked request must
// still be blocked).
func notYet(t *testing.T, what string, ch <-chan string) {
	t.Helper()
	select {
	case s := <-ch:
		t.Fatalf("%s answered while it should still be blocked: %q", what, s)
	default:
	}
}

var runRE = regexp.MustCompile(`(?m)^run (\S+) (\d+)$`)

// runs returns how often the app ran each /quick id (events.log).
func runs(t *testing.T, dir string) map[string]int {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "events.log"))
	n := map[string]int{}
	for _, m := range runRE.FindAllStringSubmatch(string(b), -1) {
		n[m[1]]++
	}
	return n
}

// queuedIs: n requests wait for a thread, in krait's queue or prefetched
// into a worker's (krait_queue_depth counts both; a request takes a
// prefetch slot before it would wait in krait's queue).
func queuedIs(n float64) func(map[string]float64) bool {
	return func(s map[string]float64) bool { return s["krait_queue_depth"] == n }
}

// The head-of-line test: 2 workers, requests that block every
// thread of one worker but one, then 200 quick requests at once. All 200
// must be answered while the blocked ones are still blocked: a quick
// request prefetched behind a blocked one is recalled and runs on the
// free thread. Only then are the blocked ones released (and answered).
func TestBatchNoHeadOfLine(t *testing.T) {
	for _, threads := range []int{1, 2} {
		t.Run(fmt.Sprintf("threads=%d", threads), func(t *testing.T) {
			k, dir := startBatch(t, "-w", "2", "--threads", strconv.Itoa(threads), "--prefetch", "8")
			// Least-loaded placement: b0 on worker 1, b1 on worker 2, b2 on
			// worker 1 again: with 2 threads, worker 1 is then full and
			// worker 2 has one free thread; with 1 thread, b0 fills worker 1.
			nblock := 2*threads - 1
			blocked := make([]<-chan string, nblock)
			for i := range blocked {
				tok := "b" + strconv.Itoa(i)
				blocked[i] = getOwnConn(k.Krait, "/block?token="+tok)
				startedPids(t, dir, tok)
			}
			const n = 200
			quick := make([]<-chan string, n)
			for i := range quick {
				quick[i] = getOwnConn(k.Krait, "/quick?id="+strconv.Itoa(i))
			}
			deadline := time.After(60 * time.Second)
			for i, ch := range quick {
				select {
				case got := <-ch:
					if want := fmt.Sprintf("200 ok %d", i); got != want {
						t.Fatalf("quick request %d: got %q, want %q", i, got, want)
					}
				case <-deadline:
					t.Fatalf("quick request %d not answered within 60s while %d requests block (head-of-line blocking); log:\n%s",
						i, nblock, k.Log())
				}
			}
			for i, ch := range blocked {
				notYet(t, "blocked request b"+strconv.Itoa(i), ch)
			}
			for id, c := range runs(t, dir) {
				if c != 1 {
					t.Errorf("the app ran /quick?id=%s %d times, want 1", id, c)
				}
			}
			if got := len(runs(t, dir)); got != n {
				t.Errorf("the app ran %d distinct quick requests, want %d", got, n)
			}
			for i, ch := range blocked {
				tok := "b" + strconv.Itoa(i)
				touch(t, filepath.Join(dir, "release-"+tok))
				if got := recvString(t, tok, ch); got != "200 released "+tok {
					t.Fatalf("%s: got %q", tok, got)
				}
			}
		})
	}
}

// A worker killed while it holds a running request and prefetched ones:
// the running one fails 502 (it may have started: never run twice); the
// prefetched ones, which it cannot have started, run on the replacement,
// exactly once each; those still in krait's queue run too.
func TestBatchWorkerDeathReRunsUnstarted(t *testing.T) {
	k, dir := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "4")
	a := getOwnConn(k.Krait, "/block?token=a")
	pid := startedPids(t, dir, "a")["a"]
	quick := make([]<-chan string, 6)
	for i := range quick {
		quick[i] = getOwnConn(k.Krait, "/quick?id="+strconv.Itoa(i))
	}
	// 1 running + 4 prefetched on the worker, 2 in krait's queue.
	k.waitScrape("4 prefetched and 2 queued", queuedIs(6))
	if len(runs(t, dir)) != 0 {
		t.Fatalf("quick requests ran while the only thread was blocked: %v", runs(t, dir))
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if got := recvString(t, "the running request", a); !strings.HasPrefix(got, "502 ") {
		t.Fatalf("the request running when its worker died: got %q, want 502", got)
	}
	for i, ch := range quick {
		if got, want := recvString(t, "quick", ch), fmt.Sprintf("200 ok %d", i); got != want {
			t.Fatalf("quick request %d: got %q, want %q; log:\n%s", i, got, want, k.Log())
		}
	}
	r := runs(t, dir)
	for i := range quick {
		if c := r[strconv.Itoa(i)]; c != 1 {
			t.Errorf("the app ran /quick?id=%d %d times, want exactly 1", i, c)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "events.log"))
	if strings.Count(string(b), "started a ") != 1 || strings.Contains(string(b), "finished a ") {
		t.Errorf("the killed request must have started once and never finished; events.log:\n%s", b)
	}
}

// The queue bound (--max-queue) counts prefetched requests as waiting:
// with one thread, --prefetch 1 and --max-queue 2, the first request
// runs, the second is prefetched, the third waits in krait's queue and the
// fourth gets 503 at once; all others are answered. With --max-queue 0
// nothing is prefetched: 503 whenever the thread is busy, as before.
func TestBatchQueueFull(t *testing.T) {
	k, dir := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "1", "--max-queue", "2")
	a := getOwnConn(k.Krait, "/block?token=a")
	startedPids(t, dir, "a")
	q := []<-chan string{getOwnConn(k.Krait, "/quick?id=0")}
	k.waitScrape("1 prefetched", queuedIs(1))
	q = append(q, getOwnConn(k.Krait, "/quick?id=1"))
	k.waitScrape("1 prefetched, 1 queued", queuedIs(2))
	resp, _ := k.Get("/quick?id=2")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("with 1 running, 1 prefetched and 1 queued: got %d (Retry-After %q), want 503",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for i, ch := range q {
		notYet(t, "quick "+strconv.Itoa(i), ch)
	}
	touch(t, filepath.Join(dir, "release-a"))
	if got := recvString(t, "a", a); got != "200 released a" {
		t.Fatalf("a: got %q", got)
	}
	for i, ch := range q {
		if got, want := recvString(t, "quick", ch), fmt.Sprintf("200 ok %d", i); got != want {
			t.Fatalf("quick %d: got %q, want %q", i, got, want)
		}
	}
	if r := runs(t, dir); r["2"] != 0 || len(r) != 2 {
		t.Errorf("runs = %v, want ids 0 and 1 once each", r)
	}

	k0, dir0 := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "8", "--max-queue", "0")
	b := getOwnConn(k0.Krait, "/block?token=b")
	startedPids(t, dir0, "b")
	if resp, _ := k0.Get("/quick?id=x"); resp.StatusCode != 503 {
		t.Fatalf("--max-queue 0 with the only thread busy: got %d, want 503", resp.StatusCode)
	}
	touch(t, filepath.Join(dir0, "release-b"))
	if got := recvString(t, "b", b); got != "200 released b" {
		t.Fatalf("b: got %q", got)
	}
}

// A client that leaves while its request waits in a worker's queue: the
// request is reset there, the app never runs it, and its slot is free
// again while the worker's thread is still blocked.
func TestBatchDisconnectWhilePrefetched(t *testing.T) {
	k, dir := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "4")
	a := getOwnConn(k.Krait, "/block?token=a")
	startedPids(t, dir, "a")
	c := dial(t, k.Addr())
	if _, err := c.Write([]byte("GET /quick?id=gone HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	k.waitScrape("the request prefetched", queuedIs(1))
	c.Close()
	k.waitScrape("its slot freed", queuedIs(0))
	notYet(t, "a", a)
	touch(t, filepath.Join(dir, "release-a"))
	if got := recvString(t, "a", a); got != "200 released a" {
		t.Fatalf("a: got %q", got)
	}
	if got := recvString(t, "after", getOwnConn(k.Krait, "/quick?id=after")); got != "200 ok after" {
		t.Fatalf("a request after: got %q", got)
	}
	if r := runs(t, dir); r["gone"] != 0 || r["after"] != 1 {
		t.Errorf("runs = %v: the app must never run the request whose client left", r)
	}
}

// A graceful stop with prefetched requests: every one is answered 200 and
// krait exits 0.
func TestBatchGracefulStop(t *testing.T) {
	k, dir := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "4")
	a := getOwnConn(k.Krait, "/block?token=a")
	startedPids(t, dir, "a")
	q := make([]<-chan string, 4)
	for i := range q {
		q[i] = getOwnConn(k.Krait, "/quick?id="+strconv.Itoa(i))
	}
	k.waitScrape("4 prefetched", queuedIs(4))
	off := k.LogLen()
	k.Signal(syscall.SIGTERM)
	if _, ok := k.WaitLogFrom(off, regexp.MustCompile(`msg="stopping gracefully"`), ioTimeout); !ok {
		t.Fatalf("no sign of a graceful stop; log:\n%s", k.Log())
	}
	touch(t, filepath.Join(dir, "release-a"))
	if got := recvString(t, "a", a); got != "200 released a" {
		t.Fatalf("a: got %q", got)
	}
	for i, ch := range q {
		if got, want := recvString(t, "quick", ch), fmt.Sprintf("200 ok %d", i); got != want {
			t.Fatalf("quick %d: got %q, want %q", i, got, want)
		}
	}
	if code, ok := k.WaitExit(stopTimeout); !ok || code != 0 {
		t.Fatalf("krait exit: code %d, exited %v; log:\n%s", code, ok, k.Log())
	}
}

// --timeout does not charge a request for its wait in a worker's queue:
// q waits behind a1 and then a2 (each within the timeout) for longer
// than --timeout. When its timeout passes it is recalled and run again
// (its clock restarts); a2, recalled at its own timeout while running,
// answers KEPT and keeps the time it has actually run. Nobody gets 504
// and no worker is killed.
func TestBatchTimeoutNotChargedForQueueWait(t *testing.T) {
	const timeout = 6 * time.Second
	k, dir := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "4", "--timeout", "6")
	k.Forbid("killing the worker")
	a1 := getOwnConn(k.Krait, "/block?token=a1")
	startedPids(t, dir, "a1")
	a2 := getOwnConn(k.Krait, "/block?token=a2")
	k.waitScrape("a2 prefetched", queuedIs(1))
	q := getOwnConn(k.Krait, "/quick?id=q")
	k.waitScrape("q prefetched", queuedIs(2))
	// a1 runs half the timeout (the margins on both sides are timeout/2).
	time.Sleep(timeout / 2)
	touch(t, filepath.Join(dir, "release-a1"))
	if got := recvString(t, "a1", a1); got != "200 released a1" {
		t.Fatalf("a1: got %q", got)
	}
	startedPids(t, dir, "a2")
	// q's timeout passes while a2 runs: it must come back and wait again.
	k.MustWaitLog(regexp.MustCompile(`waited --timeout in its worker's queue; running it again`))
	touch(t, filepath.Join(dir, "release-a2"))
	if got := recvString(t, "a2", a2); got != "200 released a2" {
		t.Fatalf("a2: got %q; log:\n%s", got, k.Log())
	}
	if got := recvString(t, "q", q); got != "200 ok q" {
		t.Fatalf("q: got %q; log:\n%s", got, k.Log())
	}
	if r := runs(t, dir); r["q"] != 1 {
		t.Errorf("the app ran q %d times, want 1", r["q"])
	}
}

// A request over --timeout kills its WSGI worker (504); the requests
// prefetched behind it, which the worker never started, are not failed
// with it: they run on the replacement, once each.
func TestBatchTimeoutKillReRunsQueued(t *testing.T) {
	k, dir := startBatch(t, "-w", "1", "--threads", "1", "--prefetch", "4", "--timeout", "3")
	a := getOwnConn(k.Krait, "/block?token=a")
	startedPids(t, dir, "a")
	q := make([]<-chan string, 3)
	for i := range q {
		q[i] = getOwnConn(k.Krait, "/quick?id="+strconv.Itoa(i))
	}
	k.waitScrape("3 prefetched", queuedIs(3))
	if got := recvString(t, "a", a); !strings.HasPrefix(got, "504 ") {
		t.Fatalf("the request over --timeout: got %q, want 504", got)
	}
	for i, ch := range q {
		if got, want := recvString(t, "quick", ch), fmt.Sprintf("200 ok %d", i); got != want {
			t.Fatalf("quick %d: got %q, want %q; log:\n%s", i, got, want, k.Log())
		}
	}
	if r := runs(t, dir); len(r) != 3 || r["0"] != 1 || r["1"] != 1 || r["2"] != 1 {
		t.Errorf("runs = %v, want ids 0..2 once each", r)
	}
	if n := strings.Count(k.Log(), `msg="killing the worker"`); n != 1 {
		t.Errorf("%d worker kills logged, want 1 (the request over --timeout)", n)
	}
}
