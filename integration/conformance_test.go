package integration

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The HTTP/1.1 request corpus (testdata/conformance, converted from
// gunicorn's parser tests) through the real binary: each case's raw bytes go
// to krait on a fresh connection, and testdata/recorder writes down what the
// app received.

type corpusRequest struct {
	Method     string     `json:"method"`
	Target     string     `json:"target"`
	Version    [2]int     `json:"version"`
	Headers    [][]string `json:"headers"`
	BodyBase64 string     `json:"body_base64"`
}

type corpusCase struct {
	Name      string          `json:"name"`
	RawBase64 string          `json:"raw_base64"`
	Requests  []corpusRequest `json:"requests"`
	Error     string          `json:"error"`
	Config    map[string]any  `json:"config"`
}

type recorded struct {
	Method     string            `json:"method"`
	Target     string            `json:"target"`
	Protocol   string            `json:"protocol"`
	Headers    map[string]string `json:"headers"`
	BodyBase64 string            `json:"body_base64"`
}

// deviation is a case where krait deliberately does not do what gunicorn
// does. Every entry names the RFC section that justifies it.
type deviation struct {
	// statuses krait may answer instead (the app must not see the
	// request); nil means any 4xx or a closed connection.
	statuses []int
	why      string
}

// deviations lists krait's deliberate departures from gunicorn's outcome,
// beyond the general rule for HTTP/1.1 requests without Host (see
// noHostWhy), which is applied to every case it concerns.
var deviations = map[string]deviation{
	// An HTTP version krait does not serve.
	"invalid/version_02": {[]int{400, 505}, "RFC 9110 §15.6.6: unsupported major version -> 505"},
	// A raw byte >= 0x80 in the request target (internal/h1 refuses it,
	// as uvicorn and h11 do; gunicorn serves it).
	"valid/027": {[]int{400}, "RFC 9112 §3.2, RFC 3986 §2: a request-target is ASCII; raw obs-text bytes get 400"},
}

// unsendable lists cases that cannot be run over a socket as they are.
var unsendable = map[string]string{
	"valid/099": "its body is 9315 bytes shorter than its Content-Length: gunicorn's test parses a partial body, over a socket the request can never complete",
}

// noHostWhy is the deviation applied to HTTP/1.1 requests without Host.
const noHostWhy = "RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host"

// ignorableConfig lists settings that do not change a case's outcome.
var ignorableConfig = map[string]string{
	"valid/pp_03|proxy_protocol": "the bytes carry no PROXY header",
}

// configFlags maps a case's gunicorn settings to krait flags, or returns
// why the case is skipped.
func configFlags(name string, cfg map[string]any) (flags []string, skip string) {
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		if _, ok := ignorableConfig[name+"|"+key]; ok {
			continue
		}
		v := cfg[key]
		n, isNum := v.(float64)
		switch key {
		case "limit_request_line":
			flags = append(flags, "--limit-request-line", strconv.Itoa(int(n)))
		case "limit_request_fields":
			flags = append(flags, "--limit-request-fields", strconv.Itoa(int(n)))
		case "limit_request_field_size":
			if !isNum || n < 64 {
				return nil, fmt.Sprintf("limit_request_field_size=%v: krait's --limit-request-field_size is at least 64 (gunicorn's 0 means its default)", v)
			}
			flags = append(flags, "--limit-request-field_size", strconv.Itoa(int(n)))
		case "proxy_protocol":
			return nil, "PROXY protocol is not supported by krait"
		case "permit_obsolete_folding":
			return nil, "krait has no switch to accept obs-fold (RFC 9112 §5.2 lets a server reject it)"
		case "strip_header_spaces":
			return nil, "krait has no switch to accept whitespace before ':' (RFC 9112 §5.1 requires 400)"
		case "permit_unconventional_http_method", "casefold_http_method":
			return nil, "krait has no method leniency switches"
		case "header_map":
			return nil, "krait always drops header names with '_' (no header_map setting)"
		case "forwarded_allow_ips":
			return nil, "krait does not interpret X-Forwarded-* headers"
		default:
			return nil, "unknown gunicorn setting " + key
		}
	}
	return flags, ""
}

func loadCorpus(t *testing.T) []corpusCase {
	t.Helper()
	path := filepath.Join(repoRoot, "testdata", "conformance", "http1-requests.json")
	b, err := os.ReadFile(path)
	if err != nil {
		// The corpus is part of the repository: missing, the test fails.
		t.Fatalf("conformance corpus missing: %v", err)
	}
	var corpus struct {
		Cases []corpusCase `json:"cases"`
	}
	if err := json.Unmarshal(b, &corpus); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return corpus.Cases
}

