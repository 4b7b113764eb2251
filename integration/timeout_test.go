package integration

// Request timeouts (--timeout) and worker liveness (--heartbeat-timeout),
// through the real binary. The apps are python/tests/apps/timeout_wsgi.py
// and timeout_asgi.py; the tests coordinate with them through files in
// KRAIT_TEST_DIR (events.log, release-TOKEN), never through sleeps, except
// where a test proves that nothing happens for a while.

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// result is one response read off the test goroutine.
type result struct {
	status int
	body   string
	err    error
}

// goGet runs a GET in a goroutine (t.Fatal is not allowed there).
func goGet(k *Krait, path string) <-chan result {
	ch := make(chan result, 1)
	url := k.URL(path)
	go func() {
		resp, err := k.Client().Get(url)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	return ch
}

// await waits (bounded) for a goGet result.
func await(t *testing.T, k *Krait, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s: %v\nkrait log:\n%s", what, r.err, k.Log())
		}
		return r
	case <-time.After(2 * ioTimeout):
		t.Fatalf("%s: no response after %v\nkrait log:\n%s", what, 2*ioTimeout, k.Log())
	}
	return result{}
}

var okPidRE = regexp.MustCompile(`^ok pid=(\d+)$`)

// fastPid does GET /fast and returns the worker pid that answered.
func fastPid(t *testing.T, k *Krait) int {
	t.Helper()
	resp, body := k.Get("/fast")
	m := okPidRE.FindStringSubmatch(body)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("GET /fast: %d %q", resp.StatusCode, body)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// newPid polls GET /fast until a worker other than old answers 200 (the
// replacement is starting meanwhile) and returns its pid.
func newPid(t *testing.T, k *Krait, old int) int {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := k.Client().Get(k.URL("/fast"))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := okPidRE.FindStringSubmatch(string(b)); resp.StatusCode == 200 && m != nil {
				pid, _ := strconv.Atoi(m[1])
				if pid == old {
					t.Fatalf("the old worker %d still answers", old)
				}
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new worker answered within %v; log:\n%s", readyTimeout, k.Log())
		}
		time.Sleep(20 * time.Millisecond) // polling a restart, not timing
	}
}

// processGone reports whether pid no longer exists (krait reaped it).
func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func release(t *testing.T, dir, token string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "release-"+token), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A WSGI request over --timeout is answered 504 and its worker, which
// cannot stop the thread, is killed and replaced; the other request in
// flight on that worker gets 502, and the log names both requests.
func TestTimeoutWSGIKillsWorker(t *testing.T) {
	k, dir := startSup(t, false, "timeout_wsgi:application", "--threads", "2", "--timeout", "3")
	pid0 := fastPid(t, k)

	a := goGet(k, "/hang?token=a")
	startedPids(t, dir, "a")
	// b is sent half a timeout after a started, so a's deadline passes
	// 1.5 s before b's: a's timeout kills the worker while b still runs
	// on it, however slowly the kill reaches b on a busy machine. (Sent
	// at once, b's own deadline could pass before the kill is seen.)
	time.Sleep(1500 * time.Millisecond)
	b := goGet(k, "/hang?token=b")
	pids := startedPids(t, dir, "a", "b")
	if pids["a"] != pid0 || pids["b"] != pid0 {
		t.Fatalf("requests ran on %v, want both on worker %d", pids, pid0)
	}

	ra := await(t, k, a, "GET /hang?token=a")
	if ra.status != 504 || !strings.Contains(ra.body, "504 Gateway Timeout") {
		t.Fatalf("the request over --timeout: %d %q, want 504", ra.status, ra.body)
	}
	rb := await(t, k, b, "GET /hang?token=b")
	if rb.status != 502 {
		t.Fatalf("the other request on the killed worker: %d %q, want 502\nlog:\n%s", rb.status, rb.body, k.Log())
	}
	k.MustWaitLog(regexp.MustCompile(`request exceeded --timeout; killing its WSGI worker" .*method=GET path=/hang .*pid=` + strconv.Itoa(pid0)))
	// The 502's log line names the request and the one that caused the kill.
	k.MustWaitLog(regexp.MustCompile(`the worker died during a request.*method=GET path=/hang stream=\d+ err=.*killed: request GET /hang on stream \d+ exceeded --timeout 3s`))

	pid1 := newPid(t, k, pid0)
	if !processGone(pid0) {
		t.Fatalf("worker %d still exists after its timeout kill", pid0)
	}
	// The new worker serves a request within the limit as usual.
	if p := fastPid(t, k); p != pid1 {
		t.Fatalf("GET /fast ran on %d, want the replacement %d", p, pid1)
	}
}

