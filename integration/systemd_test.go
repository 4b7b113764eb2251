package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// osApp reports what a worker sees of the operating system: the service
// manager's variables, its credentials and the listening sockets it holds.
const osApp = `import json, os, socket, time

# With KRAIT_TEST_GATE set, a worker booting while that file exists waits
# in its import (appending a dot to GATE.waits every 20 ms): not ready.
GATE = os.environ.get("KRAIT_TEST_GATE")
while GATE and os.path.exists(GATE):
    with open(GATE + ".waits", "a") as f:
        f.write(".")
    time.sleep(0.02)

VARS = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")

def listening():
    out = []
    for name in os.listdir("/proc/self/fd"):
        try:
            s = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                addr = s.getsockname()
                out.append(addr if isinstance(addr, str) else "%s:%d" % addr[:2])
        except OSError:
            pass
        finally:
            s.close()
    return out

def application(environ, start_response):
    body = {"env": {k: os.environ[k] for k in VARS if k in os.environ},
            "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(),
            "home": os.environ.get("HOME"), "listening": listening(), "pid": os.getpid()}
    data = json.dumps(body).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
`

type osReport struct {
	Env       map[string]string `json:"env"`
	UID       int               `json:"uid"`
	EUID      int               `json:"euid"`
	GID       int               `json:"gid"`
	EGID      int               `json:"egid"`
	Home      string            `json:"home"`
	Listening []string          `json:"listening"`
	PID       int               `json:"pid"`
}

// osAppDir writes osApp into a new directory every user can read (the
// --user test's workers run as nobody) and returns it.
func osAppDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "krait-osapp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "osapp.py"), []byte(osApp), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// launchCmd starts cmd (a krait, possibly behind a wrapper) with the
// harness's output capture and cleanup, without waiting.
func launchCmd(t *testing.T, cmd *exec.Cmd) *Krait {
	t.Helper()
	k := &Krait{t: t, log: newLogBuffer(), done: make(chan struct{}), cmd: cmd}
	cmd.Stdout, cmd.Stderr = k.log, k.log
	cmd.WaitDelay = 5 * time.Second
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting krait: %v", err)
	}
	go func() {
		err := cmd.Wait()
		k.exitCode = exitCode(err)
		close(k.done)
	}()
	t.Cleanup(k.cleanup)
	return k
}

// startCmd starts cmd (a krait, possibly behind a wrapper) the way
// startKrait does and waits for msg=ready.
func startCmd(t *testing.T, cmd *exec.Cmd) *Krait {
	t.Helper()
	k := launchCmd(t, cmd)
	m, ok := k.WaitLog(readyRE, readyTimeout)
	if !ok || m == nil {
		t.Fatalf("krait not ready (exit status %d if it exited); log:\n%s", k.exitCode, k.Log())
	}
	for _, m := range listeningRE.FindAllStringSubmatch(k.Log(), -1) {
		addr := m[1]
		if s, err := strconv.Unquote(addr); err == nil {
			addr = s
		}
		k.Addrs = append(k.Addrs, addr)
	}
	return k
}

// activatedCmd runs krait serve args through sh so that LISTEN_PID is the
// pid krait will have ($$ of the shell it replaces), with files as fds 3...
func activatedCmd(t *testing.T, files []*os.File, names string, args ...string) *exec.Cmd {
	t.Helper()
	python := testPython(t)
	script := `LISTEN_PID=$$ LISTEN_FDS=` + strconv.Itoa(len(files))
	if names != "" {
		script += ` LISTEN_FDNAMES=` + names
	}
	script += ` exec "$0" "$@"`
	full := append([]string{"-c", script, kraitBin, "serve"}, args...)
	full = append(full, "--python", python)
	cmd := exec.Command("/bin/sh", full...)
	cmd.Dir = repoRoot
	cmd.ExtraFiles = files
	return cmd
}