// envHeaders turns corpus headers into the environ entries the app sees:
// HTTP_NAME (CONTENT_TYPE/CONTENT_LENGTH bare), repeats joined with ", ",
// names with '_' dropped.
func envHeaders(headers [][]string) map[string]string {
	out := map[string]string{}
	for _, h := range headers {
		name, value := h[0], h[1]
		if strings.Contains(name, "_") {
			continue
		}
		key := strings.ReplaceAll(strings.ToUpper(name), "-", "_")
		if key != "CONTENT_TYPE" && key != "CONTENT_LENGTH" {
			key = "HTTP_" + key
		}
		if prev, ok := out[key]; ok {
			value = prev + ", " + value
		}
		out[key] = value
	}
	return out
}

func hasHost(r corpusRequest) bool {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], "host") {
			return true
		}
	}
	return false
}

// compareRecord returns "" when rec is what the app must see for want.
func compareRecord(want corpusRequest, rec recorded) string {
	var diffs []string
	if rec.Method != want.Method {
		diffs = append(diffs, fmt.Sprintf("method %q, want %q", rec.Method, want.Method))
	}
	if rec.Target != want.Target {
		diffs = append(diffs, fmt.Sprintf("target %q, want %q", rec.Target, want.Target))
	}
	if wp := fmt.Sprintf("HTTP/%d.%d", want.Version[0], want.Version[1]); rec.Protocol != wp {
		diffs = append(diffs, fmt.Sprintf("protocol %q, want %q", rec.Protocol, wp))
	}
	wantBody, _ := base64.StdEncoding.DecodeString(want.BodyBase64)
	gotBody, _ := base64.StdEncoding.DecodeString(rec.BodyBase64)
	if !bytes.Equal(wantBody, gotBody) {
		diffs = append(diffs, fmt.Sprintf("body %q, want %q", gotBody, wantBody))
	}
	wh := envHeaders(want.Headers)
	for k, v := range wh {
		if got, ok := rec.Headers[k]; !ok || got != v {
			diffs = append(diffs, fmt.Sprintf("%s = %q (present %v), want %q", k, got, ok, v))
		}
	}
	for k, v := range rec.Headers {
		if _, sent := wh[k]; k == "HTTP_X_REQUEST_ID" && !sent && generatedIDRE.MatchString(v) {
			continue // krait gives a request without an X-Request-ID one (errpage_test.go)
		}
		if _, ok := wh[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s = %q", k, v))
		}
	}
	return strings.Join(diffs, "; ")
}

// corpusServer is one krait running the recorder for cases sharing flags.
type corpusServer struct {
	k      *Krait
	record string
	offset int
	seq    int
}

func startCorpusServer(t *testing.T, flags []string) *corpusServer {
	t.Helper()
	record := filepath.Join(t.TempDir(), "requests.jsonl")
	args := []string{"app:application", "--chdir", testdataDir("recorder"),
		"--env", "KRAIT_RECORD_FILE=" + record, "-w", "1", "--threads", "1",
		"--header-timeout", "5", "--keep-alive", "5"}
	k := startKrait(t, nil, append(args, flags...)...)
	return &corpusServer{k: k, record: record}
}

// exchange sends raw (whole or byte by byte) and returns the responses
// read and what the app recorded for this connection.
func (s *corpusServer) exchange(t *testing.T, raw []byte, bytewise bool, wantResponses int) ([]rawResponse, []recorded) {
	t.Helper()
	c := dial(t, s.k.Addr())
	setDeadline(c)
	if bytewise {
		for i := range raw {
			if _, err := c.Write(raw[i : i+1]); err != nil {
				break // krait may close early on a bad request
			}
		}
	} else {
		c.Write(raw)
	}
	var resps []rawResponse
	if wantResponses > 0 {
		resps, _ = readResponses(bufio.NewReader(c), wantResponses, "GET")
	} else {
		// Invalid input: signal the end of it, then read whatever krait
		// answers until it closes.
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		resps, _ = readResponses(bufio.NewReader(c), 10, "GET")
	}
	c.Close()
	return resps, s.collect(t)
}

