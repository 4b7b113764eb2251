package integration

// Graceful reload (SIGHUP), recycling (--max-requests, --max-lifetime,
// --max-rss), scaling (SIGTTIN/SIGTTOU) and SIGQUIT, through the real
// binary. The app is python/tests/apps/reload_app.py: its generation
// marker is read at import from KRAIT_TEST_DIR/generation.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func startReloadApp(t *testing.T, extra ...string) (*Krait, string) {
	t.Helper()
	return startSup(t, false, "reload_app:application", extra...)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// getOK does a GET that must answer 200 and returns the body.
func getOK(t *testing.T, k *Krait, path string) string {
	t.Helper()
	resp, body := k.Get(path)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: status %d, body %q; log:\n%s", path, resp.StatusCode, body, k.Log())
	}
	return body
}

var genPidRE = regexp.MustCompile(`^gen=(\S+) pid=(\d+)$`)

// parseGenPid splits "gen=G pid=P".
func parseGenPid(t *testing.T, body string) (gen, pid string) {
	t.Helper()
	m := genPidRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("unexpected body %q", body)
	}
	return m[1], m[2]
}

// loadLoop runs n client loops against k until stop is closed, counting
// requests, non-200 answers and transport errors (the first few kept).
type loadLoop struct {
	ok, bad, errs atomic.Int64
	mu            sync.Mutex
	first         []string
	wg            sync.WaitGroup
}

func (l *loadLoop) note(s string) {
	l.mu.Lock()
	if len(l.first) < 5 {
		l.first = append(l.first, s)
	}
	l.mu.Unlock()
}