// getOS asks osApp over network/addr with a bounded client.
func getOS(t *testing.T, network, addr string) osReport {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	resp, err := c.Get("http://krait/")
	if err != nil {
		t.Fatalf("GET via %s %s: %v", network, addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r osReport
	if resp.StatusCode != 200 || json.Unmarshal(b, &r) != nil {
		t.Fatalf("GET via %s %s: %d %q", network, addr, resp.StatusCode, b)
	}
	return r
}

func listenerFile(t *testing.T, l net.Listener) *os.File {
	t.Helper()
	var f *os.File
	var err error
	switch l := l.(type) {
	case *net.TCPListener:
		f, err = l.File()
	case *net.UnixListener:
		f, err = l.File()
	}
	if err != nil || f == nil {
		t.Fatalf("listener file: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestSystemdSocketActivation passes a TCP and a unix listener as fds 3
// and 4 with no --bind: krait serves both (the test never accepts on
// them), logs their LISTEN_FDNAMES, and neither the sockets nor the
// variables reach the workers.
func TestSystemdSocketActivation(t *testing.T) {
	dir := osAppDir(t)
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	sock := filepath.Join(t.TempDir(), "act.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	files := []*os.File{listenerFile(t, tl), listenerFile(t, ul)}
	k := startCmd(t, activatedCmd(t, files, "web:local", "osapp:application", "--chdir", dir, "-w", "2"))

	want := []string{tl.Addr().String(), "unix:" + sock}
	if fmt.Sprint(k.Addrs) != fmt.Sprint(want) {
		t.Fatalf("krait listens on %v, want the inherited %v", k.Addrs, want)
	}
	for _, name := range []string{"web", "local"} {
		if !strings.Contains(k.Log(), "name="+name) {
			t.Errorf("log lacks the fd name %q", name)
		}
	}
	for i := 0; i < 4; i++ { // both workers, over both sockets
		for _, r := range []osReport{getOS(t, "tcp", tl.Addr().String()), getOS(t, "unix", sock)} {
			if len(r.Env) != 0 {
				t.Errorf("a worker sees the service manager's variables: %v", r.Env)
			}
			for _, l := range r.Listening {
				if l == tl.Addr().String() || l == sock {
					t.Errorf("a worker holds krait's listener %s (inherited without close-on-exec)", l)
				}
			}
		}
	}
	if code := k.stop(); code != 0 {
		t.Errorf("exit status %d after SIGTERM, want 0", code)
	}
	// The socket file is systemd's: krait must leave it.
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("krait removed the inherited socket file: %v", err)
	}
}

// TestSystemdSocketActivationMatchesBind: an inherited socket serves the
// --bind naming its address, the other --bind is bound by krait; an
// inherited socket that no --bind names is refused at start.
func TestSystemdSocketActivationMatchesBind(t *testing.T) {
	dir := osAppDir(t)
	tl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	files := []*os.File{listenerFile(t, tl)}
	k := startCmd(t, activatedCmd(t, files, "", "osapp:application", "--chdir", dir,
		"-b", "127.0.0.1:0", "-b", tl.Addr().String()))
	if len(k.Addrs) != 2 || k.Addrs[1] != tl.Addr().String() || k.Addrs[0] == tl.Addr().String() {
		t.Fatalf("listening on %v, want [a new port, %s]", k.Addrs, tl.Addr())
	}
	if !strings.Contains(k.Log(), "msg=\"socket activation: inherited\" bind="+tl.Addr().String()) {
		t.Errorf("log does not say %s was inherited", tl.Addr())
	}
	getOS(t, "tcp", k.Addrs[0])
	getOS(t, "tcp", tl.Addr().String())
	k.stop()

	cmd := activatedCmd(t, files, "", "osapp:application", "--chdir", dir, "-b", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c2 := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c2.Dir, c2.ExtraFiles = cmd.Dir, cmd.ExtraFiles
	c2.WaitDelay = 5 * time.Second
	out, err := c2.CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "matches no --bind") {
		t.Fatalf("unmatched inherited socket: exit %d, want 1 with \"matches no --bind\"; output:\n%s", code, out)
	}
}

// notifyListener is a test NOTIFY_SOCKET collecting datagrams.
type notifyListener struct {
	mu   sync.Mutex
	msgs []string
	more chan struct{}
}

func listenNotify(t *testing.T, addr string) *notifyListener {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &notifyListener{more: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:m]))
			close(n.more)
			n.more = make(chan struct{})
			n.mu.Unlock()
		}
	}()
	return n
}

// wait waits until pred holds for the messages so far, or fails.
func (n *notifyListener) wait(t *testing.T, what string, pred func([]string) bool) []string {
	t.Helper()
	deadline := time.NewTimer(ioTimeout)
	defer deadline.Stop()
	for {
		n.mu.Lock()
		msgs, more := append([]string(nil), n.msgs...), n.more
		n.mu.Unlock()
		if pred(msgs) {
			return msgs
		}
		select {
		case <-more:
		case <-deadline.C:
			t.Fatalf("sd_notify: %s never came; got %q", what, msgs)
		}
	}
}

func withoutWatchdog(msgs []string) []string {
	var out []string
	for _, m := range msgs {
		if m != "WATCHDOG=1" {
			out = append(out, m)
		}
	}
	return out
}

// TestSystemdNotify: READY=1 with a STATUS= once the workers are ready,
// STOPPING=1 on SIGTERM, nothing else (no watchdog without
// WATCHDOG_USEC), and NOTIFY_SOCKET does not reach the workers.
func TestSystemdNotify(t *testing.T) {
	dir := osAppDir(t)
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	n := listenNotify(t, sockPath)
	cmd := kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir, "-w", "2")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath)
	k := startCmd(t, cmd)
	msgs := n.wait(t, "READY=1", func(m []string) bool { return len(m) >= 1 })
	want := "READY=1\nSTATUS=serving osapp:application with 2 worker(s)"
	if len(msgs) != 1 || msgs[0] != want {
		t.Fatalf("after ready, got %q, want [%q]", msgs, want)
	}
	if r := getOS(t, "tcp", k.Addr()); len(r.Env) != 0 {
		t.Errorf("the worker sees %v", r.Env)
	}
	k.Signal(syscall.SIGTERM)
	if code, ok := k.WaitExit(stopTimeout); !ok || code != 0 {
		t.Fatalf("exit %d (exited: %v) after SIGTERM, want 0", code, ok)
	}
	msgs = n.wait(t, "STOPPING=1", func(m []string) bool { return len(m) >= 2 })
	if len(msgs) != 2 || msgs[1] != "STOPPING=1\nSTATUS=stopping: draining requests" {
		t.Fatalf("got %q, want READY then STOPPING", msgs)
	}
}

