package integration

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// startWSGI serves testdata/wsgiapp (validated by wsgiref.validate) with a
// fresh KRAIT_TEST_DIR for the app's coordination files; it returns krait
// and that directory. Validator failures in the log fail the test.
func startWSGI(t *testing.T, extra ...string) (*Krait, string) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"app:application", "--chdir", testdataDir("wsgiapp"), "--env", "KRAIT_TEST_DIR=" + dir}
	k := startKrait(t, nil, append(args, extra...)...)
	// wsgiref.validate fails through its assert_() helper or warns with
	// WSGIWarning. (Plain "AssertionError" is no sign: the adapter raises it
	// for app errors too, and app tracebacks pass through validate.py.)
	k.Forbid("in assert_\n", "WSGIWarning", "garbage collected without being closed")
	return k, dir
}

// echoInfo decodes the /echo endpoint's JSON.
func echoInfo(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("echo answered non-JSON %q: %v", body, err)
	}
	return m
}

// rawRoundTrip sends raw on a fresh connection and reads one response.
func rawRoundTrip(t *testing.T, addr, raw, method string) (rawResponse, string) {
	t.Helper()
	c := dial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	setDeadline(c)
	resps, err := readResponses(bufio.NewReader(c), 1, method)
	if len(resps) != 1 {
		t.Fatalf("no response to %q: %v", firstLine(raw), err)
	}
	return resps[0], c.LocalAddr().String()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestWSGIHelloAndHead(t *testing.T) {
	k, _ := startWSGI(t)
	resp, body := k.Get("/hello")
	if resp.StatusCode != 200 || body != "Hello, world!\n" {
		t.Fatalf("GET /hello: %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if resp.Header.Get("Date") == "" {
		t.Errorf("no Date header")
	}

	// HEAD: same headers, no body. Raw, so a stray body would be seen.
	r, _ := rawRoundTrip(t, k.Addr(), "HEAD /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", "HEAD")
	if r.Status != 200 || r.Header.Get("Content-Length") != "14" {
		t.Fatalf("HEAD /hello: %d, Content-Length %q", r.Status, r.Header.Get("Content-Length"))
	}
	c := dial(t, k.Addr())
	io.WriteString(c, "HEAD /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	all, _ := readAllUntilClose(c, ioTimeout)
	if strings.Contains(string(all), "Hello, world") {
		t.Errorf("HEAD response carries a body:\n%s", all)
	}
}

func TestWSGIEnviron(t *testing.T) {
	tests := []struct {
		name            string
		flags           []string
		multithread     bool
		multiprocessSet bool // only asserted when more than one worker runs
	}{
		{name: "threads1", flags: nil, multithread: false},
		{name: "threads4-workers2", flags: []string{"--threads", "4", "-w", "2"}, multithread: true, multiprocessSet: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k, _ := startWSGI(t, tc.flags...)
			_, port, _ := strings.Cut(k.Addr(), ":")
			raw := "POST /echo/caf%C3%A9/x%2Fy?x=1&y=%20z&caf%C3%A9 HTTP/1.1\r\n" +
				"Host: example.test:8080\r\n" +
				"X-Multi: a\r\n" +
				"X-Multi: b\r\n" +
				"X_Under: must be dropped\r\n" +
				"User-Agent: krait-test\r\n" +
				"Content-Type: text/plain\r\n" +
				"Content-Length: 5\r\n" +
				"Connection: close\r\n" +
				"\r\nhello"
			r, local := rawRoundTrip(t, k.Addr(), raw, "POST")
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			env := echoInfo(t, string(r.Body))
			_, localPort, _ := strings.Cut(local, ":")
			want := map[string]any{
				"REQUEST_METHOD":        "POST",
				"SCRIPT_NAME":           "",
				"PATH_INFO":             "/echo/cafÃ©/x/y", // percent-decoded, bytes as latin-1
				"QUERY_STRING":          "x=1&y=%20z&caf%C3%A9",
				"CONTENT_TYPE":          "text/plain",
				"CONTENT_LENGTH":        "5",
				"SERVER_PROTOCOL":       "HTTP/1.1",
				"REMOTE_ADDR":           "127.0.0.1",
				"REMOTE_PORT":           localPort,
				"RAW_URI":               "/echo/caf%C3%A9/x%2Fy?x=1&y=%20z&caf%C3%A9",
				"REQUEST_URI":           "/echo/caf%C3%A9/x%2Fy?x=1&y=%20z&caf%C3%A9",
				"HTTP_HOST":             "example.test:8080",
				"HTTP_X_MULTI":          "a, b",
				"HTTP_USER_AGENT":       "krait-test",
				"wsgi.url_scheme":       "http",
				"wsgi.input_terminated": true,
				"wsgi.multithread":      tc.multithread,
				"wsgi.run_once":         false,
				"wsgi.has_file_wrapper": true,
				"body_length":           float64(5),
				"body":                  "hello",
			}
			if tc.multiprocessSet {
				want["wsgi.multiprocess"] = true
			}
			for key, w := range want {
				if got, ok := env[key]; !ok || got != w {
					t.Errorf("%s = %#v (present %v), want %#v", key, got, ok, w)
				}
			}
			if v, ok := env["wsgi.version"].([]any); !ok || len(v) != 2 || v[0] != float64(1) || v[1] != float64(0) {
				t.Errorf("wsgi.version = %#v, want [1 0]", env["wsgi.version"])
			}
			if _, ok := env["wsgi.multiprocess"].(bool); !ok {
				t.Errorf("wsgi.multiprocess = %#v, want a bool", env["wsgi.multiprocess"])
			}
			// SERVER_NAME/PORT: from Host (as gunicorn does) or the listener.
			sn, sp := env["SERVER_NAME"], env["SERVER_PORT"]
			if !(sn == "example.test" && sp == "8080") && !(sn == "127.0.0.1" && sp == port) {
				t.Errorf("SERVER_NAME, SERVER_PORT = %#v, %#v; want the Host header's or the listener's", sn, sp)
			}
			for key := range env {
				if strings.Contains(key, "UNDER") {
					t.Errorf("header with '_' in its name reached the app as %s", key)
				}
			}
			for _, key := range []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"} {
				if _, ok := env[key]; ok {
					t.Errorf("%s must not be in environ", key)
				}
			}
		})
	}
}

func TestWSGIQueryAndEmptyBody(t *testing.T) {
	k, _ := startWSGI(t)
	resp, body := k.Get("/echo")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	env := echoInfo(t, body)
	if env["QUERY_STRING"] != "" || env["PATH_INFO"] != "/echo" || env["REQUEST_METHOD"] != "GET" || env["body_length"] != float64(0) {
		t.Errorf("GET /echo environ: QUERY_STRING=%#v PATH_INFO=%#v REQUEST_METHOD=%#v body_length=%#v",
			env["QUERY_STRING"], env["PATH_INFO"], env["REQUEST_METHOD"], env["body_length"])
	}
	if cl, ok := env["CONTENT_LENGTH"]; ok && cl != "" && cl != "0" {
		t.Errorf("CONTENT_LENGTH = %#v for a GET without body", cl)
	}
}

// splitLines mirrors Python's readline(): pieces ending in "\n", limit bytes at most.
func splitLines(body string, limit int) []string {
	var out []string
	for len(body) > 0 {
		n := strings.IndexByte(body, '\n') + 1
		if n == 0 {
			n = len(body)
		}
		if limit > 0 && n > limit {
			n = limit
		}
		out = append(out, body[:n])
		body = body[n:]
	}
	return out
}

func splitN(body string, n int) []string {
	var out []string
	for len(body) > 0 {
		m := min(n, len(body))
		out = append(out, body[:m])
		body = body[m:]
	}
	return out
}

func TestWSGIInputModes(t *testing.T) {
	k, _ := startWSGI(t, "--threads", "2")
	body := "line one\nline two is longer\n\nthird line without newline"
	tests := []struct {
		mode string
		want []string
	}{
		{"read-n", splitN(body, 5)},
		{"read-all", []string{body, ""}},
		{"read-neg", []string{body}},
		{"readline", splitLines(body, 0)},
		{"readline-limit", splitLines(body, 5)},
		{"readlines", splitLines(body, 0)},
		{"iter", splitLines(body, 0)},
	}
	for _, framing := range []string{"content-length", "chunked"} {
		for _, tc := range tests {
			t.Run(framing+"/"+tc.mode, func(t *testing.T) {
				var rd io.Reader = strings.NewReader(body)
				if framing == "chunked" {
					rd = io.MultiReader(rd) // hides the length: the client sends it chunked
				}
				req := mustRequest(t, "POST", k.URL("/input/"+tc.mode+"?n=5"), rd)
				resp, out := k.Do(req)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d: %s", resp.StatusCode, out)
				}
				var got struct{ Pieces []string }
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("bad JSON %q: %v", out, err)
				}
				if fmt.Sprintf("%q", got.Pieces) != fmt.Sprintf("%q", tc.want) {
					t.Errorf("pieces read:\n got %q\nwant %q", got.Pieces, tc.want)
				}
			})
		}
	}
}