func startLoad(k *Krait, n int, stop <-chan struct{}) *loadLoop {
	l := &loadLoop{}
	for i := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			// Half keep connections alive, half open one per request.
			tr := &http.Transport{DisableKeepAlives: i%2 == 1, MaxIdleConnsPerHost: 4}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(k.URL("/"))
				if err != nil {
					l.errs.Add(1)
					l.note(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					l.errs.Add(1)
					l.note(err.Error())
				case resp.StatusCode != 200 || !genPidRE.Match(body):
					l.bad.Add(1)
					l.note(fmt.Sprintf("%d %q", resp.StatusCode, body))
				default:
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

// TestReloadUnderLoad: three SIGHUPs under continuous load lose nothing
// (no non-200, no connection error); after each, new requests are served
// by the new generation; a request in flight on the old generation
// finishes there.
func TestReloadUnderLoad(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "2", "--threads", "4")
	if gen, _ := parseGenPid(t, getOK(t, k, "/")); gen != "0" {
		t.Fatalf("first generation is %q, want 0", gen)
	}
	// A request in flight across the first reload.
	inflight := make(chan string, 1)
	go func() {
		resp, err := http.Get(k.URL("/block?token=a"))
		if err != nil {
			inflight <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	waitFileContains(t, filepath.Join(dir, "events.log"), "started a ", ioTimeout)

	stop := make(chan struct{})
	load := startLoad(k, 4, stop)
	for g := 1; g <= 3; g++ {
		// Let some load hit this generation first.
		before := load.ok.Load()
		waitCond(t, "load requests served", func() bool { return load.ok.Load() >= before+100 })
		writeFile(t, filepath.Join(dir, "generation"), fmt.Sprint(g))
		off := k.LogLen()
		k.Signal(syscall.SIGHUP)
		if _, ok := k.WaitLogFrom(off, regexp.MustCompile(`msg="reloaded: new generation`), 60*time.Second); !ok {
			t.Fatalf("reload %d never completed; log:\n%s", g, k.Log())
		}
		// Every request from now on goes to the new generation.
		for range 10 {
			if gen, _ := parseGenPid(t, getOK(t, k, "/")); gen != fmt.Sprint(g) {
				t.Fatalf("after reload %d, answered by generation %s", g, gen)
			}
		}
		if g == 1 {
			touch(t, filepath.Join(dir, "release-a"))
			if got := <-inflight; !strings.HasPrefix(got, "200 released a gen=0 ") {
				t.Fatalf("in-flight request across the reload: %q, want 200 from generation 0", got)
			}
		}
	}
	before := load.ok.Load()
	waitCond(t, "load requests served", func() bool { return load.ok.Load() >= before+100 })
	close(stop)
	load.wg.Wait()
	if load.bad.Load() != 0 || load.errs.Load() != 0 {
		t.Fatalf("under load across 3 reloads: %d ok, %d non-200, %d errors; first: %q", load.ok.Load(), load.bad.Load(), load.errs.Load(), load.first)
	}
	// 3 reloads of 2 workers: 6 old workers drained and exited.
	waitCond(t, "old workers exited", func() bool {
		return strings.Count(k.Log(), `msg="old worker exited"`) == 6
	})
	if n := strings.Count(k.Log(), `reason=reload`); n != 12 { // "replaced" + "exited" per worker
		t.Fatalf("%d reason=reload log lines, want 12; log:\n%s", n, k.Log())
	}
	// No slot was left empty and refilled: the swaps were the only change.
	k.Forbid("worker died", "worker retired", "replacement worker ready")
}

// TestReloadBrokenImportKeepsOld: a reload whose new code fails to import
// is abandoned: the old generation keeps serving (same pids) and the
// traceback is logged; a later reload with fixed code succeeds.
func TestReloadBrokenImportKeepsOld(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "2", "--threads", "2")
	pids := map[string]bool{}
	for range 20 {
		_, pid := parseGenPid(t, getOK(t, k, "/"))
		pids[pid] = true
	}
	touch(t, filepath.Join(dir, "fail-import"))
	writeFile(t, filepath.Join(dir, "generation"), "1")
	off := k.LogLen()
	k.Signal(syscall.SIGHUP)
	if _, ok := k.WaitLogFrom(off, regexp.MustCompile(`msg="reload failed: the old workers keep serving"`), 60*time.Second); !ok {
		t.Fatalf("failed reload not logged; log:\n%s", k.Log())
	}
	after := k.Log()[off:]
	for _, want := range []string{"Traceback (most recent call last)", "RuntimeError: reload_app: broken on purpose"} {
		if !strings.Contains(after, want) {
			t.Fatalf("log after the failed reload lacks %q:\n%s", want, after)
		}
	}
	for range 20 {
		gen, pid := parseGenPid(t, getOK(t, k, "/"))
		if gen != "0" || !pids[pid] {
			t.Fatalf("after a failed reload answered by gen=%s pid=%s, want generation 0 from %v", gen, pid, pids)
		}
	}
	if err := os.Remove(filepath.Join(dir, "fail-import")); err != nil {
		t.Fatal(err)
	}
	off = k.LogLen()
	k.Signal(syscall.SIGHUP)
	if _, ok := k.WaitLogFrom(off, regexp.MustCompile(`msg="reloaded: new generation`), 60*time.Second); !ok {
		t.Fatalf("second reload never completed; log:\n%s", k.Log())
	}
	if gen, _ := parseGenPid(t, getOK(t, k, "/")); gen != "1" {
		t.Fatalf("after the fixed reload answered by generation %s, want 1", gen)
	}
	k.Forbid("worker died", "worker retired", "replacement worker ready")
}

// waitCond polls cond (a cheap check) until true, failing after ioTimeout.
func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling, not timing
	}
}

// TestMaxRequestsRecycles: with --max-requests 10 --max-requests-jitter 3
// and one worker, sequential requests see the worker replaced again and
// again, none fails, no worker is replaced before it served 10 requests,
// and a request in flight when its worker is recycled completes on it.
func TestMaxRequestsRecycles(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "1", "--threads", "2", "--max-requests", "10", "--max-requests-jitter", "3")
	_, first := parseGenPid(t, getOK(t, k, "/"))
	inflight := make(chan string, 1)
	go func() {
		resp, err := http.Get(k.URL("/block?token=m"))
		if err != nil {
			inflight <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	waitFileContains(t, filepath.Join(dir, "events.log"), "started m "+first, ioTimeout)
	// Requests (one at a time) until a fourth pid answers. The blocked
	// request's worker is recycled while it is still in flight there.
	served := map[string]int{first: 2} // "/" and /block
	var order []string
	order = append(order, first)
	released := false
	waitCond(t, "4 worker generations", func() bool {
		_, pid := parseGenPid(t, getOK(t, k, "/"))
		if served[pid] == 0 {
			order = append(order, pid)
		}
		served[pid]++
		if len(order) >= 2 && !released {
			released = true
			touch(t, filepath.Join(dir, "release-m"))
			if got := <-inflight; got != "200 released m gen=0 pid="+first {
				t.Fatalf("request in flight across recycling: %q, want 200 from pid %s", got, first)
			}
		}
		return len(order) >= 4
	})
	// Every replaced worker served at least --max-requests first (the one
	// answering now may still be under it).
	for _, pid := range order[:len(order)-1] {
		if served[pid] < 10 {
			t.Fatalf("pid %s was replaced after %d requests, under --max-requests 10: %v", pid, served[pid], served)
		}
	}
	k.MustWaitLog(regexp.MustCompile(`msg="old worker exited" worker=1 pid=` + first + ` reason=max_requests`))
	k.Forbid("worker died", "killed")
}

// TestMaxLifetimeRecycles: --max-lifetime replaces the worker once it ran
// that long, without a failed request.
func TestMaxLifetimeRecycles(t *testing.T) {
	k, _ := startReloadApp(t, "-w", "1", "--max-lifetime", "2s")
	_, first := parseGenPid(t, getOK(t, k, "/"))
	k.MustWaitLog(regexp.MustCompile(`msg="old worker exited" worker=1 pid=` + first + ` reason=max_lifetime`))
	_, pid := parseGenPid(t, getOK(t, k, "/"))
	if pid == first {
		t.Fatalf("still served by pid %s after its lifetime", pid)
	}
	k.Forbid("worker died")
}

// TestMaxRSSRecycles: a worker whose resident memory passes --max-rss
// (an app that leaks on /leak) is replaced; one that stays under is not.
func TestMaxRSSRecycles(t *testing.T) {
	k, _ := startReloadApp(t, "-w", "1", "--max-rss", "100")
	_, first := parseGenPid(t, getOK(t, k, "/leak?mb=1"))
	_, pid := parseGenPid(t, getOK(t, k, "/"))
	if pid != first {
		t.Fatalf("recycled under --max-rss: pid %s then %s", first, pid)
	}
	getOK(t, k, "/leak?mb=150")
	k.MustWaitLog(regexp.MustCompile(`msg="old worker exited" worker=1 pid=` + first + ` reason=max_rss`))
	if _, pid := parseGenPid(t, getOK(t, k, "/")); pid == first {
		t.Fatalf("still served by pid %s after it passed --max-rss", pid)
	}
	if n := strings.Count(k.Log(), `msg="old worker exited"`); n != 1 {
		t.Fatalf("%d workers recycled, want 1; log:\n%s", n, k.Log())
	}
	k.Forbid("worker died")
}

// TestSignalsScale: SIGTTIN adds a worker (two requests then run at once
// on distinct pids with one thread each), SIGTTOU removes it (it drains
// and exits), and the last worker is never removed.
func TestSignalsScale(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "1", "--threads", "1")
	_, first := parseGenPid(t, getOK(t, k, "/"))
	k.Signal(syscall.SIGTTIN)
	k.MustWaitLog(regexp.MustCompile(`msg="SIGTTIN: worker added" workers=2`))
	m := k.MustWaitLog(regexp.MustCompile(`msg="replacement worker ready" worker=2 pid=(\d+)`))
	second := m[1]
	// Hold one worker; the other still answers.
	inflight := make(chan string, 1)
	go func() {
		resp, err := http.Get(k.URL("/block?token=s"))
		if err != nil {
			inflight <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		inflight <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	ev := waitFileMatch(t, filepath.Join(dir, "events.log"), regexp.MustCompile(`started s (\d+)`), ioTimeout)
	held := string(ev[1])
	_, other := parseGenPid(t, getOK(t, k, "/"))
	if other == held || (other != first && other != second) {
		t.Fatalf("with %s held, answered by %s; workers are %s and %s", held, other, first, second)
	}
	touch(t, filepath.Join(dir, "release-s"))
	if got := <-inflight; !strings.HasPrefix(got, "200 released s ") {
		t.Fatalf("held request: %q", got)
	}
	k.Signal(syscall.SIGTTOU)
	k.MustWaitLog(regexp.MustCompile(`msg="SIGTTOU: worker removed" workers=1`))
	k.MustWaitLog(regexp.MustCompile(`msg="old worker exited" worker=2 pid=` + second))
	for range 10 {
		if _, pid := parseGenPid(t, getOK(t, k, "/")); pid != first {
			t.Fatalf("after SIGTTOU answered by %s, want %s", pid, first)
		}
	}
	k.Signal(syscall.SIGTTOU)
	k.MustWaitLog(regexp.MustCompile(`msg="SIGTTOU: cannot remove a worker"`))
	getOK(t, k, "/")
	k.Forbid("worker died")
}

// TestSIGQUITStopsNow: SIGQUIT does not wait out --graceful-timeout for
// a request in flight: krait exits at once (status 0).
func TestSIGQUITStopsNow(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "1", "--graceful-timeout", "300")
	go func() {
		resp, err := http.Get(k.URL("/block?token=q"))
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFileContains(t, filepath.Join(dir, "events.log"), "started q ", ioTimeout)
	k.Signal(syscall.SIGQUIT)
	code, ok := k.WaitExit(60 * time.Second)
	if !ok {
		t.Fatalf("krait still running 60s after SIGQUIT with a request in flight (graceful timeout 300s); log:\n%s", k.Log())
	}
	if code != 0 {
		t.Fatalf("exit status %d after SIGQUIT; log:\n%s", code, k.Log())
	}
	if !strings.Contains(k.Log(), "SIGQUIT: stopping now") {
		t.Fatalf("log lacks the SIGQUIT line:\n%s", k.Log())
	}
}

// TestReloadMetrics: a reload of two workers counts two restarts with
// reason "reload" in /metrics, and nothing under the other reasons.
func TestReloadMetrics(t *testing.T) {
	k, dir := startReloadApp(t, "-w", "2", "--metrics-bind", "127.0.0.1:0")
	m := k.MustWaitLog(metricsListeningRE)
	mk := &metricsKrait{Krait: k, dir: dir, metrics: m[1]}
	writeFile(t, filepath.Join(dir, "generation"), "1")
	k.Signal(syscall.SIGHUP)
	k.MustWaitLog(regexp.MustCompile(`msg="reloaded: new generation`))
	s := mk.waitScrape("two reload restarts", func(s map[string]float64) bool {
		return s[`krait_worker_restarts_total{reason="reload"}`] == 2
	})
	for _, reason := range []string{"died", "died_early", "boot_failed", "retired", "max_requests", "max_rss", "max_lifetime"} {
		name := `krait_worker_restarts_total{reason="` + reason + `"}`
		if got := sample(t, s, name); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	if gen, _ := parseGenPid(t, getOK(t, k, "/")); gen != "1" {
		t.Fatalf("after the reload answered by generation %s", gen)
	}
}

// TestReloadNotifiesSystemd: under NOTIFY_SOCKET, a SIGHUP reload sends
// RELOADING=1 (with MONOTONIC_USEC) and then READY=1 once the new
// generation serves; a failed reload ends with READY=1 too (the old
// generation serves) and says so in STATUS=.
func TestReloadNotifiesSystemd(t *testing.T) {
	dir := t.TempDir()
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	n := listenNotify(t, sockPath)
	cmd := kraitCommand(t, testPython(t), "reload_app:application", "--chdir", supAppsDir(),
		"--env", "KRAIT_TEST_DIR="+dir, "-w", "1")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	k := startCmd(t, cmd)
	n.wait(t, "READY=1", func(m []string) bool { return len(m) >= 1 })
	writeFile(t, filepath.Join(dir, "generation"), "1")
	k.Signal(syscall.SIGHUP)
	msgs := n.wait(t, "RELOADING then READY", func(m []string) bool { return len(m) >= 3 })
	if !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=reloading`).MatchString(msgs[1]) {
		t.Fatalf("second message %q, want RELOADING=1", msgs[1])
	}
	if msgs[2] != "READY=1\nSTATUS=ready: new generation of workers serving" {
		t.Fatalf("third message %q, want READY=1 for the new generation", msgs[2])
	}
	if gen, _ := parseGenPid(t, getOK(t, k, "/")); gen != "1" {
		t.Fatalf("after the reload answered by generation %s", gen)
	}
	touch(t, filepath.Join(dir, "fail-import"))
	k.Signal(syscall.SIGHUP)
	msgs = n.wait(t, "RELOADING then READY after a failed reload", func(m []string) bool { return len(m) >= 5 })
	if !strings.HasPrefix(msgs[3], "RELOADING=1\n") || msgs[4] != "READY=1\nSTATUS=ready: reload failed, old workers serving" {
		t.Fatalf("after a failed reload got %q", msgs[3:])
	}
	if len(withoutWatchdog(msgs)) != 5 {
		t.Fatalf("messages %q", msgs)
	}
}