// TestSystemdWatchdog: with WATCHDOG_USEC (and an abstract NOTIFY_SOCKET)
// krait pings WATCHDOG=1 repeatedly while it serves; WATCHDOG_PID naming
// another process turns the pings off (checked over the time the first
// krait took to ping five times).
func TestSystemdWatchdog(t *testing.T) {
	dir := osAppDir(t)
	// First a krait whose WATCHDOG_PID names another process: the
	// watchdog is not its own, it must never ping.
	other := fmt.Sprintf("@krait-test-other-%d-%d", os.Getpid(), time.Now().UnixNano())
	nOther := listenNotify(t, other)
	cmd := kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+other, "WATCHDOG_USEC=100000", "WATCHDOG_PID=1")
	kOther := startCmd(t, cmd)
	nOther.wait(t, "READY=1", func(m []string) bool { return len(m) >= 1 })

	abstract := fmt.Sprintf("@krait-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	n := listenNotify(t, abstract)
	cmd = kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+abstract, "WATCHDOG_USEC=100000")
	k := startCmd(t, cmd)
	n.wait(t, "5 WATCHDOG=1 pings", func(m []string) bool {
		c := 0
		for _, s := range m {
			if s == "WATCHDOG=1" {
				c++
			}
		}
		return c >= 5
	})
	if r := getOS(t, "tcp", k.Addr()); len(r.Env) != 0 {
		t.Errorf("the worker sees %v", r.Env)
	}
	k.stop()
	n.mu.Lock()
	got := withoutWatchdog(n.msgs)
	n.mu.Unlock()
	if len(got) != 2 || !strings.HasPrefix(got[0], "READY=1\n") || !strings.HasPrefix(got[1], "STOPPING=1\n") {
		t.Errorf("non-watchdog messages %q, want READY then STOPPING", got)
	}

	// Five periods of the other krait's watchdog have passed meanwhile.
	kOther.stop()
	nOther.mu.Lock()
	defer nOther.mu.Unlock()
	if len(nOther.msgs) != 2 {
		t.Errorf("WATCHDOG_PID=1: got %q, want only READY and STOPPING", nOther.msgs)
	}
}