func TestWSGIStreamingResponse(t *testing.T) {
	k, dir := startWSGI(t)
	resp, err := k.Client().Get(k.URL("/stream?token=s1"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.ContentLength != -1 {
		t.Errorf("streamed response has Content-Length %d; want chunked", resp.ContentLength)
	}
	br := bufio.NewReader(resp.Body)
	// The app waits for release-s1 before producing "second": reading
	// "first" proves krait forwards chunks as the app yields them.
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first chunk: %q, %v", line, err)
	}
	touch(t, filepath.Join(dir, "release-s1"))
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest: %q, %v", rest, err)
	}
}

func TestWSGIWriteCallable(t *testing.T) {
	k, _ := startWSGI(t)
	resp, body := k.Get("/write")
	if resp.StatusCode != 200 || body != "written by write() and returned\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
}

// bigFile is the 5 MiB content testdata/wsgiapp writes for /file.
func bigFile() []byte {
	block := make([]byte, 65536)
	for i := range block {
		block[i] = byte(i)
	}
	var out []byte
	for i := 0; i < 80; i++ {
		out = append(out, block[i:]...)
		out = append(out, block[:i]...)
	}
	return out
}

func TestWSGIFileWrapper(t *testing.T) {
	k, _ := startWSGI(t)
	big := bigFile()
	small := []byte(strings.Repeat("from a BytesIO object\n", 1000))
	tests := []struct {
		path string
		want []byte
	}{
		{"/file?kind=file", big},     // through the validator: iterated
		{"/raw/file?kind=file", big}, // krait sees the file_wrapper: may sendfile
		{"/file?kind=bytesio", small},
		{"/raw/file?kind=bytesio", small}, // no fileno(): iterated
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := k.Get(tc.path)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if resp.ContentLength != int64(len(tc.want)) {
				t.Errorf("Content-Length %d, want %d", resp.ContentLength, len(tc.want))
			}
			if len(body) != len(tc.want) || sha([]byte(body)) != sha(tc.want) {
				t.Errorf("body: %d bytes sha %s, want %d bytes sha %s", len(body), sha([]byte(body)), len(tc.want), sha(tc.want))
			}
		})
	}
}

