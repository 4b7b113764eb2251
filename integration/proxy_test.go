package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// proxyGet sends one GET with extra header lines on c (keep-alive) and
// returns the response.
func proxyGet(t *testing.T, c net.Conn, br *bufio.Reader, path string, headers ...string) (*http.Response, string) {
	t.Helper()
	setDeadline(c)
	req := "GET " + path + " HTTP/1.1\r\nHost: app.test\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// The issue: behind a TLS-terminating proxy on 127.0.0.1 sending
// X-Forwarded-Proto: https, Django's request.is_secure() must be True (as
// under gunicorn's defaults) and REMOTE_ADDR the client's; the access
// log names the client; the next request on the same connection without
// the headers sees the proxy again.
func TestForwardedDjangoBehindTLSProxy(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	k := startKrait(t, []string{"django"}, "mysite.wsgi:application", "--chdir", testdataDir("djangoproject"),
		"--access-logfile", logPath)
	c := dial(t, k.Addr())
	defer c.Close()
	br := bufio.NewReader(c)

	host := "Host: 127.0.0.1" // in Django's ALLOWED_HOSTS
	resp, body := proxyGetHost(t, c, br, "/info/", host, "X-Forwarded-Proto: https", "X-Forwarded-For: 6.6.6.6, 203.0.113.7")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	m := decodeJSON(t, body)
	if m["scheme"] != "https" || m["remote_addr"] != "203.0.113.7" || m["absolute_uri"] != "https://127.0.0.1/info/" {
		t.Errorf("behind the proxy Django saw scheme=%v remote_addr=%v absolute_uri=%v; want https, 203.0.113.7, https://127.0.0.1/info/",
			m["scheme"], m["remote_addr"], m["absolute_uri"])
	}
	resp, body = proxyGetHost(t, c, br, "/info/", host)
	m = decodeJSON(t, body)
	if resp.StatusCode != 200 || m["scheme"] != "http" || m["remote_addr"] != "127.0.0.1" {
		t.Errorf("next request on the connection, without headers: %d scheme=%v remote_addr=%v; want http, 127.0.0.1",
			resp.StatusCode, m["scheme"], m["remote_addr"])
	}
	m2 := waitFileMatch(t, logPath, regexp.MustCompile(`(?m)^(.*GET /info/.*)\n(.*GET /info/.*)\n`), readyTimeout)
	got := []string{string(m2[1]), string(m2[2])}
	if len(got) != 2 || !strings.HasPrefix(got[0], "203.0.113.7 ") || !strings.HasPrefix(got[1], "127.0.0.1 ") {
		t.Errorf("access log lines %q: want the client 203.0.113.7, then 127.0.0.1", got)
	}
}

// proxyGetHost is proxyGet with the Host line given by the caller.
func proxyGetHost(t *testing.T, c net.Conn, br *bufio.Reader, path, host string, headers ...string) (*http.Response, string) {
	t.Helper()
	setDeadline(c)
	req := "GET " + path + " HTTP/1.1\r\n" + host + "\r\n"
	for _, h := range headers {
		req += h + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// FastAPI's request.client is the client, as under uvicorn.
func TestForwardedFastAPIClient(t *testing.T) {
	k := startKrait(t, []string{"fastapi", "python_multipart"}, "app:app", "--chdir", testdataDir("fastapiapp"))
	c := dial(t, k.Addr())
	defer c.Close()
	resp, body := proxyGet(t, c, bufio.NewReader(c), "/sync", "X-Forwarded-For: 203.0.113.7")
	if resp.StatusCode != 200 || decodeJSON(t, body)["client"] != "203.0.113.7" {
		t.Fatalf("%d %s: want client 203.0.113.7", resp.StatusCode, body)
	}
}

// The raw ASGI scope: client (port 0, as uvicorn), scheme, headers kept.
func TestForwardedASGIScope(t *testing.T) {
	k, _ := startASGI(t, "")
	c := dial(t, k.Addr())
	defer c.Close()
	resp, body := proxyGet(t, c, bufio.NewReader(c), "/scope", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var v struct {
		Scope struct {
			Client  []any      `json:"client"`
			Scheme  string     `json:"scheme"`
			Headers [][]string `json:"headers"`
		} `json:"scope"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(v.Scope.Client) != 2 || v.Scope.Client[0] != "203.0.113.7" || v.Scope.Client[1] != float64(0) || v.Scope.Scheme != "https" {
		t.Errorf("scope client=%v scheme=%q, want [203.0.113.7 0] https", v.Scope.Client, v.Scope.Scheme)
	}
	kept := 0
	for _, h := range v.Scope.Headers {
		if h[0] == "x-forwarded-for" || h[0] == "x-forwarded-proto" {
			kept++
		}
	}
	if kept != 2 {
		t.Errorf("forwarding headers in the scope: %d, want both kept: %v", kept, v.Scope.Headers)
	}
}

// Headers from a peer outside --forwarded-allow-ips are not applied.
func TestForwardedUntrustedPeerIgnored(t *testing.T) {
	k, _ := startWSGI(t, "--forwarded-allow-ips", "10.0.0.1")
	c := dial(t, k.Addr())
	defer c.Close()
	_, body := proxyGet(t, c, bufio.NewReader(c), "/echo", "X-Forwarded-For: 203.0.113.7", "X-Forwarded-Proto: https")
	env := echoInfo(t, body)
	if env["REMOTE_ADDR"] != "127.0.0.1" || env["wsgi.url_scheme"] != "http" {
		t.Errorf("untrusted peer: REMOTE_ADDR=%v url_scheme=%v, want 127.0.0.1 http", env["REMOTE_ADDR"], env["wsgi.url_scheme"])
	}
}

// FORWARDED_ALLOW_IPS is read as gunicorn and uvicorn read it, and the
// flag wins over it.
func TestForwardedAllowIPsEnv(t *testing.T) {
	for _, tt := range []struct {
		env  string
		args []string
		want string
	}{
		{env: "10.0.0.1, 127.0.0.0/8", want: "203.0.113.7"},
		{env: "10.0.0.1", want: "127.0.0.1"},
		{env: "10.0.0.1", args: []string{"--forwarded-allow-ips", "*"}, want: "203.0.113.7"},
	} {
		t.Run(tt.env+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			t.Setenv("FORWARDED_ALLOW_IPS", tt.env)
			k, _ := startWSGI(t, tt.args...)
			c := dial(t, k.Addr())
			defer c.Close()
			_, body := proxyGet(t, c, bufio.NewReader(c), "/echo", "X-Forwarded-For: 203.0.113.7")
			if env := echoInfo(t, body); env["REMOTE_ADDR"] != tt.want {
				t.Errorf("REMOTE_ADDR=%v, want %s", env["REMOTE_ADDR"], tt.want)
			}
		})
	}
}

// X-Forwarded-Host is applied only when enabled, and then is the Host the
// app sees (HTTP_HOST, SERVER_NAME, SERVER_PORT).
func TestForwardedHost(t *testing.T) {
	t.Run("off by default", func(t *testing.T) {
		k, _ := startWSGI(t)
		c := dial(t, k.Addr())
		defer c.Close()
		_, body := proxyGet(t, c, bufio.NewReader(c), "/echo", "X-Forwarded-Host: www.example.com")
		if env := echoInfo(t, body); env["HTTP_HOST"] != "app.test" {
			t.Errorf("HTTP_HOST=%v, want app.test", env["HTTP_HOST"])
		}
	})
	t.Run("enabled", func(t *testing.T) {
		k, _ := startWSGI(t, "--forwarded-headers", "x-forwarded-for,x-forwarded-proto,x-forwarded-host")
		c := dial(t, k.Addr())
		defer c.Close()
		_, body := proxyGet(t, c, bufio.NewReader(c), "/echo", "X-Forwarded-Host: www.example.com:8443", "X-Forwarded-Proto: https")
		env := echoInfo(t, body)
		if env["HTTP_HOST"] != "www.example.com:8443" || env["SERVER_NAME"] != "www.example.com" || env["SERVER_PORT"] != "8443" ||
			env["HTTP_X_FORWARDED_HOST"] != "www.example.com:8443" || env["wsgi.url_scheme"] != "https" {
			t.Errorf("HTTP_HOST=%v SERVER_NAME=%v SERVER_PORT=%v HTTP_X_FORWARDED_HOST=%v url_scheme=%v",
				env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"], env["HTTP_X_FORWARDED_HOST"], env["wsgi.url_scheme"])
		}
	})
}

// RFC 7239 Forwarded, when enabled.
func TestForwardedRFC7239(t *testing.T) {
	k, _ := startWSGI(t, "--forwarded-headers", "forwarded")
	c := dial(t, k.Addr())
	defer c.Close()
	_, body := proxyGet(t, c, bufio.NewReader(c), "/echo", `Forwarded: for=6.6.6.6, for="[2001:db8::1]:4711";proto=https;host=example.org`)
	env := echoInfo(t, body)
	if env["REMOTE_ADDR"] != "2001:db8::1" || env["REMOTE_PORT"] != "4711" || env["wsgi.url_scheme"] != "https" || env["HTTP_HOST"] != "example.org" {
		t.Errorf("REMOTE_ADDR=%v REMOTE_PORT=%v url_scheme=%v HTTP_HOST=%v", env["REMOTE_ADDR"], env["REMOTE_PORT"], env["wsgi.url_scheme"], env["HTTP_HOST"])
	}
}

func proxyV2TCP4(src, dst string, sp, dp uint16) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c")
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b = append(append(b, s[:]...), d[:]...)
	b = binary.BigEndian.AppendUint16(b, sp)
	return binary.BigEndian.AppendUint16(b, dp)
}

// --proxy-protocol: the PROXY header's addresses are the request's; a
// connection without one is closed unanswered; LOCAL health checks are
// served with the real addresses.
func TestProxyProtocol(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	k, _ := startWSGI(t, "--proxy-protocol", "--access-logfile", logPath)

	t.Run("v1, keep-alive", func(t *testing.T) {
		c := dial(t, k.Addr())
		defer c.Close()
		setDeadline(c)
		if _, err := io.WriteString(c, "PROXY TCP4 203.0.113.7 198.51.100.1 56324 443\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		for i := 0; i < 2; i++ {
			_, body := proxyGet(t, c, br, "/echo")
			env := echoInfo(t, body)
			if env["REMOTE_ADDR"] != "203.0.113.7" || env["REMOTE_PORT"] != "56324" {
				t.Errorf("request %d: REMOTE_ADDR=%v REMOTE_PORT=%v", i, env["REMOTE_ADDR"], env["REMOTE_PORT"])
			}
		}
	})
	t.Run("v2 with an HTTP/1.0 request: SERVER_NAME from the header's destination", func(t *testing.T) {
		c := dial(t, k.Addr())
		defer c.Close()
		setDeadline(c)
		msg := append(proxyV2TCP4("203.0.113.8", "198.51.100.1", 4711, 8443), "GET /echo HTTP/1.0\r\n\r\n"...)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		env := echoInfo(t, string(b))
		if env["REMOTE_ADDR"] != "203.0.113.8" || env["REMOTE_PORT"] != "4711" || env["SERVER_NAME"] != "198.51.100.1" || env["SERVER_PORT"] != "8443" {
			t.Errorf("REMOTE_ADDR=%v REMOTE_PORT=%v SERVER_NAME=%v SERVER_PORT=%v", env["REMOTE_ADDR"], env["REMOTE_PORT"], env["SERVER_NAME"], env["SERVER_PORT"])
		}
	})
	t.Run("v2 LOCAL health check", func(t *testing.T) {
		c := dial(t, k.Addr())
		defer c.Close()
		setDeadline(c)
		if _, err := c.Write([]byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")); err != nil {
			t.Fatal(err)
		}
		_, body := proxyGet(t, c, bufio.NewReader(c), "/echo")
		if env := echoInfo(t, body); env["REMOTE_ADDR"] != "127.0.0.1" {
			t.Errorf("LOCAL: REMOTE_ADDR=%v, want the real peer 127.0.0.1", env["REMOTE_ADDR"])
		}
	})
	t.Run("no header: closed unanswered", func(t *testing.T) {
		c := dial(t, k.Addr())
		defer c.Close()
		setDeadline(c)
		if _, err := io.WriteString(c, "GET /echo HTTP/1.1\r\nHost: app.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		closedUnanswered(t, c)
	})
	t.Run("access log names the client", func(t *testing.T) {
		waitFileContains(t, logPath, "203.0.113.8 - - ", readyTimeout)
	})
}

// --proxy-protocol refuses peers outside --forwarded-allow-ips.
func TestProxyProtocolUntrustedPeer(t *testing.T) {
	k, _ := startWSGI(t, "--proxy-protocol", "--forwarded-allow-ips", "10.0.0.1")
	c := dial(t, k.Addr())
	defer c.Close()
	setDeadline(c)
	if _, err := io.WriteString(c, "PROXY TCP4 203.0.113.7 198.51.100.1 1 2\r\nGET /echo HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	closedUnanswered(t, c)
	k.MustWaitLog(regexp.MustCompile(`PROXY protocol: connection refused.*not trusted`))
}

// closedUnanswered asserts that krait closed c (EOF, or a reset since the
// request was left unread) without writing a byte.
func closedUnanswered(t *testing.T, c net.Conn) {
	t.Helper()
	got, err := readAllUntilClose(c, ioTimeout)
	var ne net.Error
	if len(got) != 0 || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("got %q, %v: want the connection closed without a response", got, err)
	}
}

// Bad values are usage errors naming the flag.
func TestForwardedFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		reason string
	}{
		{[]string{"--forwarded-allow-ips", "localhost"}, "not an IP address or CIDR prefix"},
		{[]string{"--forwarded-allow-ips", "10.0.0.0/33"}, "not an IP address or CIDR prefix"},
		{[]string{"--forwarded-headers", "x-real-ip"}, `"x-real-ip": want x-forwarded-for`},
	} {
		code, _, stderr := runKrait(t, readyTimeout, append([]string{"serve", "app:application", "--chdir", testdataDir("wsgiapp")}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.args[0]+": ") || !strings.Contains(stderr, tc.reason) {
			t.Errorf("%v: exit %d, stderr %q: want 2 and a message naming %s: %s", tc.args, code, stderr, tc.args[0], tc.reason)
		}
	}
	// A bad $FORWARDED_ALLOW_IPS is named as such.
	t.Setenv("FORWARDED_ALLOW_IPS", "localhost")
	code, _, stderr := runKrait(t, readyTimeout, "serve", "app:application", "--chdir", testdataDir("wsgiapp"), "-b", "127.0.0.1:0")
	if code != 2 || !strings.Contains(stderr, "$FORWARDED_ALLOW_IPS: ") {
		t.Errorf("FORWARDED_ALLOW_IPS=localhost: exit %d, stderr %q: want 2 and a message naming $FORWARDED_ALLOW_IPS", code, stderr)
	}
}

// padHeaders returns n header lines of size bytes each, CRLF included.
func padHeaders(n, size int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "X-Pad-%02d: %s\r\n", i, strings.Repeat("a", size-len("X-Pad-00: \r\n")))
	}
	return b.String()
}

// oneResponse writes raw on a new connection and reads one response.
func oneResponse(t *testing.T, k *Krait, raw string) rawResponse {
	t.Helper()
	c := dial(t, k.Addr())
	defer c.Close()
	setDeadline(c)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("writing the request: %v", err)
	}
	resps, err := readResponses(bufio.NewReader(c), 1, "GET")
	if len(resps) != 1 {
		t.Fatalf("no response to a %d-byte head: %v", len(raw), err)
	}
	return resps[0]
}

// --limit-request-head caps the whole head: with small line and field
// limits, a 2 KB head of fields each within them gets 431, and one under
// the cap is served; without the flag the same 2 KB head is served.
func TestLimitRequestHead(t *testing.T) {
	big := "GET /hello HTTP/1.1\r\nHost: t\r\n" + padHeaders(5, 400) + "\r\n" // 2,032 bytes
	small := "GET /hello HTTP/1.1\r\nHost: t\r\n" + padHeaders(2, 400) + "\r\n"
	k, _ := startWSGI(t, "--limit-request-head", "1024", "--limit-request-line", "256", "--limit-request-field_size", "512")
	if r := oneResponse(t, k, big); r.Status != 431 {
		t.Errorf("%d-byte head with --limit-request-head 1024: %d, want 431", len(big), r.Status)
	}
	if r := oneResponse(t, k, small); r.Status != 200 {
		t.Errorf("%d-byte head with --limit-request-head 1024: %d, want 200", len(small), r.Status)
	}
	k, _ = startWSGI(t, "--limit-request-line", "256", "--limit-request-field_size", "512")
	if r := oneResponse(t, k, big); r.Status != 200 {
		t.Errorf("%d-byte head by default: %d, want 200", len(big), r.Status)
	}
}

// --max-head-memory is the budget of all connections' large heads: two
// requests whose 12 KB heads krait holds while their handlers run take
// 24 KiB of a 32 KiB budget, so a third head that needs 8 KiB more gets
// 503; once they finish, heads fit again.
func TestMaxHeadMemory(t *testing.T) {
	k, dir := startCompress(t, "--limit-request-head", "16384", "--max-head-memory", "32768", "--threads", "4")
	pad := padHeaders(12, 1000) // a 12 KB head: the read buffer grows to 16 KiB, 12 KiB from the budget
	var holders []net.Conn
	for _, name := range []string{"h1", "h2"} {
		release := filepath.Join(dir, "release-"+name)
		defer func() { _ = os.WriteFile(release, nil, 0o644) }() // free the app if the test fails first
		c := dial(t, k.Addr())
		defer c.Close()
		setDeadline(c)
		if _, err := io.WriteString(c, "GET /stream?"+name+" HTTP/1.1\r\nHost: t\r\n"+pad+"\r\n"); err != nil {
			t.Fatal(err)
		}
		// The first event means krait read the whole head and the
		// handler runs: the head's buffer is held until it returns.
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("holder %s: %v", name, err)
		}
		first := make([]byte, len("data: first\n\n"))
		if _, err := io.ReadFull(resp.Body, first); err != nil || resp.StatusCode != 200 {
			t.Fatalf("holder %s: %d, first event %q, %v", name, resp.StatusCode, first, err)
		}
		holders = append(holders, c)
	}
	// 8 KiB of an unfinished head: filling the 8 KiB buffer needs 4 KiB
	// (28 KiB in use), going on needs 8 KiB more: 503, with every byte sent
	// read (so the close is clean).
	partial := "GET /small HTTP/1.1\r\nHost: t\r\n" + pad
	if r := oneResponse(t, k, partial[:8192]); r.Status != 503 {
		t.Fatalf("a third large head while two are held: %d, want 503", r.Status)
	}
	for _, name := range []string{"h1", "h2"} {
		if err := os.WriteFile(filepath.Join(dir, "release-"+name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range holders {
		c.Close()
	}
	// The budget comes back as the holders' connections close: bounded retry.
	deadline := time.Now().Add(readyTimeout)
	for {
		r := oneResponseOrErr(k, partial+"\r\n")
		if r == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a large head after the holders closed: %d, want 200 within %v", r, readyTimeout)
		}
	}
}

// oneResponseOrErr is oneResponse that returns -1 for no response (a 503
// whose unread request bytes made the close a reset, say).
func oneResponseOrErr(k *Krait, raw string) int {
	c, err := net.Dial("tcp", k.Addr())
	if err != nil {
		return -1
	}
	defer c.Close()
	setDeadline(c)
	if _, err := io.WriteString(c, raw); err != nil {
		return -1
	}
	resps, _ := readResponses(bufio.NewReader(c), 1, "GET")
	if len(resps) != 1 {
		return -1
	}
	return resps[0].Status
}

// Bad head limits are usage errors naming the flag.
func TestHeadLimitFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		reason string
	}{
		{[]string{"--limit-request-head", "1024"}, "need 12288"}, // below the default line and field limits
		{[]string{"--limit-request-head", "x"}, "not a whole number"},
		{[]string{"--max-head-memory", "0"}, "at least 65536"},
		{[]string{"--max-head-memory", "65535"}, "at least 65536"}, // below twice the head limit
	} {
		code, _, stderr := runKrait(t, readyTimeout, append([]string{"serve", "app:application", "--chdir", testdataDir("wsgiapp")}, tc.args...)...)
		if code != 2 || !strings.Contains(stderr, tc.args[0]+": ") || !strings.Contains(stderr, tc.reason) {
			t.Errorf("%v: exit %d, stderr %q: want 2 and a message naming %s: %s", tc.args, code, stderr, tc.args[0], tc.reason)
		}
	}
}

// --proxy-protocol with TLS: the PROXY header comes before the TLS
// handshake, and the app sees the header's client over HTTPS.
func TestProxyProtocolTLS(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k, _ := startWSGI(t, "--proxy-protocol", "--certfile", cert, "--keyfile", key)
	raw := dial(t, k.Addr())
	defer raw.Close()
	setDeadline(raw)
	if _, err := io.WriteString(raw, "PROXY TCP4 203.0.113.9 198.51.100.1 40000 443\r\n"); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{RootCAs: pki.pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
	_, body := proxyGet(t, c, bufio.NewReader(c), "/echo")
	env := echoInfo(t, body)
	if env["REMOTE_ADDR"] != "203.0.113.9" || env["REMOTE_PORT"] != "40000" || env["wsgi.url_scheme"] != "https" {
		t.Errorf("REMOTE_ADDR=%v REMOTE_PORT=%v url_scheme=%v, want 203.0.113.9 40000 https", env["REMOTE_ADDR"], env["REMOTE_PORT"], env["wsgi.url_scheme"])
	}
}
