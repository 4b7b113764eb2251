package errpage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

func accept(vs ...string) []exchange.Header {
	hs := []exchange.Header{{Name: []byte("Host"), Value: []byte("x")}}
	for _, v := range vs {
		hs = append(hs, exchange.Header{Name: []byte("Accept"), Value: []byte(v)})
	}
	return hs
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct {
		accept []string // one Accept field each; nil: no Accept
		want   Kind
	}{
		{nil, Text},
		{[]string{""}, Text},
		{[]string{"*/*"}, Text}, // curl, fetch()
		{[]string{"application/json"}, JSON},
		{[]string{"APPLICATION/JSON"}, JSON},
		{[]string{"application/problem+json"}, JSON},
		{[]string{"application/vnd.api+json; charset=utf-8"}, JSON},
		{[]string{"*/*+json"}, JSON},
		{[]string{"application/*"}, JSON},
		{[]string{"text/html"}, HTML},
		{[]string{"text/plain"}, Text},
		{[]string{"text/*"}, Text},
		{[]string{"image/png"}, Text}, // nothing acceptable: text anyway
		// Browsers.
		{[]string{"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"}, HTML},
		{[]string{"text/html, */*; q=0.01"}, HTML},
		// jQuery, axios.
		{[]string{"application/json, text/javascript, */*; q=0.01"}, JSON},
		{[]string{"application/json, text/plain, */*"}, JSON},
		{[]string{"text/plain, application/json"}, Text},
		// q-values decide.
		{[]string{"text/html;q=0.5, application/json"}, JSON},
		{[]string{"text/html, application/json;q=0.9"}, HTML},
		{[]string{"application/json;q=0.1, text/html;q=0.2, text/plain;q=0.05"}, HTML},
		{[]string{"text/html ; q = 0.5 , application/json ; level=1 ; q=0.6"}, JSON},
		{[]string{"application/json;q=1.000"}, JSON},
		// q=0 refuses, and the most specific range wins even with a lower q.
		{[]string{"application/json;q=0, */*"}, Text},
		{[]string{"text/html;q=0, */*;q=0.5"}, Text},
		{[]string{"*/*;q=0.9, application/json;q=0"}, Text},
		{[]string{"text/*;q=0.3, text/html;q=0.7, */*;q=0.1"}, HTML},
		{[]string{"text/*, text/plain;q=0"}, HTML},
		// More specific wins a tie of q; then the one listed first.
		{[]string{"text/*, application/json"}, JSON},
		{[]string{"*/*, text/html"}, HTML},
		{[]string{"text/html, application/json"}, HTML},
		{[]string{"application/json, text/html"}, JSON},
		// Malformed ranges and q-values are ignored.
		{[]string{"application/json;q=2, text/html"}, HTML},
		{[]string{"application/json;q=abc"}, Text},
		// The malformed range is dropped, not read as q=0: application/*
		// still gives JSON its weight.
		{[]string{"application/json;q=abc, application/*;q=0.9, text/plain;q=0.5"}, JSON},
		{[]string{"application/json;q=0.5000, text/html;q=0.1"}, HTML},
		{[]string{"json, html, /, application/, /json"}, Text},
		{[]string{",,, application/json ,,"}, JSON},
		// Several fields are one list.
		{[]string{"text/plain;q=0.5", "application/json"}, JSON},
		{[]string{"text/html", "application/json;q=0.5"}, HTML},
	} {
		t.Run(strings.Join(tc.accept, " | "), func(t *testing.T) {
			if got := Negotiate(accept(tc.accept...)); got != tc.want {
				t.Errorf("Negotiate(%q) = %v, want %v", tc.accept, got, tc.want)
			}
		})
	}
}

// statuses are the statuses krait itself answers with.
var statuses = []int{400, 404, 405, 408, 412, 413, 414, 416, 431, 500, 501, 502, 503, 504, 505}