func TestWSGIExcInfo(t *testing.T) {
	k, _ := startWSGI(t)
	t.Run("before headers sent", func(t *testing.T) {
		resp, body := k.Get("/excinfo/before")
		if resp.StatusCode != 500 || body != "recovered\n" || resp.Header.Get("X-Recovered") != "yes" {
			t.Fatalf("%d %q %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("after headers sent", func(t *testing.T) {
		c := dial(t, k.Addr())
		io.WriteString(c, "GET /excinfo/after HTTP/1.1\r\nHost: t\r\n\r\n")
		setDeadline(c)
		resps, err := readResponses(bufio.NewReader(c), 1, "GET")
		if len(resps) != 1 {
			t.Fatalf("no response head: %v", err)
		}
		if resps[0].Status != 200 {
			t.Fatalf("status %d, want the 200 already sent", resps[0].Status)
		}
		if resps[0].BodyErr == nil {
			t.Errorf("body %q ended cleanly; the re-raised error must abort the response", resps[0].Body)
		}
		if strings.Contains(string(resps[0].Body), "must not be reached") {
			t.Errorf("app went on after start_response re-raised")
		}
		k.MustWaitLog(regexp.MustCompile(`exc-info-after-marker`))
	})
	resp, body := k.Get("/hello")
	if resp.StatusCode != 200 {
		t.Fatalf("after exc_info: %d %q", resp.StatusCode, body)
	}
}

func TestWSGIAppException(t *testing.T) {
	k, _ := startWSGI(t)
	resp, body := k.Get("/error?id=e42")
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want 500", resp.StatusCode)
	}
	for _, leak := range []string{"boom-marker", "Traceback", "RuntimeError"} {
		if strings.Contains(body, leak) {
			t.Errorf("500 page leaks %q: %q", leak, body)
		}
	}
	k.MustWaitLog(regexp.MustCompile(`(?s)Traceback.*RuntimeError: boom-marker-e42`))
	resp, body = k.Get("/hello")
	if resp.StatusCode != 200 || body != "Hello, world!\n" {
		t.Fatalf("request after the exception: %d %q", resp.StatusCode, body)
	}
}

func TestWSGIIterableClose(t *testing.T) {
	k, dir := startWSGI(t, "--threads", "2")
	events := filepath.Join(dir, "events.log")

	t.Run("normal end", func(t *testing.T) {
		resp, body := k.Get("/close?id=n1&how=normal")
		if resp.StatusCode != 200 || body != "one\ntwo\n" {
			t.Fatalf("%d %q", resp.StatusCode, body)
		}
		waitFileContains(t, events, "closed n1\n", ioTimeout)
	})
	t.Run("error while iterating", func(t *testing.T) {
		c := dial(t, k.Addr())
		io.WriteString(c, "GET /close?id=e1&how=error HTTP/1.1\r\nHost: t\r\n\r\n")
		setDeadline(c)
		resps, _ := readResponses(bufio.NewReader(c), 1, "GET")
		if len(resps) == 1 && resps[0].Status == 200 && resps[0].BodyErr == nil {
			t.Errorf("response ended cleanly (%q) although the iterable raised", resps[0].Body)
		}
		waitFileContains(t, events, "closed e1\n", ioTimeout)
		k.MustWaitLog(regexp.MustCompile(`close-test failure e1`))
	})
	t.Run("client disconnects mid-stream", func(t *testing.T) {
		c := dial(t, k.Addr())
		io.WriteString(c, "GET /close?id=d1&how=disconnect HTTP/1.1\r\nHost: t\r\n\r\n")
		setDeadline(c)
		br := bufio.NewReader(c)
		// Read until the app's first chunk has arrived, then hang up while
		// it is still producing an endless body.
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading the stream: %v", err)
			}
			if strings.Contains(line, "start") {
				break
			}
		}
		c.Close()
		waitFileContains(t, events, "closed d1\n", ioTimeout)
	})
	resp, _ := k.Get("/hello")
	if resp.StatusCode != 200 {
		t.Fatalf("after close tests: %d", resp.StatusCode)
	}
}

