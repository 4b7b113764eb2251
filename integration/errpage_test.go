package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Error pages krait writes itself (internal/errpage) and X-Request-ID
// (internal/requestid), through the real binary.

var generatedIDRE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// errGet sends GET path with the given header fields and returns the
// response and its body.
func errGet(t *testing.T, k *Krait, method, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req := mustRequest(t, method, k.URL(path), nil)
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return k.Do(req)
}

// oneID returns the response's only X-Request-ID.
func oneID(t *testing.T, resp *http.Response) string {
	t.Helper()
	ids := resp.Header.Values("X-Request-Id")
	if len(ids) != 1 {
		t.Fatalf("%s: X-Request-ID %q, want exactly one", resp.Request.URL.Path, ids)
	}
	return ids[0]
}

// internalWords must never appear in a page krait writes itself.
var internalWords = []string{"worker", "krait", "python", "queue", "error:", "/tmp", "127.0.0.1", ".go"}

func checkNoDetail(t *testing.T, what, body string) {
	t.Helper()
	for _, w := range internalWords {
		if strings.Contains(strings.ToLower(body), w) {
			t.Errorf("%s: the page mentions %q:\n%s", what, w, body)
		}
	}
}

// errJSON decodes an error page in JSON, strictly.
type errJSON struct {
	Error struct {
		Status    int    `json:"status"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

func decodeErrJSON(t *testing.T, body string) errJSON {
	t.Helper()
	var v errJSON
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("the error page is not the JSON error object: %v\n%s", err, body)
	}
	return v
}

// holdSlot starts GET /stream?token=hold on its own connection and returns
// once the app is inside it (it sent "first" and waits for release-hold),
// holding the worker's only slot; release lets it finish and returns its
// body.
func holdSlot(t *testing.T, k *Krait, dir string) (release func() string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * ioTimeout}
		resp, err := c.Get(k.URL("/stream?token=hold"))
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- fmt.Sprintf("%d %q %v", resp.StatusCode, b, err)
	}()
	// On failure too: a held request would hold up krait's stop.
	t.Cleanup(func() { _ = os.WriteFile(filepath.Join(dir, "release-hold"), nil, 0o644) })
	waitFile(t, filepath.Join(dir, "sent-first-hold"), ioTimeout)
	return func() string {
		t.Helper()
		touch(t, filepath.Join(dir, "release-hold"))
		select {
		case s := <-got:
			return s
		case <-time.After(2 * ioTimeout):
			t.Fatalf("the held request did not finish within %v", 2*ioTimeout)
			return ""
		}
	}
}

// TestErrPageQueueFull503: with the only worker slot taken and no queue,
// krait answers 503 itself, in the format Accept asks for, with the
// request id in the body (HTML, JSON) and in X-Request-ID, Retry-After
// kept, and no word about workers.
func TestErrPageQueueFull503(t *testing.T) {
	k, dir := startWSGI(t, "-w", "1", "--threads", "1", "--max-queue", "0")
	release := holdSlot(t, k, dir)

	// JSON, with the client's id passed through.
	resp, body := errGet(t, k, "GET", "/hello", "Accept", "application/json", "X-Request-ID", "client-id-7")
	if resp.StatusCode != 503 {
		t.Fatalf("status %d %q, want 503", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if ra := resp.Header.Get("Retry-After"); ra != "1" {
		t.Errorf("Retry-After %q, want 1", ra)
	}
	if v := resp.Header.Get("Vary"); v != "Accept" {
		t.Errorf("Vary %q, want Accept", v)
	}
	if id := oneID(t, resp); id != "client-id-7" {
		t.Errorf("X-Request-ID %q, want the client's client-id-7", id)
	}
	want := `{"error":{"status":503,"message":"Service Unavailable","request_id":"client-id-7"}}` + "\n"
	if body != want {
		t.Errorf("body %q\nwant %q", body, want)
	}
	decodeErrJSON(t, body)

	// JSON by a +json type, no id sent: a generated one, the same in both places.
	resp, body = errGet(t, k, "GET", "/hello", "Accept", "application/problem+json, text/html;q=0.5")
	v := decodeErrJSON(t, body)
	id := oneID(t, resp)
	if resp.StatusCode != 503 || v.Error.Status != 503 || v.Error.Message != "Service Unavailable" ||
		!generatedIDRE.MatchString(id) || v.Error.RequestID != id {
		t.Errorf("503 %d, page %+v, X-Request-ID %q", resp.StatusCode, v.Error, id)
	}

	// HTML for a browser.
	resp, body = errGet(t, k, "GET", "/hello", "Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	id = oneID(t, resp)
	if resp.StatusCode != 503 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(body, "<h1>503 Service Unavailable</h1>") ||
		!strings.Contains(body, "<code>"+id+"</code>") {
		t.Errorf("browser: %d %q:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	checkNoDetail(t, "HTML 503", body)

	// Plain text for curl (the status line; the id in the header), and
	// an unusable id replaced.
	resp, body = errGet(t, k, "GET", "/hello", "Accept", "*/*", "X-Request-ID", "has space")
	if id = oneID(t, resp); !generatedIDRE.MatchString(id) {
		t.Errorf("an invalid client id was kept: %q", id)
	}
	if resp.StatusCode != 503 || body != "503 Service Unavailable\n" || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("curl: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}

	if got := release(); got != `200 "first\nsecond\n" <nil>` {
		t.Fatalf("the held request: %s", got)
	}
}

// TestErrPageStatic404: a missing file under a --static route is a 404
// page in the format Accept asks for (HTML for a browser), with the
// request id; the static route's other errors too (405 keeps Allow).
func TestErrPageStatic404(t *testing.T) {
	assets := t.TempDir()
	if err := os.WriteFile(filepath.Join(assets, "app.css"), []byte("body{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	k, _ := startWSGI(t, "--static", "/static="+assets)

	resp, body := errGet(t, k, "GET", "/static/missing.css", "Accept", "text/html")
	id := oneID(t, resp)
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("missing file: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if !strings.HasPrefix(body, "<!DOCTYPE html>") || !strings.Contains(body, "<title>404 Not Found</title>") ||
		!strings.Contains(body, "<code>"+id+"</code>") || !generatedIDRE.MatchString(id) {
		t.Errorf("404 page for id %q:\n%s", id, body)
	}
	if regexp.MustCompile(`(?i)src=|href=|url\(|<script|<link`).MatchString(body) {
		t.Errorf("the page loads something:\n%s", body)
	}
	checkNoDetail(t, "static 404", body)

	resp, body = errGet(t, k, "GET", "/static/missing.css", "Accept", "application/json", "X-Request-ID", "abc")
	if v := decodeErrJSON(t, body); resp.StatusCode != 404 || v.Error.Status != 404 || v.Error.Message != "Not Found" || v.Error.RequestID != "abc" {
		t.Errorf("JSON 404: %d %+v", resp.StatusCode, v.Error)
	}

	resp, body = errGet(t, k, "POST", "/static/app.css", "Accept", "application/json")
	if v := decodeErrJSON(t, body); resp.StatusCode != 405 || v.Error.Status != 405 || resp.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("405: %d Allow %q %+v", resp.StatusCode, resp.Header.Get("Allow"), v.Error)
	}

	// A file served: the id is on the response too.
	resp, body = errGet(t, k, "GET", "/static/app.css", "X-Request-ID", "file-req")
	if resp.StatusCode != 200 || body != "body{}" || oneID(t, resp) != "file-req" {
		t.Errorf("file: %d %q %q", resp.StatusCode, body, resp.Header.Values("X-Request-Id"))
	}
}

// accessLogLine waits for the access log line of target and returns it.
func accessLogLine(t *testing.T, path, target string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^.*"GET ` + regexp.QuoteMeta(target) + ` HTTP/1\.1".*$`)
	m := waitFileMatch(t, path, re, ioTimeout)
	return string(m[0])
}

// TestRequestIDReachesAppAndLog: the id the response carries is the one
// the WSGI app sees as HTTP_X_REQUEST_ID and the one the access log
// writes, generated or passed through; an unusable one is replaced.
func TestRequestIDReachesAppAndLog(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "access.log")
	k, _ := startWSGI(t, "--access-logfile", logPath)
	for i, tc := range []struct {
		sent string // "" sends none
		keep bool
	}{
		{"", false},
		{"3f2504e0-4f89-41d3-9a0c-0305e82c3301", true},
		{"bad\"id<script>", false},
		{strings.Repeat("a", 129), false},
	} {
		target := fmt.Sprintf("/echo?case=%d", i)
		var hdr []string
		if tc.sent != "" {
			hdr = []string{"X-Request-ID", tc.sent}
		}
		resp, body := errGet(t, k, "GET", target, hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %q", target, resp.StatusCode, body)
		}
		id := oneID(t, resp)
		if tc.keep && id != tc.sent || !tc.keep && !generatedIDRE.MatchString(id) {
			t.Errorf("%s: sent %q, response X-Request-ID %q", target, tc.sent, id)
		}
		if got := echoInfo(t, body)["HTTP_X_REQUEST_ID"]; got != id {
			t.Errorf("%s: the app saw HTTP_X_REQUEST_ID %v, the response says %q", target, got, id)
		}
		line := accessLogLine(t, logPath, target)
		if !strings.HasSuffix(line, `" "`+id+`"`) || !combinedWithIDRE.MatchString(line) {
			t.Errorf("%s: access log line %q does not end with the id %q", target, line, id)
		}
	}
}

