package integration

// Supervisor and worker hardening (issue 6): group signals, replacements
// that fail to boot, crash restarts, a worker killed under load, a blocked
// error log. The apps are python/tests/apps/sup_app.py (WSGI) and
// sup_asgi.py (ASGI).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func supAppsDir() string { return filepath.Join(repoRoot, "python", "tests", "apps") }

// startSup serves target from python/tests/apps with KRAIT_TEST_DIR set.
// With group set, krait runs in its own process group (so the test can
// signal the group, as systemd's KillMode=control-group does).
func startSup(t *testing.T, group bool, target string, extra ...string) (*Krait, string) {
	t.Helper()
	dir := t.TempDir()
	args := append([]string{target, "--chdir", supAppsDir(), "--env", "KRAIT_TEST_DIR=" + dir}, extra...)
	if !group {
		return startKrait(t, nil, args...), dir
	}
	// startKrait with Setpgid: the same readiness wait, on our own command.
	python := testPython(t)
	k := &Krait{t: t, log: newLogBuffer(), done: make(chan struct{})}
	k.cmd = kraitCommand(t, python, args...)
	k.cmd.SysProcAttr.Setpgid = true
	k.cmd.Stdout, k.cmd.Stderr = k.log, k.log
	k.cmd.WaitDelay = 5 * time.Second
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("starting krait: %v", err)
	}
	go func() {
		err := k.cmd.Wait()
		k.exitCode = exitCode(err)
		close(k.done)
	}()
	t.Cleanup(func() {
		k.cleanup()
		// Whatever is left of the group (nothing, normally).
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
	})
	m, ok := k.WaitLog(listeningRE, readyTimeout)
	if !ok {
		t.Fatalf("krait never listened; log:\n%s", k.Log())
	}
	if _, ok := k.WaitLog(readyRE, readyTimeout); !ok {
		t.Fatalf("krait not ready; log:\n%s", k.Log())
	}
	addr := m[1]
	if s, err := strconv.Unquote(addr); err == nil {
		addr = s
	}
	k.Addrs = []string{addr}
	return k, dir
}

// getAsync runs GET path and delivers "STATUS BODY" (or "error: ...").
func getAsync(k *Krait, path string) <-chan string {
	out := make(chan string, 1)
	go func() {
		resp, err := k.Client().Get(k.URL(path))
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

func recvString(t *testing.T, what string, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(2 * ioTimeout):
		t.Fatalf("no answer to %s within %v", what, 2*ioTimeout)
		return ""
	}
}

var startedRE = regexp.MustCompile(`(?m)^started (\S+) (\d+)$`)

// startedPids waits until events.log in dir lists every token as started
// and returns token -> worker pid.
func startedPids(t *testing.T, dir string, tokens ...string) map[string]int {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		b, _ := os.ReadFile(filepath.Join(dir, "events.log"))
		got := map[string]int{}
		for _, m := range startedRE.FindAllStringSubmatch(string(b), -1) {
			got[m[1]], _ = strconv.Atoi(m[2])
		}
		all := true
		for _, tok := range tokens {
			if _, ok := got[tok]; !ok {
				all = false
			}
		}
		if all {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("requests %v not all started after %v; events.log:\n%s", tokens, ioTimeout, b)
		}
		time.Sleep(5 * time.Millisecond) // polling a file, not timing
	}
}

// A stop by a signal to the whole process group (systemd's default
// KillMode=control-group, `kill -TERM -- -PGID`, Ctrl-C at a terminal) is
// as graceful as one to krait's pid: in-flight requests finish with 200,
// ASGI lifespan shutdown runs, krait exits 0.
func TestSupGroupSignalsGraceful(t *testing.T) {
	for _, iface := range []string{"wsgi", "asgi"} {
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
			for _, target := range []string{"pid", "group"} {
				t.Run(fmt.Sprintf("%s/%s/%s", iface, sig, target), func(t *testing.T) {
					app, extra := "sup_app:application", []string{"-w", "1", "--threads", "2"}
					if iface == "asgi" {
						app, extra = "sup_asgi:app", []string{"-w", "1"}
					}
					k, dir := startSup(t, true, app, extra...)
					k.Forbid("worker died")
					a := getAsync(k, "/block?token=a")
					b := getAsync(k, "/block?token=b")
					startedPids(t, dir, "a", "b")

					pid := k.cmd.Process.Pid
					if target == "group" {
						pid = -pid
					}
					if err := syscall.Kill(pid, sig); err != nil {
						t.Fatal(err)
					}
					k.MustWaitLog(stoppingRE)
					touch(t, filepath.Join(dir, "release-a"))
					touch(t, filepath.Join(dir, "release-b"))
					for _, r := range []struct {
						tok string
						ch  <-chan string
					}{{"a", a}, {"b", b}} {
						if got := recvString(t, "/block?token="+r.tok, r.ch); got != "200 released "+r.tok {
							t.Errorf("in-flight request %s: %q, want 200", r.tok, got)
						}
					}
					code, ok := k.WaitExit(stopTimeout)
					if !ok || code != 0 {
						t.Fatalf("exited=%v status %d, want 0", ok, code)
					}
					if iface == "asgi" {
						waitFileContains(t, filepath.Join(dir, "events.log"), "lifespan-shutdown", ioTimeout)
					}
				})
			}
		}
	}
}