func TestWSGIContentLengthFromApp(t *testing.T) {
	k, _ := startWSGI(t)
	c := dial(t, k.Addr())
	io.WriteString(c, "GET /content-length HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	all, _ := readAllUntilClose(c, ioTimeout)
	head, body, _ := strings.Cut(string(all), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Fatalf("response:\n%s", all)
	}
	if !regexp.MustCompile(`(?im)^Content-Length: 12\r?$`).MatchString(head) {
		t.Errorf("no Content-Length: 12 in\n%s", head)
	}
	if regexp.MustCompile(`(?i)transfer-encoding`).MatchString(head) {
		t.Errorf("chunked although the app gave Content-Length:\n%s", head)
	}
	if body != "hello world\n" {
		t.Errorf("body %q", body)
	}
}

// An app may not set hop-by-hop headers (PEP 3333): krait must not pass
// them on, and says so in the log. (It may drop the header and serve the
// rest, or answer 500.)
func TestWSGIHopByHopHeaderRefused(t *testing.T) {
	k, _ := startWSGI(t)
	for _, name := range []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade"} {
		t.Run(name, func(t *testing.T) {
			c := dial(t, k.Addr())
			io.WriteString(c, "GET /raw/hop?name="+name+" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
			all, _ := readAllUntilClose(c, ioTimeout)
			head, _, _ := strings.Cut(string(all), "\r\n\r\n")
			if !strings.HasPrefix(head, "HTTP/1.1 200") && !strings.HasPrefix(head, "HTTP/1.1 500") {
				t.Errorf("response:\n%s", all)
			}
			if strings.Contains(head, "hop-marker") {
				t.Errorf("the app's %s header reached the client:\n%s", name, head)
			}
			k.MustWaitLog(regexp.MustCompile(`(?i)level=ERROR.*hop-by-hop.*` + regexp.QuoteMeta(name)))
		})
	}
	resp, _ := k.Get("/hello")
	if resp.StatusCode != 200 {
		t.Fatalf("after hop-by-hop tests: %d", resp.StatusCode)
	}
}

func TestWSGIExpect100Continue(t *testing.T) {
	k, _ := startWSGI(t)
	c := dial(t, k.Addr())
	io.WriteString(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
	setDeadline(c)
	br := bufio.NewReader(c)
	// The body is sent only once krait says 100 Continue.
	status, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
		t.Fatalf("interim status line %q, %v", status, err)
	}
	if blank, err := br.ReadString('\n'); err != nil || blank != "\r\n" {
		t.Fatalf("100 Continue carries headers or is cut: %q, %v", blank, err)
	}
	io.WriteString(c, "hello world")
	resps, err := readResponses(br, 1, "POST")
	if len(resps) != 1 || resps[0].Status != 200 {
		t.Fatalf("final response: %v, %v", resps, err)
	}
	env := echoInfo(t, string(resps[0].Body))
	if env["body"] != "hello world" {
		t.Errorf("body seen by the app: %#v", env["body"])
	}
}

func TestWSGIChunkedRequestBody(t *testing.T) {
	k, _ := startWSGI(t)
	raw := "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
		"5\r\nhello\r\n" + "1;ext=1\r\n \r\n" + "5\r\nworld\r\n" + "0\r\nX-Trailer: t\r\n\r\n"
	r, _ := rawRoundTrip(t, k.Addr(), raw, "POST")
	if r.Status != 200 {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	env := echoInfo(t, string(r.Body))
	if env["body"] != "hello world" || env["body_length"] != float64(11) {
		t.Errorf("body %#v (%v bytes)", env["body"], env["body_length"])
	}
	if env["wsgi.input_terminated"] != true {
		t.Errorf("wsgi.input_terminated = %#v", env["wsgi.input_terminated"])
	}
	if cl, ok := env["CONTENT_LENGTH"]; ok && cl != "" {
		t.Errorf("CONTENT_LENGTH = %#v for a chunked body", cl)
	}
}

// patternReader yields n deterministic bytes.
type patternReader struct {
	n, off int64
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if int64(len(b)) > p.n-p.off {
		b = b[:p.n-p.off]
	}
	for i := range b {
		x := p.off + int64(i)
		b[i] = byte(x ^ x>>8 ^ x>>16)
	}
	p.off += int64(len(b))
	return len(b), nil
}

// vmHWM returns a process's peak resident set size in KiB.
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc status for pid %d: %v", pid, err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Skipf("no VmHWM in /proc/%d/status", pid)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n
}

func TestWSGILargeStreamedUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MB upload skipped in -short mode")
	}
	k, _ := startWSGI(t)
	const size = 200 << 20
	h := sha256.New()
	body := io.TeeReader(&patternReader{n: size}, h)
	req := mustRequest(t, "POST", k.URL("/upload"), body) // unknown length: sent chunked
	resp, out := k.Do(req)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, out)
	}
	var got struct {
		Length int64
		SHA256 string
		PID    int
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("bad JSON %q: %v", out, err)
	}
	if got.Length != size || got.SHA256 != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("app read %d bytes sha %s; sent %d sha %x", got.Length, got.SHA256, size, h.Sum(nil))
	}
	// Neither side may have held the upload in memory.
	const limitKiB = 100 << 10
	for name, pid := range map[string]int{"krait": k.PID(), "worker": got.PID} {
		hwm := vmHWM(t, pid)
		t.Logf("%s (pid %d) peak RSS %d MiB for a %d MiB upload", name, pid, hwm>>10, size>>20)
		if hwm > limitKiB {
			t.Errorf("%s peak RSS %d MiB: the upload was buffered", name, hwm>>10)
		}
	}
}

