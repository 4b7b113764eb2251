package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestKeepAliveAndPipelining(t *testing.T) {
	k, _ := startWSGI(t)
	t.Run("keep-alive", func(t *testing.T) {
		c := dial(t, k.Addr())
		setDeadline(c)
		br := bufio.NewReader(c)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(c, "GET /echo/ka%d HTTP/1.1\r\nHost: t\r\n\r\n", i)
			resps, err := readResponses(br, 1, "GET")
			if len(resps) != 1 || resps[0].Status != 200 {
				t.Fatalf("request %d on the kept-alive connection: %v %v", i, resps, err)
			}
			if env := echoInfo(t, string(resps[0].Body)); env["PATH_INFO"] != fmt.Sprintf("/echo/ka%d", i) {
				t.Errorf("request %d answered for %v", i, env["PATH_INFO"])
			}
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		c := dial(t, k.Addr())
		setDeadline(c)
		var all strings.Builder
		for i := 0; i < 5; i++ {
			if i == 2 {
				all.WriteString("POST /echo/p2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody")
				continue
			}
			fmt.Fprintf(&all, "GET /echo/p%d HTTP/1.1\r\nHost: t\r\n\r\n", i)
		}
		io.WriteString(c, all.String()) // every request in one write
		resps, err := readResponses(bufio.NewReader(c), 5, "GET")
		if len(resps) != 5 {
			t.Fatalf("got %d of 5 pipelined responses: %v", len(resps), err)
		}
		for i, r := range resps {
			env := echoInfo(t, string(r.Body))
			if env["PATH_INFO"] != fmt.Sprintf("/echo/p%d", i) {
				t.Errorf("response %d is for %v: out of order", i, env["PATH_INFO"])
			}
		}
	})
	t.Run("HTTP/1.0 closes", func(t *testing.T) {
		c := dial(t, k.Addr())
		io.WriteString(c, "GET /hello HTTP/1.0\r\n\r\n")
		all, err := readAllUntilClose(c, ioTimeout)
		if err != nil {
			t.Fatalf("HTTP/1.0 connection not closed after the response: %v", err)
		}
		if !strings.HasPrefix(string(all), "HTTP/1.") || !strings.HasSuffix(string(all), "Hello, world!\n") {
			t.Errorf("response:\n%s", all)
		}
	})
}

// anyRejection in a test table accepts a 4xx status or a closed connection.
const anyRejection = -1

func TestRequestLimits(t *testing.T) {
	k, _ := startWSGI(t, "--limit-request-line", "1024", "--limit-request-fields", "20", "--limit-request-field_size", "512")
	many := strings.Repeat("X-Many: h\r\n", 21)
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{"request line too long", "GET /" + strings.Repeat("a", 1100) + " HTTP/1.1\r\nHost: t\r\n\r\n", 414},
		{"request line at the limit is fine", "GET /echo" + strings.Repeat("a", 1000) + " HTTP/1.1\r\nHost: t\r\n\r\n", 200},
		{"too many header fields", "GET /hello HTTP/1.1\r\nHost: t\r\n" + many + "\r\n", 431},
		{"header field too long", "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: " + strings.Repeat("b", 600) + "\r\n\r\n", 431},
		{"no Host in HTTP/1.1", "GET /hello HTTP/1.1\r\n\r\n", 400},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n", anyRejection},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, k.Addr())
			io.WriteString(c, tc.raw)
			setDeadline(c)
			resps, err := readResponses(bufio.NewReader(c), 1, "GET")
			if tc.status == anyRejection {
				if len(resps) == 1 && (resps[0].Status < 400 || resps[0].Status > 499) {
					t.Errorf("status %d, want 4xx or a closed connection", resps[0].Status)
				}
				return
			}
			if len(resps) != 1 {
				t.Fatalf("no response: %v", err)
			}
			if resps[0].Status != tc.status {
				t.Errorf("status %d, want %d", resps[0].Status, tc.status)
			}
		})
	}
}

var combinedRE = regexp.MustCompile(`^127\.0\.0\.1 - - \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] ` +
	`"GET /hello\?q=1&r=%20 HTTP/1\.1" 200 14 "http://referer\.example/page" "krait-test/1\.0 \(integration\)" "[0-9a-f]{32}"$`)

func TestAccessLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	k, _ := startWSGI(t, "--access-logfile", logPath)
	req := mustRequest(t, "GET", k.URL("/hello?q=1&r=%20"), nil)
	req.Header.Set("Referer", "http://referer.example/page")
	req.Header.Set("User-Agent", "krait-test/1.0 (integration)")
	if resp, _ := k.Do(req); resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	r404 := mustRequest(t, "GET", k.URL("/nope"), nil)
	r404.Header.Set("User-Agent", "second")
	k.Do(r404)

	waitFileContains(t, logPath, `"second"`, ioTimeout)
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 access log lines, got %d:\n%s", len(lines), b)
	}
	if !combinedRE.MatchString(lines[0]) {
		t.Errorf("access log line not in combined format:\n %s\nwant %s", lines[0], combinedRE)
	}
	if !regexp.MustCompile(`"GET /nope HTTP/1\.1" 404 \d+ "-" "second" "[0-9a-f]{32}"$`).MatchString(lines[1]) {
		t.Errorf("second line: %s", lines[1])
	}
	if strings.Contains(k.Log(), "GET /hello?q=1") {
		t.Errorf("access log lines leaked into the error log")
	}
}

func TestUnixSocketBind(t *testing.T) {
	// Socket paths are limited to ~107 bytes: keep it short.
	dir, err := os.MkdirTemp("", "krait")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "k.sock")
	k, _ := startWSGI(t, "-b", "unix:"+sock)
	if len(k.Addrs) != 1 || k.Addrs[0] != "unix:"+sock {
		t.Fatalf("listening on %v, want [unix:%s]", k.Addrs, sock)
	}
	client := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://krait.local/echo/unix")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	env := echoInfo(t, string(body))
	if env["PATH_INFO"] != "/echo/unix" || env["HTTP_HOST"] != "krait.local" {
		t.Errorf("environ over a unix socket: PATH_INFO=%v HTTP_HOST=%v", env["PATH_INFO"], env["HTTP_HOST"])
	}
	// The socket file goes away when krait stops.
	client.CloseIdleConnections()
	if code := k.stop(); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if _, err := os.Stat(sock); err == nil {
		t.Errorf("%s still exists after krait stopped", sock)
	}
}

func TestTwoBinds(t *testing.T) {
	k, _ := startWSGI(t, "-b", "127.0.0.1:0", "--bind", "127.0.0.1:0")
	if len(k.Addrs) != 2 || k.Addrs[0] == k.Addrs[1] {
		t.Fatalf("listening on %v, want two addresses", k.Addrs)
	}
	for _, a := range k.Addrs {
		resp, err := k.Client().Get("http://" + a + "/hello")
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "Hello, world!\n" {
			t.Errorf("%s: %d %q", a, resp.StatusCode, b)
		}
	}
}

func TestIPv6Bind(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	ln.Close()
	k, _ := startWSGI(t, "-b", "[::1]:0")
	if len(k.Addrs) != 1 || !strings.HasPrefix(k.Addrs[0], "[::1]:") {
		t.Fatalf("listening on %v", k.Addrs)
	}
	resp, err := k.Client().Get("http://" + k.Addrs[0] + "/echo/v6")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	env := echoInfo(t, string(b))
	if env["REMOTE_ADDR"] != "::1" {
		t.Errorf("REMOTE_ADDR = %v, want ::1", env["REMOTE_ADDR"])
	}
}

func TestIdleKeepAliveClosed(t *testing.T) {
	k, _ := startWSGI(t, "--keep-alive", "1")
	c := dial(t, k.Addr())
	io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
	setDeadline(c)
	br := bufio.NewReader(c)
	if resps, err := readResponses(br, 1, "GET"); len(resps) != 1 {
		t.Fatalf("no response: %v", err)
	}
	// krait must close the idle connection by itself (well before our deadline).
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := br.Read(make([]byte, 1)); err == nil {
		t.Errorf("read %d bytes on an idle connection, want close", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Errorf("idle keep-alive connection still open after %v", ioTimeout)
	}
}