// A replacement that fails to boot (the app no longer imports) does not stop
// krait: the healthy worker's in-flight request finishes, it keeps serving,
// the failure is logged with the traceback and retried; with every worker
// down requests get 503 at once; when the app imports again krait recovers.
func TestSupReplacementBootFailureRetried(t *testing.T) {
	k, dir := startSup(t, false, "sup_app:application", "-w", "2", "--threads", "1")
	held := getAsync(k, "/block?token=held")
	p1 := startedPids(t, dir, "held")["held"]
	// Worker 1 is busy: /pid is answered by the other one.
	_, body := k.Get("/pid")
	p2, err := strconv.Atoi(body)
	if err != nil || p2 == p1 {
		t.Fatalf("/pid answered %q (worker holding the request: %d)", body, p1)
	}

	touch(t, filepath.Join(dir, "fail-import"))
	off := k.LogLen()
	if err := syscall.Kill(p2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.WaitLogFrom(off, regexp.MustCompile(`a replacement worker failed to start; retrying after a backoff`), ioTimeout); !ok {
		t.Fatalf("no retry logged; log:\n%s", k.Log())
	}
	k.MustWaitLog(regexp.MustCompile(`\[worker \d\] RuntimeError: sup_app: import failed on purpose`))

	touch(t, filepath.Join(dir, "release-held"))
	if got := recvString(t, "the held request", held); got != "200 released held" {
		t.Fatalf("the healthy worker's in-flight request: %q, want 200", got)
	}
	if resp, body := k.Get("/hello"); resp.StatusCode != 200 {
		t.Fatalf("/hello with one worker failing: %d %q", resp.StatusCode, body)
	}

	// Now the last worker dies too: every worker is down and failing.
	if err := syscall.Kill(p1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitReaped(t, p1)
	deadline := time.Now().Add(ioTimeout)
	for {
		resp, body := k.Get("/hello")
		if resp.StatusCode == 503 {
			// krait's error page: the status, never why (internal/errpage).
			if body != "503 Service Unavailable\n" || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("503 %q Retry-After %q", body, resp.Header.Get("Retry-After"))
			}
			break
		}
		// Until worker 1's replacement has failed once a request waits
		// for it (then gets the 503 too): nothing else is acceptable.
		if resp.StatusCode != 503 {
			t.Fatalf("/hello with every worker down: %d %q", resp.StatusCode, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no 503 with every worker failing to start; log:\n%s", k.Log())
		}
	}

	if err := os.Remove(filepath.Join(dir, "fail-import")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(ioTimeout)
	for recovered := 0; recovered < 2; {
		recovered = strings.Count(k.Log(), "after_failures=true")
		if time.Now().After(deadline) {
			t.Fatalf("workers did not recover; log:\n%s", k.Log())
		}
		time.Sleep(10 * time.Millisecond) // polling the log
	}
	if resp, body := k.Get("/hello"); resp.StatusCode != 200 {
		t.Fatalf("/hello after recovery: %d %q", resp.StatusCode, body)
	}
	if code := k.stop(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
}

// The first case: with a slow import, a replacement killed while it
// boots used to stop krait ("worker pool failed, stopping", exit 1) and
// drop the healthy worker's in-flight request. Now it is retried.
func TestSupReplacementKilledWhileBooting(t *testing.T) {
	k, dir := startSup(t, false, "sup_app:application", "-w", "2", "--threads", "1")
	held := getAsync(k, "/block?token=held")
	p1 := startedPids(t, dir, "held")["held"]
	_, body := k.Get("/pid")
	p2, err := strconv.Atoi(body)
	if err != nil || p2 == p1 {
		t.Fatalf("/pid answered %q (worker holding the request: %d)", body, p1)
	}
	touch(t, filepath.Join(dir, "slow-import"))
	if err := syscall.Kill(p2, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	m := waitFileMatch(t, filepath.Join(dir, "events.log"), regexp.MustCompile(`booting (\d+)`), ioTimeout)
	booting, _ := strconv.Atoi(string(m[1]))
	if err := syscall.Kill(booting, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.WaitLog(regexp.MustCompile(`a replacement worker failed to start; retrying after a backoff`), ioTimeout); !ok {
		t.Fatalf("no retry logged; log:\n%s", k.Log())
	}
	touch(t, filepath.Join(dir, "release-held"))
	if got := recvString(t, "the held request", held); got != "200 released held" {
		t.Fatalf("the healthy worker's in-flight request: %q, want 200", got)
	}
	if err := os.Remove(filepath.Join(dir, "slow-import")); err != nil {
		t.Fatal(err)
	}
	k.MustWaitLog(regexp.MustCompile(`msg="replacement worker ready" worker=\d pid=\d+ after_failures=true`))
	for i := 0; i < 4; i++ {
		if resp, body := k.Get("/hello"); resp.StatusCode != 200 {
			t.Fatalf("/hello after recovery: %d %q", resp.StatusCode, body)
		}
	}
	if code := k.stop(); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
}

var readyReplacementRE = regexp.MustCompile(`msg="replacement worker ready"`)

// A request that crashes a worker that ran fine has it replaced at once;
// only a worker that dies right after boot without serving anything backs
// off. The log says which.
func TestSupCrashRestartPolicy(t *testing.T) {
	k, _ := startSup(t, false, "sup_app:application", "-w", "1")
	waitReplacements := func(n int) {
		t.Helper()
		deadline := time.Now().Add(ioTimeout)
		for len(readyReplacementRE.FindAllString(k.Log(), -1)) < n {
			if time.Now().After(deadline) {
				t.Fatalf("fewer than %d replacements; log:\n%s", n, k.Log())
			}
			time.Sleep(5 * time.Millisecond) // polling the log
		}
	}
	steps := []struct {
		path   string
		status int
	}{
		{"/hello", 200}, {"/crash", 502}, // ran fine: at once
		{"/crash", 502},                                   // the replacement served nothing: backoff
		{"/hello", 200}, {"/hello", 200}, {"/crash", 502}, // at once
	}
	crashes := 0
	for _, s := range steps {
		if resp, body := k.Get(s.path); resp.StatusCode != s.status {
			t.Fatalf("%s: %d %q, want %d", s.path, resp.StatusCode, body, s.status)
		}
		if s.path == "/crash" {
			crashes++
			waitReplacements(crashes)
		}
	}
	log := k.Log()
	if n := strings.Count(log, "worker died, restarting it at once"); n != 2 {
		t.Errorf("%d restarts at once, want 2", n)
	}
	if n := strings.Count(log, "restarting it after a backoff"); n != 1 {
		t.Errorf("%d restarts after a backoff, want 1", n)
	}
}

// Killing one of two workers fails exactly the K requests it was running:
// every request sent after it died goes to the live worker (or waits for
// the replacement), even while its socket lives on in a child process
// (a fork()ed multiprocessing worker), which delays krait's noticing the
// broken connection.
func TestSupKillOneWorkerOnlyItsRequestsFail(t *testing.T) {
	const k1 = 3 // requests blocked on each worker; --threads is k1+1
	k, dir := startSup(t, false, "sup_app:application", "-w", "2", "--threads", strconv.Itoa(k1+1))
	// Both idle: the first request goes to worker 1, which leaves a
	// child holding its socket.
	resp, body := k.Get("/spawn-holder")
	var holder, victim int
	if _, err := fmt.Sscanf(body, "holder %d pid %d", &holder, &victim); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/spawn-holder: %d %q", resp.StatusCode, body)
	}
	t.Cleanup(func() { _ = syscall.Kill(holder, syscall.SIGKILL) })

	// 2*k1 blocked requests, one at a time: least-loaded alternates them.
	blocked := map[string]<-chan string{}
	var tokens []string
	for i := 0; i < 2*k1; i++ {
		tok := "t" + strconv.Itoa(i)
		blocked[tok] = getAsync(k, "/block?token="+tok)
		startedPids(t, dir, tok)
		tokens = append(tokens, tok)
	}
	pids := startedPids(t, dir, tokens...)
	var onVictim, onOther []string
	for _, tok := range tokens {
		if pids[tok] == victim {
			onVictim = append(onVictim, tok)
		} else {
			onOther = append(onOther, tok)
		}
	}
	if len(onVictim) != k1 {
		t.Fatalf("%d requests on the victim (pid %d), want %d: %v", len(onVictim), victim, k1, pids)
	}

	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// krait reaped it: from now on nothing may be sent to it.
	waitReaped(t, victim)

	const n, conc = 200, 8
	statuses := make(chan string, n)
	var wg sync.WaitGroup
	jobs := make(chan int, n)
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	client := &http.Client{Timeout: 2 * ioTimeout, Transport: &http.Transport{MaxIdleConnsPerHost: conc}}
	defer client.CloseIdleConnections()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				resp, err := client.Get(k.URL("/hello"))
				if err != nil {
					statuses <- "error: " + err.Error()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				statuses <- fmt.Sprintf("%d %s", resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(statuses)
	bad := map[string]int{}
	for s := range statuses {
		if s != "200 hello" {
			bad[s]++
		}
	}
	if len(bad) != 0 {
		t.Errorf("requests sent after the worker died failed: %v", bad)
	}

	for _, tok := range onVictim {
		if got := recvString(t, tok, blocked[tok]); !strings.HasPrefix(got, "502 ") {
			t.Errorf("request %s on the killed worker: %q, want 502", tok, got)
		}
	}
	for _, tok := range onOther {
		touch(t, filepath.Join(dir, "release-"+tok))
		if got := recvString(t, tok, blocked[tok]); got != "200 released "+tok {
			t.Errorf("request %s on the live worker: %q, want 200", tok, got)
		}
	}
}

// A log destination nobody reads (a FIFO without reader here) must not
// stall workers that print, nor krait's stop: lines are dropped and
// counted, and the count is logged once the destination drains.
func TestSupBlockedErrorLog(t *testing.T) {
	python := testPython(t)
	dir := t.TempDir()
	fifo := filepath.Join(dir, "error.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	// A reader that exists (so krait's open does not block) but reads nothing yet.
	rfd, err := syscall.Open(fifo, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	reader := os.NewFile(uintptr(rfd), fifo)
	defer reader.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	cmd := kraitCommand(t, python, "sup_app:application", "--chdir", supAppsDir(),
		"--env", "KRAIT_TEST_DIR="+dir, "-w", "1", "-b", addr, "--error-logfile", fifo)
	var out logBuffer
	out.changed = make(chan struct{})
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var code int
	go func() { code = exitCode(cmd.Wait()); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
		case <-time.After(ioTimeout):
		}
	})
	client := &http.Client{Timeout: 20 * time.Second}
	defer client.CloseIdleConnections()
	get := func(path string) string {
		resp, err := client.Get("http://" + addr + path)
		if err != nil {
			return "error: " + err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	deadline := time.Now().Add(readyTimeout)
	for get("/hello") != "200 hello" {
		if time.Now().After(deadline) {
			t.Fatalf("krait not serving after %v; its stdout/stderr:\n%s", readyTimeout, out.String())
		}
		time.Sleep(20 * time.Millisecond) // readiness polling
	}
	// 2 x 10000 lines of 206 bytes: far more than the pipe and the buffer hold.
	for i := 0; i < 2; i++ {
		if got := get("/spam?n=10000"); got != "200 spammed" {
			t.Fatalf("/spam with the error log blocked: %q", got)
		}
	}

	// Drain: the queued lines come out, then the count of dropped ones.
	if err := syscall.SetNonblock(rfd, false); err != nil {
		t.Fatal(err)
	}
	found := make(chan bool, 1)
	go func() {
		br := bufio.NewReader(reader)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				found <- false
				return
			}
			if regexp.MustCompile(`^krait: \d+ log lines dropped`).MatchString(line) {
				found <- true
				return // and stop reading: the log blocks again
			}
		}
	}()
	select {
	case ok := <-found:
		if !ok {
			t.Fatal("the error log ended without the count of dropped lines")
		}
	case <-time.After(ioTimeout):
		t.Fatal("no count of dropped lines in the error log")
	}

	// Block it again, then stop: the stop must not wait on the log.
	for i := 0; i < 2; i++ {
		if got := get("/spam?n=10000"); got != "200 spammed" {
			t.Fatalf("/spam with the error log blocked again: %q", got)
		}
	}
	client.CloseIdleConnections()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if code != 0 {
			t.Fatalf("exit status %d after SIGTERM, want 0; stdout/stderr:\n%s", code, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("krait did not exit within 20s of SIGTERM with its error log blocked")
	}
}

// ioDeadline fires after ioTimeout: a bounded wait for one answer.
func ioDeadline() <-chan time.Time { return time.After(ioTimeout) }

// waitReaped waits until krait reaped its child pid (killed by the test),
// so that requests sent afterwards cannot have reached it.
func waitReaped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d not reaped within %v", pid, ioTimeout)
		}
		time.Sleep(time.Millisecond) // polling /proc
	}
}