func (n *notifyListener) count(msg string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if m == msg {
			c++
		}
	}
	return c
}

// TestSystemdWatchdogStopsWhenUnhealthy: while no worker is ready (the
// only worker was killed and its replacement hangs in its import) krait
// sends no WATCHDOG=1, so systemd would restart it; the pings resume once
// a worker is ready again.
func TestSystemdWatchdogStopsWhenUnhealthy(t *testing.T) {
	dir := osAppDir(t)
	gate := filepath.Join(t.TempDir(), "gate")
	abstract := fmt.Sprintf("@krait-test-unhealthy-%d-%d", os.Getpid(), time.Now().UnixNano())
	n := listenNotify(t, abstract)
	cmd := kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir, "--env", "KRAIT_TEST_GATE="+gate)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+abstract, "WATCHDOG_USEC=100000")
	k := startCmd(t, cmd)
	n.wait(t, "a WATCHDOG=1 ping", func(m []string) bool { return len(withoutWatchdog(m)) < len(m) })
	pid := getOS(t, "tcp", k.Addr()).PID

	touch(t, gate)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	k.MustWaitLog(regexp.MustCompile(`watchdog: no worker ready`))
	before := n.count("WATCHDOG=1")
	// 25 waits of 20 ms in the replacement's import: ten watchdog periods.
	waitFileMatch(t, gate+".waits", regexp.MustCompile(`\.{25}`), ioTimeout)
	if after := n.count("WATCHDOG=1"); after != before {
		t.Fatalf("%d WATCHDOG=1 pings while no worker was ready", after-before)
	}

	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	k.MustWaitLog(regexp.MustCompile(`watchdog: a worker is ready again`))
	n.wait(t, "WATCHDOG=1 again", func([]string) bool { return n.count("WATCHDOG=1") > before })
}

// TestSystemdPIDFile: --pid holds the pid once ready, a second krait with
// the same file refuses to start, and the file is gone after the stop.
func TestSystemdPIDFile(t *testing.T) {
	dir := osAppDir(t)
	pidFile := filepath.Join(t.TempDir(), "krait.pid")
	k := startCmd(t, kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir, "--pid", pidFile))
	b, err := os.ReadFile(pidFile)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(k.PID()) {
		t.Fatalf("pid file holds %q (%v), want %d", b, err, k.PID())
	}
	// The refusal comes before any Python runs: a bound of seconds is ample.
	code, _, stderr := runKrait(t, 15*time.Second, "serve", "osapp:application", "--chdir", dir, "--pid", pidFile, "-b", "127.0.0.1:0", "--python", testPython(t))
	if code != 1 || !strings.Contains(stderr, fmt.Sprintf("krait (pid %d) is already running", k.PID())) {
		t.Fatalf("second krait on the same pid file: exit %d, stderr:\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != strconv.Itoa(k.PID()) {
		t.Fatalf("the refused krait changed the pid file to %q", b)
	}
	if code := k.stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("pid file still there after exit: %v", err)
	}
	// A stale file (a pid that is not a running krait) is replaced.
	if err := os.WriteFile(pidFile, []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k = startCmd(t, kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir, "--pid", pidFile))
	if b, _ := os.ReadFile(pidFile); strings.TrimSpace(string(b)) != strconv.Itoa(k.PID()) {
		t.Fatalf("stale pid file not replaced: %q", b)
	}
}

// TestSystemdUDSMode: --uds-mode sets the unix socket's permissions.
func TestSystemdUDSMode(t *testing.T) {
	dir := osAppDir(t)
	for _, mode := range []os.FileMode{0o600, 0o666} {
		sock := filepath.Join(t.TempDir(), "m.sock")
		k := startCmd(t, kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir, "-b", "unix:"+sock, "--uds-mode", fmt.Sprintf("%o", mode)))
		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("--uds-mode %o: socket mode %o", mode, fi.Mode().Perm())
		}
		getOS(t, "unix", sock)
		k.stop()
	}
}