// An ASGI request over --timeout is answered 504 and its task cancelled;
// the worker lives on, and the cancelled task freed its slot (with
// --limit-concurrency 1 the next request would otherwise wait forever).
func TestTimeoutASGICancelsTask(t *testing.T) {
	k, dir := startSup(t, false, "timeout_asgi:app", "--timeout", "2", "--limit-concurrency", "1")
	k.Forbid("killing the worker")
	pid0 := fastPid(t, k)

	resp, body := k.Get("/hang?token=a")
	if resp.StatusCode != 504 || !strings.Contains(body, "504 Gateway Timeout") {
		t.Fatalf("the request over --timeout: %d %q, want 504", resp.StatusCode, body)
	}
	// The app saw the cancellation (CancelledError in its await).
	waitFileContains(t, filepath.Join(dir, "events.log"), "cancelled a "+strconv.Itoa(pid0), ioTimeout)
	k.MustWaitLog(regexp.MustCompile(`request exceeded --timeout; cancelling its task" .*method=GET path=/hang .*pid=` + strconv.Itoa(pid0)))
	k.MustWaitLog(regexp.MustCompile(`cancelling the application task \(stream \d+, GET /hang\): the request exceeded --timeout 2s`))

	if p := fastPid(t, k); p != pid0 {
		t.Fatalf("after the timeout GET /fast ran on %d, want the same worker %d", p, pid0)
	}
	// A request within the limit is untouched.
	done := goGet(k, "/hang?token=b")
	startedPids(t, dir, "b")
	release(t, dir, "b")
	if r := await(t, k, done, "GET /hang?token=b"); r.status != 200 || r.body != "released b pid="+strconv.Itoa(pid0) {
		t.Fatalf("a request within --timeout: %d %q", r.status, r.body)
	}
}

// An ASGI worker whose event loop is blocked (time.sleep in an async view)
// cannot answer krait's heartbeat: after --heartbeat-timeout it is killed
// and replaced, and the request it was stuck on gets 502.
func TestHeartbeatKillsBlockedLoop(t *testing.T) {
	k, dir := startSup(t, false, "timeout_asgi:app", "--heartbeat-timeout", "1")
	pid0 := fastPid(t, k)

	stuck := goGet(k, "/block-loop?token=a")
	startedPids(t, dir, "a")
	r := await(t, k, stuck, "GET /block-loop")
	if r.status != 502 {
		t.Fatalf("the request on the blocked worker: %d %q, want 502\nlog:\n%s", r.status, r.body, k.Log())
	}
	k.MustWaitLog(regexp.MustCompile(`killing the worker" .*pid=` + strconv.Itoa(pid0) + ` reason="no answer to the heartbeat for 1s`))
	newPid(t, k, pid0)
	if !processGone(pid0) {
		t.Fatalf("worker %d still exists after the heartbeat kill", pid0)
	}
}

// Healthy workers are never killed by the heartbeat: an ASGI request that
// awaits, and a WSGI request on a one-thread worker (the app runs on the
// thread that answers pings, so the clock stops while it runs), both
// outlive several heartbeat timeouts.
func TestHeartbeatSparesBusyWorkers(t *testing.T) {
	for _, tc := range []struct{ name, app string }{
		{"asgi", "timeout_asgi:app"},
		{"wsgi-inline", "timeout_wsgi:application"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, dir := startSup(t, false, tc.app, "--heartbeat-timeout", "0.5")
			k.Forbid("killing the worker")
			pid0 := fastPid(t, k)
			done := goGet(k, "/hang?token=a")
			startedPids(t, dir, "a")
			// Proving that nothing happens takes time: four heartbeat timeouts.
			time.Sleep(2 * time.Second)
			release(t, dir, "a")
			r := await(t, k, done, "GET /hang")
			if r.status != 200 || r.body != "released a pid="+strconv.Itoa(pid0) {
				t.Fatalf("a long request on a healthy worker: %d %q\nlog:\n%s", r.status, r.body, k.Log())
			}
			if strings.Contains(k.Log(), "heartbeat") {
				t.Fatalf("the heartbeat acted on a healthy worker; log:\n%s", k.Log())
			}
			if p := fastPid(t, k); p != pid0 {
				t.Fatalf("GET /fast ran on %d, want the same worker %d", p, pid0)
			}
		})
	}
}

// A request whose response already started when it ran over --timeout
// cannot become a 504: the response is cut (the client sees the body end
// early, not a clean end), and the WSGI worker is still replaced.
func TestTimeoutAfterResponseStarted(t *testing.T) {
	k, dir := startSup(t, false, "timeout_wsgi:application", "--timeout", "2")
	pid0 := fastPid(t, k)
	resp, err := k.Client().Get(k.URL("/stream-hang?token=a"))
	if err != nil {
		t.Fatalf("GET /stream-hang: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /stream-hang: %d", resp.StatusCode)
	}
	startedPids(t, dir, "a")
	body, err := io.ReadAll(resp.Body)
	if err == nil || string(body) != "first\n" {
		t.Fatalf("the cut response: body %q, err %v; want \"first\\n\" and an error", body, err)
	}
	k.MustWaitLog(regexp.MustCompile(`request exceeded --timeout; killing its WSGI worker" .*path=/stream-hang .*pid=` + strconv.Itoa(pid0)))
	newPid(t, k, pid0)
}

// WebSockets are exempt from --timeout: a session lives on past it.
func TestTimeoutSparesWebSockets(t *testing.T) {
	k, _ := startASGI(t, "", "--timeout", "0.5")
	k.Forbid("exceeded --timeout")
	c := wsDial(t, k, "/ws/echo?tag=t1", nil)
	wsWriteText(t, c, "before")
	if got := wsReadText(t, c); got != "before" {
		t.Fatalf("echo %q", got)
	}
	// Proving that nothing happens takes time: three timeouts.
	time.Sleep(1500 * time.Millisecond)
	wsWriteText(t, c, "after")
	if got := wsReadText(t, c); got != "after" {
		t.Fatalf("echo after --timeout passed: %q", got)
	}
}