// collect returns the records written since the last call: it sends a
// sentinel request (one worker thread serves requests in order) and takes
// every record before the sentinel's.
func (s *corpusServer) collect(t *testing.T) []recorded {
	t.Helper()
	s.seq++
	sentinel := fmt.Sprintf("/__sentinel__/%d", s.seq)
	c := dial(t, s.k.Addr())
	setDeadline(c)
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: sentinel\r\nConnection: close\r\n\r\n", sentinel)
	if resps, err := readResponses(bufio.NewReader(c), 1, "GET"); len(resps) != 1 || resps[0].Status != 200 {
		t.Fatalf("sentinel request failed: %v %v", resps, err)
	}
	c.Close()
	b, err := os.ReadFile(s.record)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []recorded
	for _, line := range strings.SplitAfter(string(b[s.offset:]), "\n") {
		if !strings.HasSuffix(line, "\n") {
			break
		}
		s.offset += len(line)
		var r recorded
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("bad record %q: %v", line, err)
		}
		if r.Target == sentinel {
			return out
		}
		out = append(out, r)
	}
	t.Fatalf("sentinel %s not recorded", sentinel)
	return nil
}

// rejected reports whether resps/recs show a refused request: nothing
// reached the app and krait answered one of statuses (any 4xx when nil)
// or closed the connection.
func rejected(resps []rawResponse, recs []recorded, statuses []int) string {
	if len(recs) > 0 {
		return fmt.Sprintf("the app received %d request(s), first %s %q", len(recs), recs[0].Method, recs[0].Target)
	}
	for _, r := range resps {
		ok := r.Status >= 400 && r.Status <= 499
		if statuses != nil {
			ok = false
			for _, s := range statuses {
				ok = ok || r.Status == s
			}
		}
		if !ok {
			return fmt.Sprintf("answered %d", r.Status)
		}
	}
	return ""
}

// addHost inserts "Host: conformance.test" after each request line of a
// case whose HTTP/1.1 requests lack Host, so the rest of the case can be
// checked under RFC 9112 §3.2; ok is false when the request lines cannot
// be found unambiguously.
func addHost(c corpusCase, raw []byte) ([]byte, []corpusRequest, bool) {
	const host = "Host: conformance.test\r\n"
	var out []byte
	rest := raw
	var reqs []corpusRequest
	for _, r := range c.Requests {
		line := latin1Bytes(fmt.Sprintf("%s %s HTTP/%d.%d\r\n", r.Method, r.Target, r.Version[0], r.Version[1]))
		i := bytes.Index(rest, line)
		if i < 0 {
			return nil, nil, false
		}
		out = append(out, rest[:i+len(line)]...)
		if r.Version == [2]int{1, 1} && !hasHost(r) {
			out = append(out, host...)
			r.Headers = append(append([][]string{}, r.Headers...), []string{"HOST", "conformance.test"})
		}
		reqs = append(reqs, r)
		rest = rest[i+len(line):]
	}
	return append(out, rest...), reqs, true
}

// latin1Bytes turns a corpus string (bytes decoded as Latin-1) back into bytes.
func latin1Bytes(s string) []byte {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return b
}

func TestConformanceCorpus(t *testing.T) {
	testPython(t)
	cases := loadCorpus(t)

	type group struct {
		flags []string
		cases []corpusCase
	}
	groups := map[string]*group{}
	var order []string
	var skipped []string
	for _, c := range cases {
		flags, skip := configFlags(c.Name, c.Config)
		if why, ok := unsendable[c.Name]; ok {
			skip = why
		}
		if skip != "" {
			skipped = append(skipped, c.Name+": "+skip)
			continue
		}
		key := strings.Join(flags, " ")
		if groups[key] == nil {
			groups[key] = &group{flags: flags}
			order = append(order, key)
		}
		groups[key].cases = append(groups[key].cases, c)
	}

	var pass, deviated, failed int
	var deviationLines []string
	for _, key := range order {
		g := groups[key]
		name := "default"
		if key != "" {
			name = strings.ReplaceAll(key, " ", "_")
		}
		t.Run(name, func(t *testing.T) {
			srv := startCorpusServer(t, g.flags)
			for _, c := range g.cases {
				raw, err := base64.StdEncoding.DecodeString(c.RawBase64)
				if err != nil {
					t.Fatalf("%s: bad base64: %v", c.Name, err)
				}
				outcome := runCase(t, srv, c, raw)
				switch {
				case strings.HasPrefix(outcome, "deviation: "):
					deviated++
					deviationLines = append(deviationLines, c.Name+" ("+strings.TrimPrefix(outcome, "deviation: ")+")")
				case outcome == "pass":
					pass++
				default:
					failed++
				}
			}
		})
	}
	for _, s := range skipped {
		t.Logf("skipped %s", s)
	}
	for _, d := range deviationLines {
		t.Logf("deviation %s", d)
	}
	t.Logf("conformance corpus through the binary: %d pass, %d deviations, %d skipped, %d failed (of %d cases)",
		pass, deviated, len(skipped), failed, len(cases))
}