// TestSystemdReopenLogs: logrotate's way: rename the log files, SIGUSR1,
// and krait writes on into new files at the old paths.
func TestSystemdReopenLogs(t *testing.T) {
	dir := osAppDir(t)
	logs := t.TempDir()
	access, errLog := filepath.Join(logs, "access.log"), filepath.Join(logs, "error.log")
	k := launchCmd(t, kraitCommand(t, testPython(t), "osapp:application", "--chdir", dir, "--access-logfile", access, "--error-logfile", errLog))
	// The ready line went to the file, not to the harness: wait on the file.
	getOS(t, "tcp", mustBoundAddr(t, errLog))
	waitFileContains(t, access, "GET / ", ioTimeout)
	for _, p := range []string{access, errLog} {
		if err := os.Rename(p, p+".1"); err != nil {
			t.Fatal(err)
		}
	}
	k.Signal(syscall.SIGUSR1)
	waitFileContains(t, errLog, "log files reopened", ioTimeout)
	r, err := http.Get("http://" + mustBoundAddr(t, errLog+".1") + "/after")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	waitFileContains(t, access, "GET /after ", ioTimeout)
	if b, _ := os.ReadFile(access + ".1"); strings.Contains(string(b), "/after") || !strings.Contains(string(b), "GET / ") {
		t.Errorf("rotated access log holds %q", b)
	}
	if code := k.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
	waitFileContains(t, errLog, "msg=stopped", ioTimeout)
}

// mustBoundAddr reads the TCP address krait logged in an error log file.
func mustBoundAddr(t *testing.T, path string) string {
	t.Helper()
	m := waitFileMatch(t, path, regexp.MustCompile(`msg=listening addr=(\S+)`), readyTimeout)
	waitFileContains(t, path, "msg=ready", readyTimeout)
	return string(m[1])
}

// nobodyPython finds an interpreter the nobody account can run (the test
// venv may live under root's private home).
func nobodyPython(t *testing.T) string {
	t.Helper()
	cands := []string{testPython(t), "/usr/bin/python3", "/usr/local/bin/python3"}
	for _, p := range cands {
		cmd := exec.Command(p, "-c", "import json, socket")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if cmd.Run() == nil {
			return p
		}
	}
	t.Skipf("no Python interpreter among %v can be run by uid 65534", cands)
	return ""
}

// TestSystemdUserGroup (root only): krait binds, then drops to
// nobody:nogroup; the workers run as nobody and the port still serves.
func TestSystemdUserGroup(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to drop privileges")
	}
	dir := osAppDir(t)
	python := nobodyPython(t)
	sockDir, err := os.MkdirTemp("", "krait-uds-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "u.sock")
	k := startCmd(t, kraitCommand(t, python, "osapp:application", "--chdir", dir, "--user", "nobody", "--group", "65534",
		"-b", "127.0.0.1:0", "-b", "unix:"+sock))
	r := getOS(t, "tcp", k.Addr())
	if r.UID != 65534 || r.EUID != 65534 || r.GID != 65534 || r.EGID != 65534 {
		t.Errorf("worker runs as uid %d/%d gid %d/%d, want 65534", r.UID, r.EUID, r.GID, r.EGID)
	}
	if r.Home != "/nonexistent" {
		t.Errorf("worker HOME=%q, want nobody's /nonexistent", r.Home)
	}
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", k.PID()))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
			for _, id := range f[1:] {
				if id != "65534" {
					t.Errorf("krait itself: %s", line)
					break
				}
			}
		}
		if strings.HasPrefix(line, "Groups:") && strings.TrimSpace(strings.TrimPrefix(line, "Groups:")) != "65534" {
			t.Errorf("krait keeps supplementary groups: %s", line)
		}
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if s := fi.Sys().(*syscall.Stat_t); s.Uid != 65534 || s.Gid != 65534 {
		t.Errorf("unix socket owned by %d:%d, want 65534:65534", s.Uid, s.Gid)
	}
	getOS(t, "unix", sock)
	if code := k.stop(); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// unquoteExec splits an Exec*= line the way systemd does (systemd.syntax(7)
