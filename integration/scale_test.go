package integration

// Worker count (--workers auto, $WEB_CONCURRENCY) and autoscaling
// (--max-workers, --scale-down-after) through the real binary, with
// python/tests/apps/reload_app.py (/block?token=T holds a request until
// the test creates KRAIT_TEST_DIR/release-T).

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestAutoscaleGrowsAndShrinks: with -w 1 --max-workers 3 and one thread
// per worker, three requests held at once make krait add two workers
// (the three run at once on three pids, and no fourth is added); once
// they are released it removes the spare workers one per
// --scale-down-after, back to one and never below.
func TestAutoscaleGrowsAndShrinks(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "1", "--threads", "1", "--max-workers", "3", "--scale-down-after", "1")
	if !regexp.MustCompile(`msg=ready .*workers=1 max_workers=3`).MatchString(k.Log()) {
		t.Fatalf("ready line lacks workers=1 max_workers=3; log:\n%s", k.Log())
	}
	_, first := parseGenPid(t, getOK(t, k, "/"))
	tokens := []string{"a", "b", "c"}
	done := make(chan string, len(tokens))
	for _, tok := range tokens {
		go func() {
			c := &http.Client{Timeout: 90 * time.Second}
			resp, err := c.Get(k.URL("/block?token=" + tok))
			if err != nil {
				done <- "error: " + err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
	}
	// All three run at once, each on its own worker: two were added.
	events := filepath.Join(dir, "events.log")
	pids := map[string]string{}
	for _, tok := range tokens {
		m := waitFileMatch(t, events, regexp.MustCompile(`started `+tok+` (\d+)`), ioTimeout)
		pids[string(m[1])] = tok
	}
	if len(pids) != 3 {
		t.Fatalf("three held requests ran on %d workers (%v), want 3; log:\n%s", len(pids), pids, k.Log())
	}
	k.MustWaitLog(regexp.MustCompile(`msg="autoscale: worker added, requests are queueing" workers=2 `))
	k.MustWaitLog(regexp.MustCompile(`msg="autoscale: worker added, requests are queueing" workers=3 `))
	for _, tok := range tokens {
		touch(t, filepath.Join(dir, "release-"+tok))
	}
	for range tokens {
		if got := <-done; !strings.HasPrefix(got, "200 released ") {
			t.Fatalf("held request: %q; log:\n%s", got, k.Log())
		}
	}
	k.MustWaitLog(regexp.MustCompile(`msg="autoscale: idle worker removed" workers=2 `))
	k.MustWaitLog(regexp.MustCompile(`msg="autoscale: idle worker removed" workers=1 `))
	k.MustWaitLog(regexp.MustCompile(`msg="old worker exited" worker=2 `))
	k.MustWaitLog(regexp.MustCompile(`msg="old worker exited" worker=3 `))
	for range 5 {
		if _, pid := parseGenPid(t, getOK(t, k, "/")); pid != first {
			t.Fatalf("after scaling down answered by %s, want the first worker %s", pid, first)
		}
	}
	// Never below --workers: over three more scale-down periods the
	// autoscaler removes nothing (an absence needs a window; its length
	// decides nothing but how long we look).
	time.Sleep(3 * time.Second)
	if n := strings.Count(k.Log(), "autoscale: idle worker removed"); n != 2 {
		t.Fatalf("%d removals, want 2; log:\n%s", n, k.Log())
	}
	if n := strings.Count(k.Log(), "autoscale: worker added"); n != 2 {
		t.Fatalf("%d additions, want 2; log:\n%s", n, k.Log())
	}
	k.Forbid("autoscale: cannot", "worker died")
}

// TestWorkersFromWebConcurrency: without -w, $WEB_CONCURRENCY is the
// worker count; -w beats it; --workers auto is one per CPU Go may use.
func TestWorkersFromWebConcurrency(t *testing.T) {
	t.Setenv("WEB_CONCURRENCY", "2")
	k, _ := startReloadApp(t)
	k.MustWaitLog(regexp.MustCompile(`msg="workers ready" workers=2 `))
	k2, _ := startReloadApp(t, "-w", "1")
	k2.MustWaitLog(regexp.MustCompile(`msg="workers ready" workers=1 `))
	// krait's GOMAXPROCS is ours: the same machine and cgroup.
	k3, _ := startReloadApp(t, "-w", "auto")
	k3.MustWaitLog(regexp.MustCompile(fmt.Sprintf(`msg="workers ready" workers=%d `, runtime.GOMAXPROCS(0))))
}

// TestWebConcurrencyInvalid: a bad $WEB_CONCURRENCY is a usage error
// naming it (exit 2), not a silent default.
func TestWebConcurrencyInvalid(t *testing.T) {
	for _, v := range []string{"lots", "0"} {
		t.Setenv("WEB_CONCURRENCY", v)
		code, _, stderr := runKrait(t, 30*time.Second, "serve", "app:application", "-b", "127.0.0.1:0")
		if code != 2 || !strings.Contains(stderr, "WEB_CONCURRENCY") {
			t.Fatalf("WEB_CONCURRENCY=%s: exit %d, stderr:\n%s", v, code, stderr)
		}
	}
	code, _, stderr := runKrait(t, 30*time.Second, "serve", "app:application", "-b", "127.0.0.1:0", "-w", "2", "--max-workers", "1")
	if code != 2 || !strings.Contains(stderr, "--max-workers") {
		t.Fatalf("--max-workers below -w: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestAutoscaleQueueBoundAtPeak: the queue bound is --max-queue per
// worker at --max-workers, not at --workers. With -w 1 --max-workers 2
// --max-queue 1 and the one worker held, two more requests both queue
// (bound 2) instead of one being refused with 503 (bound 1); all three
// are answered once released.
func TestAutoscaleQueueBoundAtPeak(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "1", "--threads", "1", "--max-workers", "2", "--max-queue", "1", "--scale-down-after", "60")
	get := func(tok string, done chan<- string) {
		c := &http.Client{Timeout: 90 * time.Second}
		resp, err := c.Get(k.URL("/block?token=" + tok))
		if err != nil {
			done <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	done := make(chan string, 3)
	go get("x", done)
	waitFileContains(t, filepath.Join(dir, "events.log"), "started x ", ioTimeout)
	go get("y", done)
	go get("z", done)
	// One of y and z runs on the added worker; the other waits for it.
	k.MustWaitLog(regexp.MustCompile(`msg="autoscale: worker added, requests are queueing" workers=2 `))
	waitFileMatch(t, filepath.Join(dir, "events.log"), regexp.MustCompile(`started [yz] `), ioTimeout)
	for _, tok := range []string{"x", "y", "z"} {
		touch(t, filepath.Join(dir, "release-"+tok))
	}
	for range 3 {
		if got := <-done; !strings.HasPrefix(got, "200 released ") {
			t.Fatalf("request: %q, want 200 (the queue is sized for --max-workers); log:\n%s", got, k.Log())
		}
	}
}