// TestEveryStatus: every 4xx and 5xx status renders in every kind, with and
// without a request id, and says the status and its reason, nothing else.
func TestEveryStatus(t *testing.T) {
	id := []byte("0123456789abcdef0123456789abcdef")
	for status := 400; status <= 599; status++ {
		reason := http.StatusText(status)
		if reason == "" {
			reason = "Error"
		}
		for k := Text; k < numKinds; k++ {
			for _, withID := range []bool{false, true} {
				var rid []byte
				if withID {
					rid = id
				}
				body := AppendBody(nil, status, k, rid)
				if pre := Body(status, k); pre != nil && !withID && !bytes.Equal(pre, body) {
					t.Errorf("%d %v: Body and AppendBody differ:\n%s\n%s", status, k, pre, body)
				}
				if (Body(status, k) == nil) != (http.StatusText(status) == "") {
					t.Errorf("%d %v: precomputed %v, has a reason phrase %v", status, k, Body(status, k) != nil, http.StatusText(status) != "")
				}
				checkPage(t, status, reason, k, body, rid)
			}
		}
	}
}

var externalRef = regexp.MustCompile(`(?i)(src|href|url\(|@import|<script|<link|<img|<iframe|http:|https:|//)`)

func checkPage(t *testing.T, status int, reason string, k Kind, body, id []byte) {
	t.Helper()
	name := fmt.Sprintf("%d %v id=%v", status, k, id != nil)
	switch k {
	case JSON:
		var v struct {
			Error struct {
				Status    int     `json:"status"`
				Message   string  `json:"message"`
				RequestID *string `json:"request_id"`
			} `json:"error"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", name, err, body)
		}
		if dec.More() {
			t.Errorf("%s: trailing data after the JSON value", name)
		}
		if v.Error.Status != status || v.Error.Message != reason {
			t.Errorf("%s: %+v", name, v.Error)
		}
		if id == nil && v.Error.RequestID != nil || id != nil && (v.Error.RequestID == nil || *v.Error.RequestID != string(id)) {
			t.Errorf("%s: request_id %v, want %q", name, v.Error.RequestID, id)
		}
	case HTML:
		s := string(body)
		title := strconv.Itoa(status) + " " + strings.ReplaceAll(reason, "'", "&#39;")
		if !strings.HasPrefix(s, "<!DOCTYPE html>\n") || !strings.HasSuffix(s, "</html>\n") ||
			!strings.Contains(s, "<title>"+title+"</title>") || !strings.Contains(s, "<h1>"+title+"</h1>") {
			t.Errorf("%s: page\n%s", name, s)
		}
		if m := externalRef.FindString(s); m != "" {
			t.Errorf("%s: the page refers to something outside it (%q):\n%s", name, m, s)
		}
		if strings.Count(s, "<") != strings.Count(s, ">") {
			t.Errorf("%s: unbalanced markup:\n%s", name, s)
		}
		if got := strings.Contains(s, "<p>Request ID: <code>"+string(id)+"</code></p>"); got != (id != nil) {
			t.Errorf("%s: request id shown %v:\n%s", name, got, s)
		}
	case Text:
		want := strconv.Itoa(status) + " " + reason + "\n" // the id is in the header only
		if string(body) != want {
			t.Errorf("%s: %q, want %q", name, body, want)
		}
	}
}

// TestInvalidIDNotShown: an id requestid would not keep never reaches a
// page (it could carry markup or break the JSON string).
func TestInvalidIDNotShown(t *testing.T) {
	for _, id := range []string{`"}}<script>`, "a b", strings.Repeat("a", 129), "é"} {
		for k := Text; k < numKinds; k++ {
			body := AppendBody(nil, 503, k, []byte(id))
			if !bytes.Equal(body, Body(503, k)) {
				t.Errorf("%v with id %q: %s", k, id, body)
			}
		}
	}
}

func TestOutOfRangeStatusIs500(t *testing.T) {
	for _, s := range []int{0, 200, 399, 600, 999} {
		if got := AppendBody(nil, s, Text, nil); string(got) != "500 Internal Server Error\n" {
			t.Errorf("%d: %q", s, got)
		}
	}
}

// rec records one response.
type rec struct {
	status  int
	headers []exchange.Header
	cl      int64
	body    bytes.Buffer
}

func (r *rec) WriteHeader(status int, _ []byte, hs []exchange.Header, cl int64) error {
	r.status, r.cl = status, cl
	r.headers = append([]exchange.Header(nil), hs...)
	return nil
}
func (r *rec) Write(p []byte) (int, error)                    { return r.body.Write(p) }
func (r *rec) SendFile(*os.File, int64, int64) (int64, error) { return 0, nil }
func (r *rec) Flush() error                                   { return nil }
func (r *rec) Abort()                                         {}

func (r *rec) header(name string) []string {
	var out []string
	for _, h := range r.headers {
		if strings.EqualFold(string(h.Name), name) {
			out = append(out, string(h.Value))
		}
	}
	return out
}

func TestWrite(t *testing.T) {
	retry := exchange.Header{Name: []byte("Retry-After"), Value: []byte("1")}
	for _, tc := range []struct {
		name    string
		hs      []exchange.Header
		status  int
		extra   []exchange.Header
		ctype   string
		body    string
		headers map[string]string
	}{
		{"plain", nil, 404, nil, "text/plain; charset=utf-8", "404 Not Found\n", nil},
		{"json with id", []exchange.Header{
			{Name: []byte("Accept"), Value: []byte("application/json")},
			{Name: []byte("X-Request-Id"), Value: []byte("abc-123")}},
			503, []exchange.Header{retry}, "application/json",
			`{"error":{"status":503,"message":"Service Unavailable","request_id":"abc-123"}}` + "\n",
			map[string]string{"Retry-After": "1"}},
		{"html, bad id dropped", []exchange.Header{
			{Name: []byte("accept"), Value: []byte("text/html")},
			{Name: []byte("x-request-id"), Value: []byte("<b>")}},
			502, nil, "text/html; charset=utf-8", string(Body(502, HTML)), nil},
		{"unknown status", nil, 599, nil, "text/plain; charset=utf-8", "599 Error\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w rec
			Write(&w, &exchange.Request{Headers: tc.hs}, tc.status, tc.extra...)
			if w.status != tc.status || w.body.String() != tc.body || w.cl != int64(len(tc.body)) {
				t.Errorf("got %d (length %d) %q, want %d %q", w.status, w.cl, w.body.String(), tc.status, tc.body)
			}
			if ct := w.header("Content-Type"); len(ct) != 1 || ct[0] != tc.ctype {
				t.Errorf("Content-Type %q, want %q", ct, tc.ctype)
			}
			if v := w.header("Vary"); len(v) != 1 || v[0] != "Accept" {
				t.Errorf("Vary %q", v)
			}
			for n, v := range tc.headers {
				if got := w.header(n); len(got) != 1 || got[0] != v {
					t.Errorf("%s: %q, want %q", n, got, v)
				}
			}
			if len(w.headers) != 2+len(tc.extra) {
				t.Errorf("headers %d, want %d", len(w.headers), 2+len(tc.extra))
			}
		})
	}
}