// runCase runs one case whole and byte by byte; it returns "pass",
// "deviation: why" or "fail" (after reporting the failure).
func runCase(t *testing.T, srv *corpusServer, c corpusCase, raw []byte) string {
	t.Helper()
	outcome := "pass"
	fail := func(mode, format string, args ...any) {
		t.Errorf("%s [%s]: %s", c.Name, mode, fmt.Sprintf(format, args...))
		outcome = "fail"
	}
	for _, bytewise := range []bool{false, true} {
		mode := "whole"
		if bytewise {
			mode = "bytewise"
		}
		dev, isDev := deviations[c.Name]
		if c.Error != "" {
			resps, recs := srv.exchange(t, raw, bytewise, 0)
			statuses := []int(nil)
			if isDev {
				statuses = dev.statuses
			}
			if why := rejected(resps, recs, statuses); why != "" {
				fail(mode, "invalid request (%s) not rejected: %s", c.Error, why)
			} else if isDev && outcome == "pass" {
				if len(resps) > 0 && resps[0].Status >= 500 {
					outcome = "deviation: " + dev.why
				}
			}
			continue
		}

		// Valid: the app must see the requests, except those krait
		// rejects by design: a deviation entry, or HTTP/1.1 without Host.
		want := c.Requests
		firstNoHost := -1
		for i, r := range want {
			if r.Version == [2]int{1, 1} && !hasHost(r) {
				firstNoHost = i
				break
			}
		}
		if isDev {
			resps, recs := srv.exchange(t, raw, bytewise, 0)
			if why := rejected(resps, recs, dev.statuses); why != "" {
				// Not rejected after all: then it must be served right.
				if msg := checkServed(want, resps, recs); msg != "" {
					fail(mode, "deviation %q: neither rejected (%s) nor served (%s)", dev.why, why, msg)
				}
				continue
			}
			if outcome == "pass" {
				outcome = "deviation: " + dev.why
			}
			continue
		}
		if firstNoHost >= 0 {
			// Requests before the Host-less one are served, then 400.
			resps, recs := srv.exchange(t, raw, bytewise, firstNoHost+1)
			if msg := checkServed(want[:firstNoHost], resps, recs); msg != "" {
				fail(mode, "%s", msg)
				continue
			}
			if len(resps) != firstNoHost+1 || resps[firstNoHost].Status != 400 {
				fail(mode, "HTTP/1.1 request without Host: want 400 (%s), got %s", noHostWhy, statuses(resps))
				continue
			}
			if outcome == "pass" {
				outcome = "deviation: " + noHostWhy
			}
			// And the same case with Host added must be served as gunicorn does.
			if withHost, reqs, ok := addHost(c, raw); ok {
				resps, recs := srv.exchange(t, withHost, bytewise, len(reqs))
				if msg := checkServed(reqs, resps, recs); msg != "" {
					fail(mode+"+host", "%s", msg)
				}
			}
			continue
		}
		resps, recs := srv.exchange(t, raw, bytewise, len(want))
		if msg := checkServed(want, resps, recs); msg != "" {
			fail(mode, "%s", msg)
		}
	}
	return outcome
}

// checkServed returns "" when every wanted request reached the app as
// described and got a 200.
func checkServed(want []corpusRequest, resps []rawResponse, recs []recorded) string {
	if len(recs) != len(want) {
		return fmt.Sprintf("the app saw %d request(s), want %d; responses %s", len(recs), len(want), statuses(resps))
	}
	for i := range want {
		if d := compareRecord(want[i], recs[i]); d != "" {
			return fmt.Sprintf("request %d: %s", i, d)
		}
	}
	for i := range want {
		if i >= len(resps) || resps[i].Status != 200 {
			return fmt.Sprintf("responses %s, want %d x 200", statuses(resps), len(want))
		}
	}
	return ""
}

func statuses(resps []rawResponse) string {
	if len(resps) == 0 {
		return "[none: connection closed]"
	}
	var s []string
	for _, r := range resps {
		s = append(s, strconv.Itoa(r.Status))
	}
	return "[" + strings.Join(s, " ") + "]"
}