func TestWSGIWorkerCrashReplaced(t *testing.T) {
	k, _ := startWSGI(t)
	pidOf := func() int {
		resp, body := k.Get("/pid")
		if resp.StatusCode != 200 {
			t.Fatalf("/pid: %d %q", resp.StatusCode, body)
		}
		var p struct{ PID int }
		json.Unmarshal([]byte(body), &p)
		return p.PID
	}
	before := pidOf()
	resp, _ := k.Get("/exit")
	if resp.StatusCode != 502 {
		t.Errorf("request whose worker died: %d, want 502", resp.StatusCode)
	}
	after := pidOf()
	if after == before || after == 0 {
		t.Errorf("worker pid before %d, after %d: want a new worker", before, after)
	}
}

func TestWSGIQueueFull503(t *testing.T) {
	// 1 worker x 1 thread runs one request, --max-queue 1 lets one more
	// wait: of n concurrent requests exactly n-2 must be refused, while the
	// running one is still blocked, and exactly 2 served once released.
	k, dir := startWSGI(t, "-w", "1", "--threads", "1", "--max-queue", "1")
	const n = 6
	type result struct {
		status     int
		retryAfter string
		body       string
		err        error
	}
	results := make(chan result, n)
	for i := 0; i < n; i++ {
		go func() {
			resp, err := k.Client().Get(k.URL("/slow?token=q"))
			if err != nil {
				results <- result{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			results <- result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
		}()
	}
	next := func(phase string, got int) result {
		t.Helper()
		select {
		case r := <-results:
			if r.err != nil {
				t.Fatalf("request failed: %v", r.err)
			}
			return r
		case <-ioDeadline():
			t.Fatalf("%s: only %d answers after %v (a queue longer than --max-queue holds requests back)", phase, got, ioTimeout)
			return result{}
		}
	}
	// Nothing is released yet: the first n-2 answers are all refusals.
	for i := 0; i < n-2; i++ {
		r := next("refusals while one request runs and one waits", i)
		if r.status != 503 {
			t.Fatalf("answer %d before anything was released: %d %q, want 503", i+1, r.status, r.body)
		}
		if r.retryAfter == "" {
			t.Errorf("503 without Retry-After")
		}
	}
	touch(t, filepath.Join(dir, "release-q"))
	for i := 0; i < 2; i++ {
		if r := next("the running and the queued request", i); r.status != 200 {
			t.Errorf("after the release: %d %q, want 200", r.status, r.body)
		}
	}
}

func TestWSGIThreadsConcurrent(t *testing.T) {
	k, _ := startWSGI(t, "-w", "1", "--threads", "4")
	const n = 4
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := k.Client().Get(k.URL(fmt.Sprintf("/barrier?token=b&n=%d", n)))
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "together\n" {
				errs <- fmt.Sprintf("%d %q", resp.StatusCode, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("barrier request: %s (4 threads must serve 4 requests at once)", e)
	}
}

func TestWSGIWorkerOutputInLog(t *testing.T) {
	k, _ := startWSGI(t)
	resp, _ := k.Get("/print")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	k.MustWaitLog(regexp.MustCompile(`\[worker \d+\] stdout-marker from the app`))
	k.MustWaitLog(regexp.MustCompile(`\[worker \d+\] stderr-marker from the app`))
}