type discard struct{}

func (discard) WriteHeader(int, []byte, []exchange.Header, int64) error { return nil }
func (discard) Write(p []byte) (int, error)                             { return len(p), nil }
func (discard) SendFile(*os.File, int64, int64) (int64, error)          { return 0, nil }
func (discard) Flush() error                                            { return nil }
func (discard) Abort()                                                  {}

var retryAfter = exchange.Header{Name: []byte("Retry-After"), Value: []byte("1")}

func TestAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	browser := &exchange.Request{Headers: accept("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")}
	api := &exchange.Request{Headers: append(accept("application/json, text/plain, */*"),
		exchange.Header{Name: []byte("X-Request-ID"), Value: []byte("0123456789abcdef0123456789abcdef")})}
	var w discard
	for name, f := range map[string]func(){
		"negotiate":            func() { Negotiate(browser.Headers) },
		"write":                func() { Write(w, browser, 404) },
		"write with id, extra": func() { Write(w, api, 503, retryAfter) },
		"write unknown status": func() { Write(w, api, 599) },
	} {
		f() // fill the pools
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations, want 0", name, n)
		}
	}
}

func BenchmarkNegotiate(b *testing.B) {
	hs := accept("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8")
	b.ReportAllocs()
	for b.Loop() {
		Negotiate(hs)
	}
}

func BenchmarkWriteWithID(b *testing.B) {
	r := &exchange.Request{Headers: append(accept("application/json"),
		exchange.Header{Name: []byte("X-Request-ID"), Value: []byte("0123456789abcdef0123456789abcdef")})}
	b.ReportAllocs()
	for b.Loop() {
		Write(discard{}, r, 503, retryAfter)
	}
}