// combinedWithIDRE is the access log line: combined format and the
// request id as one more quoted field.
var combinedWithIDRE = regexp.MustCompile(`^127\.0\.0\.1 - - \[[^]]+\] "[^"]*" \d{3} (\d+|-) "[^"]*" "[^"]*" "[A-Za-z0-9._~+/=:@-]+"$`)

// TestRequestIDInASGIScope: an ASGI app finds the id in the scope's
// headers, once, lower-cased, equal to the response's.
func TestRequestIDInASGIScope(t *testing.T) {
	k, _ := startASGI(t, "")
	for _, sent := range []string{"", "trace-42"} {
		var hdr []string
		if sent != "" {
			hdr = []string{"X-Request-ID", sent}
		}
		resp, body := errGet(t, k, "GET", "/scope", hdr...)
		if resp.StatusCode != 200 {
			t.Fatalf("/scope: %d %q", resp.StatusCode, body)
		}
		id := oneID(t, resp)
		if sent != "" && id != sent {
			t.Errorf("sent %q, response X-Request-ID %q", sent, id)
		}
		var got []string
		scope := asgiJSON(t, body)["scope"].(map[string]any)
		for _, h := range scope["headers"].([]any) {
			pair := h.([]any)
			if strings.EqualFold(pair[0].(string), "x-request-id") {
				got = append(got, pair[0].(string)+": "+pair[1].(string))
			}
		}
		if len(got) != 1 || got[0] != "x-request-id: "+id {
			t.Errorf("scope headers carry %q, want [x-request-id: %s]", got, id)
		}
	}
}
