package systemd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/config"
)

// unquote splits an Exec*= line as systemd does, for what Quote produces.
func unquote(t *testing.T, line string) []string {
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
					t.Fatalf("bad \\x in %q", line)
				}
				cur.WriteByte(byte(v))
				i += 2
			case '\\', '"':
				cur.WriteByte(line[i])
			default:
				t.Fatalf("unknown escape \\%c in %q", line[i], line)
			}
		case c == '"':
			quoted, inWord = !quoted, true
		case !quoted && (c == ' ' || c == '\t' || c == '\\' || c == '\''):
			if c != ' ' {
				t.Fatalf("unquoted %q in %q", c, line)
			}
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '%' || c == '$':
			if i+1 >= len(line) || line[i+1] != c {
				t.Fatalf("unescaped %c in %q", c, line)
			}
			cur.WriteByte(c)
			inWord = true
			i++
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in %q", line)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestQuoteRoundTrip(t *testing.T) {
	args := []string{"serve", "app:app", "", " ", "a b", `"`, `\`, "$HOME", "${X}", "%n", "100%%", "tab\there",
		"new\nline", "bell\a", "'single'", ";", "ünï", "--env=K=V", "-b", "[::1]:80", "unix:/run/k.sock"}
	var words []string
	for _, a := range args {
		words = append(words, Quote(a))
	}
	got := unquote(t, strings.Join(words, " "))
	if len(got) != len(args) {
		t.Fatalf("%d words back, want %d: %q", len(got), len(args), got)
	}
	for i := range args {
		if got[i] != args[i] {
			t.Errorf("word %d: %q came back as %q (quoted %s)", i, args[i], got[i], words[i])
		}
	}
	if Quote("plain-arg") != "plain-arg" {
		t.Errorf("plain word quoted: %s", Quote("plain-arg"))
	}
}

func TestMatchBinds(t *testing.T) {
	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ux, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	port := strconv.Itoa(tcp.Addr().(*net.TCPAddr).Port)
	ls := []Listener{{Listener: tcp, Name: "a"}, {Listener: ux, Name: "b"}}
	bind := func(s string) config.Bind {
		b, err := config.ParseBind(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		binds   []string
		matched []int // index into ls per bind, -1 none
		unused  int
	}{
		{[]string{"127.0.0.1:" + port, "unix:" + sock}, []int{0, 1}, 0},
		{[]string{"unix:" + sock, "127.0.0.1:" + port}, []int{1, 0}, 0},
		{[]string{"localhost:" + port}, []int{0}, 1},
		{[]string{"127.0.0.2:" + port, "127.0.0.1:0"}, []int{-1, -1}, 2},
		{[]string{"0.0.0.0:" + port}, []int{-1}, 2},
		{[]string{"[::1]:" + port}, []int{-1}, 2},
	} {
		var bs []config.Bind
		for _, s := range tc.binds {
			bs = append(bs, bind(s))
		}
		got, unused := MatchBinds(context.Background(), bs, ls)
		for i, want := range tc.matched {
			if (want < 0) != (got[i] == nil) || want >= 0 && got[i] != ls[want].Listener {
				t.Errorf("%v: bind %d matched %v, want listener %d", tc.binds, i, got[i], want)
			}
		}
		if len(unused) != tc.unused {
			t.Errorf("%v: %d unused, want %d", tc.binds, len(unused), tc.unused)
		}
	}
	for l, want := range map[net.Listener]string{tcp: tcp.Addr().String(), ux: "unix:" + sock} {
		if b, err := BindOf(l); err != nil || b.String() != want {
			t.Errorf("BindOf(%s) = %v, %v, want %s", l.Addr(), b, err, want)
		}
	}
}

func TestTakeUnsetsAndChecksPID(t *testing.T) {
	for _, k := range variables {
		t.Setenv(k, "")
	}
	// Another process's sockets: ignored, but the variables still go.
	t.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()+1))
	t.Setenv("LISTEN_FDS", "2")
	t.Setenv("NOTIFY_SOCKET", "@x")
	t.Setenv("WATCHDOG_USEC", "4000000")
	e, err := Take()
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Files) != 0 || e.Notifier == nil || e.Watchdog != 4*time.Second {
		t.Errorf("Take = %+v", e)
	}
	for _, k := range variables {
		if _, ok := os.LookupEnv(k); ok {
			t.Errorf("%s still set", k)
		}
	}

	t.Setenv("WATCHDOG_USEC", "4000000")
	t.Setenv("WATCHDOG_PID", "1")
	t.Setenv("NOTIFY_SOCKET", "relative")
	if e, err := Take(); err == nil || e.Watchdog != 0 || e.Notifier != nil {
		t.Errorf("WATCHDOG_PID=1, NOTIFY_SOCKET=relative: %+v, %v", e, err)
	}
}

func TestTakeInheritsCloseOnExec(t *testing.T) {
	if os.Getenv("KRAIT_SYSTEMD_HELPER") == "1" {
		inheritHelper()
		return
	}
	// A child gets a listening socket as fd 3, as systemd passes it.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTakeInheritsCloseOnExec$")
	cmd.Env = append(os.Environ(), "KRAIT_SYSTEMD_HELPER=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=web")
	cmd.ExtraFiles = []*os.File{f}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if want := "inherited web " + l.Addr().String() + " cloexec\n"; !strings.Contains(string(out), want) {
		t.Fatalf("helper said %q, want %q", out, want)
	}
}

// inheritHelper runs in the child of TestTakeInheritsCloseOnExec.
func inheritHelper() {
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	e, err := Take()
	if err != nil || len(e.Files) != 1 {
		fmt.Printf("Take: %+v, %v\n", e, err)
		return
	}
	flags, _, errno := syscall.Syscall(syscall.SYS_FCNTL, 3, syscall.F_GETFD, 0)
	cloexec := errno == 0 && flags&syscall.FD_CLOEXEC != 0
	name := e.Files[0].Name()
	ls, err := e.Inherited()
	if err != nil || len(ls) != 1 {
		fmt.Printf("Inherited: %v, %v\n", ls, err)
		return
	}
	if cloexec {
		fmt.Printf("inherited %s %s cloexec\n", name, ls[0].Addr())
	}
}

func TestNotifier(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := NewNotifier(path)
	if err != nil {
		t.Fatal(err)
	}
	read := func() string {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 1024)
		m, err := c.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(b[:m])
	}
	ctx := context.Background()
	if err := n.Ready(ctx, "up\nnow"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "READY=1\nSTATUS=up now" {
		t.Errorf("Ready sent %q", got)
	}
	before := monotonicUsec()
	if err := n.Reloading(ctx, "reloading"); err != nil {
		t.Fatal(err)
	}
	got := read()
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") || lines[2] != "STATUS=reloading" {
		t.Fatalf("Reloading sent %q", got)
	}
	us, _ := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if us < before || us > monotonicUsec() {
		t.Errorf("MONOTONIC_USEC=%d not between %d and now", us, before)
	}
	if err := n.Stopping(ctx, "bye"); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "STOPPING=1\nSTATUS=bye" {
		t.Errorf("Stopping sent %q", got)
	}
	var nilN *Notifier
	if err := nilN.Ready(ctx, "x"); err != nil {
		t.Errorf("nil Notifier: %v", err)
	}

	// The watchdog pings only while healthy.
	wctx, cancel := context.WithCancel(ctx)
	healthy := make(chan bool, 1)
	healthy <- false
	calls := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.Watchdog(wctx, 2*time.Millisecond, func() bool {
			calls++
			if calls == 1 {
				return <-healthy // the first tick: unhealthy, no ping
			}
			return true
		}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	if got := read(); got != "WATCHDOG=1" {
		t.Errorf("watchdog sent %q", got)
	}
	cancel()
	<-done
	if calls < 2 {
		t.Errorf("healthy() called %d times before the first ping, want >= 2", calls)
	}
}

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pid")
	p, err := WritePIDFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != strconv.Itoa(os.Getpid())+"\n" {
		t.Errorf("pid file holds %q", b)
	}
	// A newer process took the file over: leave it.
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Remove deleted another process's pid file: %v", err)
	}
	// Pid 1 is alive but not this program (init, not the test binary): stale.
	p, err = WritePIDFile(path)
	if err != nil {
		t.Fatalf("pid 1's file refused: %v", err)
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid file still there: %v", err)
	}
}

func TestLogFileReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := io.WriteString(l, "one\n"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(l, "two\n"); err != nil {
		t.Fatal(err)
	}
	if a, _ := os.ReadFile(path + ".1"); string(a) != "one\n" {
		t.Errorf("old file holds %q", a)
	}
	if b, _ := os.ReadFile(path); string(b) != "two\n" {
		t.Errorf("new file holds %q", b)
	}
}

func TestLookupCredentials(t *testing.T) {
	c, err := LookupCredentials("root", "")
	if err != nil || c.UID != 0 || c.GID != 0 || c.Name != "root" {
		t.Errorf("root: %+v, %v", c, err)
	}
	c, err = LookupCredentials("0", "12345")
	if err != nil || c.UID != 0 || c.GID != 12345 {
		t.Errorf("0:12345: %+v, %v", c, err)
	}
	if _, err := LookupCredentials("no-such-user-krait", ""); err == nil {
		t.Error("unknown user accepted")
	}
	if _, err := LookupCredentials("54321", ""); err == nil || !strings.Contains(err.Error(), "--group") {
		t.Errorf("uid without account or --group: %v", err)
	}
	if c, err := LookupCredentials("54321", "54321"); err != nil || c.UID != 54321 || c.GID != 54321 {
		t.Errorf("54321:54321: %+v, %v", c, err)
	}
}

func TestSocketUnitRefusesUnbindable(t *testing.T) {
	for _, s := range []string{"localhost:80", "127.0.0.1:0"} {
		b, _ := config.ParseBind(s)
		if _, err := SocketUnit(UnitOptions{Name: "k", Binds: []config.Bind{b}}); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
	b, _ := config.ParseBind(":8080")
	out, err := SocketUnit(UnitOptions{Name: "k", Binds: []config.Bind{b}})
	if err != nil || !strings.Contains(out, "\nListenStream=8080\n") {
		t.Errorf(":8080: %v\n%s", err, out)
	}
}