// quoting, C escapes, "%%" and "$$"), for the subset Quote produces.
func unquoteExec(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\':
			i++
			switch line[i] {
			case 'n':
				cur.WriteByte('\n')
			case 't':
				cur.WriteByte('\t')
			case 'x':
				v, err := strconv.ParseUint(line[i+1:i+3], 16, 8)
				if err != nil {
					t.Fatalf("bad escape in %q", line)
				}
				cur.WriteByte(byte(v))
				i += 2
			default:
				cur.WriteByte(line[i])
			}
		case c == '"':
			quoted, inWord = !quoted, true
		case !quoted && c == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case (c == '%' || c == '$') && i+1 < len(line) && line[i+1] == c:
			cur.WriteByte(c)
			inWord = true
			i++
		case c == '%' || c == '$':
			t.Fatalf("unescaped %c in %q", c, line)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestSystemdUnit: `krait systemd-unit --socket` prints a service unit
// (Type=notify, ExecStart= giving back exactly the flags, timeouts above
// the graceful timeout) and a socket unit with a ListenStream= per bind;
// systemd-analyze verify accepts both when it is installed.
func TestSystemdUnit(t *testing.T) {
	python := testPython(t)
	weird := `X=a b"c\d$HOME%n` + "\t'"
	args := []string{"systemd-unit", "--socket", "--unit-name", "krait-test", "wsgiapp.app:application", "-b", "127.0.0.1:8123",
		"-b", "unix:/run/krait-test.sock", "--uds-mode", "0660", "--env", weird, "--graceful-timeout", "40", "--python", python}
	code, out, stderr := runKrait(t, ioTimeout, args...)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	service, socket, ok := strings.Cut(out, "\n# ---- krait-test.socket\n")
	if !ok {
		t.Fatalf("no socket unit in:\n%s", out)
	}
	keys := func(unit string) map[string][]string {
		m := map[string][]string{}
		sc := bufio.NewScanner(strings.NewReader(unit))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(sc.Text(), "#") {
				m[k] = append(m[k], v)
			}
		}
		return m
	}
	sk := keys(service)
	for k, want := range map[string]string{"Type": "notify", "NotifyAccess": "main", "KillMode": "mixed", "Restart": "on-failure",
		"WatchdogSec": "30", "TimeoutStopSec": "55", "WorkingDirectory": repoRoot, "Requires": "krait-test.socket", "NoNewPrivileges": "yes"} {
		if got := sk[k]; len(got) != 1 || got[0] != want {
			t.Errorf("%s=%v, want %s", k, got, want)
		}
	}
	argv := unquoteExec(t, sk["ExecStart"][0])
	wantArgv := append([]string{kraitBin, "serve"}, args[4:len(args)-2]...)
	wantArgv = append(wantArgv, "--python", python)
	if fmt.Sprintf("%q", argv) != fmt.Sprintf("%q", wantArgv) {
		t.Errorf("ExecStart= gives\n%q\nwant\n%q", argv, wantArgv)
	}
	ok2 := keys(socket)
	if got := ok2["ListenStream"]; fmt.Sprint(got) != "[127.0.0.1:8123 /run/krait-test.sock]" {
		t.Errorf("ListenStream=%q", got)
	}
	if got := ok2["SocketMode"]; len(got) != 1 || got[0] != "0660" {
		t.Errorf("SocketMode=%q", got)
	}

	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Logf("systemd-analyze not installed: keys checked, verify skipped")
		return
	}
	dir := t.TempDir()
	sp, kp := filepath.Join(dir, "krait-test.service"), filepath.Join(dir, "krait-test.socket")
	if err := os.WriteFile(sp, []byte(service), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp, []byte(socket), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	vout, err := exec.CommandContext(ctx, "systemd-analyze", "verify", sp, kp).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(vout))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, vout)
	}

	// Binds systemd cannot open are refused.
	for _, bad := range []string{"localhost:8000", "127.0.0.1:0"} {
		code, _, stderr := runKrait(t, ioTimeout, "systemd-unit", "--socket", "app:app", "-b", bad, "--python", python)
		if code != 2 || !strings.Contains(stderr, "socket activation needs") {
			t.Errorf("--socket -b %s: exit %d, stderr %q", bad, code, stderr)
		}
	}
}
