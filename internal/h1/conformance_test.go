package h1

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

// The corpus lives in the repository (testdata/conformance, with its
// license); a missing copy fails the test rather than skipping it.
const corpusPath = "../../testdata/conformance/http1-requests.json"

type confCorpus struct {
	Cases []confCase `json:"cases"`
}

type confCase struct {
	Name     string         `json:"name"`
	Raw      string         `json:"raw_base64"`
	Requests []confRequest  `json:"requests"`
	Error    string         `json:"error"`
	Config   map[string]any `json:"config"`
}

type confRequest struct {
	Method   string      `json:"method"`
	Target   string      `json:"target"`
	Version  [2]int      `json:"version"`
	Headers  [][2]string `json:"headers"`
	Body     string      `json:"body_base64"`
	Trailers [][2]string `json:"trailers"`
}

// confDeviations are the places where krait deliberately decides
// differently from gunicorn. Each is checked both ways: the default engine
// must show krait's behaviour, and (where a test switch exists) the rest of
// the case must still pass as written.
var confDeviations = []struct{ rule, rfc string }{
	{"HTTP/1.1 request without Host is answered 400 (gunicorn serves it); the case is re-run with the check off and must then pass as written", "RFC 9112 §3.2"},
	{"a body shorter than its Content-Length (connection closed early) reads as io.ErrUnexpectedEOF after the bytes received, not a clean io.EOF (gunicorn delivers the short body); the head and received bytes must match", "RFC 9112 §8"},
	{"a request target with raw bytes >= 0x80 is answered 400 (this corpus case has gunicorn serve it; uvicorn and h11 refuse it); the requests before it must be served as written", "RFC 9112 §3.2, RFC 3986 §2"},
}

// confSkips are corpus cases that only hold under a gunicorn setting krait
// does not have.
var confSkips = map[string]string{
	"valid/028":                  "strip_header_spaces: krait always refuses whitespace before the colon (RFC 9112 §5.1)",
	"valid/031compat":            "permit_unconventional_http_method/casefold: krait always refuses lowercase methods",
	"valid/031compat2":           "permit_unconventional_http_method: krait always refuses lowercase methods",
	"valid/040_compat":           "header_map=dangerous: krait always drops field names containing '_'",
	"invalid/040":                "header_map=refuse: krait drops field names containing '_' instead of refusing the request",
	"invalid/chunked_07":         "header_map=refuse: krait drops field names containing '_' instead of refusing the request",
	"valid/compat_obs_fold":      "permit_obsolete_folding: krait always refuses obs-fold (RFC 9112 §5.2)",
	"valid/compat_obs_fold_huge": "permit_obsolete_folding: krait always refuses obs-fold (RFC 9112 §5.2)",
	"valid/pp_01":                "PROXY protocol is not part of the engine",
	"valid/pp_02":                "PROXY protocol is not part of the engine",
	"valid/pp_04":                "PROXY protocol is not part of the engine",
	"valid/pp_05":                "PROXY protocol is not part of the engine",
	"invalid/pp_01":              "PROXY protocol is not part of the engine",
	"invalid/pp_02":              "PROXY protocol is not part of the engine",
	"invalid/pp_03":              "PROXY protocol is not part of the engine",
	"invalid/019":                "forwarded_allow_ips: the engine does not interpret X-Forwarded-*",
}

// confIgnorableConfig lists config keys that do not change a case's
// outcome for krait.
var confIgnorableConfig = map[string]string{
	"valid/pp_03|proxy_protocol":          "the bytes carry no PROXY header",
	"invalid/013|permit_obsolete_folding": "krait refuses obs-fold regardless; the case is invalid either way",
}

// configFor maps a case's gunicorn settings to a Config.
func configFor(c *confCase) (Config, string) {
	var cfg Config
	keys := make([]string, 0, len(c.Config))
	for k := range c.Config {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, _ := c.Config[k].(float64)
		switch k {
		case "limit_request_line":
			cfg.LimitRequestLine = int(v)
		case "limit_request_field_size":
			cfg.LimitRequestFieldSize = int(v) // 0 means the default in both
		case "limit_request_fields":
			cfg.LimitRequestFields = int(v)
		default:
			if _, ok := confIgnorableConfig[c.Name+"|"+k]; !ok {
				return cfg, "unmapped gunicorn setting " + k
			}
		}
	}
	return cfg, ""
}

// latin1 turns the corpus's strings (bytes decoded as Latin-1) back into bytes.
func latin1(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return string(b)
}

// recorded is what the recording handler saw of one request.
type recorded struct {
	method, target    string
	major, minor      int
	headers, trailers [][2]string
	body              []byte
	bodyErr           error
}

type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

func copyHeaders(hs []exchange.Header) [][2]string {
	var out [][2]string
	for _, h := range hs {
		out = append(out, [2]string{string(h.Name), string(h.Value)})
	}
	return out
}

func (rec *recorder) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	got := recorded{
		method: string(r.Method), target: string(r.Target),
		major: r.ProtoMajor, minor: r.ProtoMinor,
		headers: copyHeaders(r.Headers),
	}
	got.body, got.bodyErr = io.ReadAll(r.Body)
	got.trailers = copyHeaders(r.Trailers)
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, got)
	rec.mu.Unlock()
	if got.bodyErr != nil {
		return // the engine answers for a broken body
	}
	_ = w.WriteHeader(200, nil, nil, 2)
	_, _ = w.Write([]byte("ok"))
}

func (rec *recorder) take() []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	r := rec.reqs
	rec.reqs = nil
	return r
}

// feed sends raw in the given pieces, half-closes, and returns everything
// the server sent until it closed.
func feed(addr string, pieces [][]byte) ([]byte, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var got bytes.Buffer
	readDone := make(chan error, 1)
	go func() {
		_, err := io.Copy(&got, c)
		readDone <- err
	}()
	for i, p := range pieces {
		if _, err := c.Write(p); err != nil {
			break // the server may refuse early and close: fine
		}
		if len(pieces) < 10 && i < len(pieces)-1 {
			// Give the server a chance to read the piece on its own so the
			// split lands on a read boundary (not asserted: best effort).
			time.Sleep(2 * time.Millisecond)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	err = <-readDone
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return got.Bytes(), fmt.Errorf("server did not close the connection: %w", err)
	}
	return got.Bytes(), nil // a reset after a refusal is a close too
}

// splits returns the ways a case is fed: whole, byte by byte, and cut in
// two at awkward places (between CR and LF, mid-field, around the end of
// the head, mid-body).
func splits(raw []byte) map[string][][]byte {
	modes := map[string][][]byte{"whole": {raw}}
	var bytewise [][]byte
	for i := range raw {
		bytewise = append(bytewise, raw[i:i+1])
	}
	modes["bytewise"] = bytewise
	points := map[int]bool{}
	if i := bytes.Index(raw, []byte("\r\n")); i >= 0 {
		points[i+1] = true
	}
	if i := bytes.IndexByte(raw, ':'); i >= 0 {
		points[i] = true
	}
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		points[i+3] = true
		points[i+4] = true
	}
	points[len(raw)/2] = true
	for p := range points {
		if p > 0 && p < len(raw) {
			modes[fmt.Sprintf("split@%d", p)] = [][]byte{raw[:p], raw[p:]}
		}
	}
	return modes
}

// checkValid compares what the handler saw with the expected requests and
// checks one 200 per request came back.
func checkValid(want []confRequest, got []recorded, resp []byte) error {
	return checkRequests(want, got, resp, false)
}

// checkRequests is checkValid; with truncated, the last request's body is
// expected to end in io.ErrUnexpectedEOF and get no response.
func checkRequests(want []confRequest, got []recorded, resp []byte, truncated bool) error {
	if len(got) != len(want) {
		return fmt.Errorf("handler saw %d requests, want %d (response %q)", len(got), len(want), clip(resp))
	}
	for i, w := range want {
		g := got[i]
		last := truncated && i == len(want)-1
		if last && !errors.Is(g.bodyErr, io.ErrUnexpectedEOF) {
			return fmt.Errorf("request %d: body error %v, want unexpected EOF", i, g.bodyErr)
		}
		if g.bodyErr != nil && !last {
			return fmt.Errorf("request %d: body error %v", i, g.bodyErr)
		}
		if g.method != w.Method || g.target != latin1(w.Target) || g.major != w.Version[0] || g.minor != w.Version[1] {
			return fmt.Errorf("request %d: got %s %q HTTP/%d.%d, want %s %q HTTP/%d.%d",
				i, g.method, g.target, g.major, g.minor, w.Method, latin1(w.Target), w.Version[0], w.Version[1])
		}
		if err := sameFields(g.headers, w.Headers); err != nil {
			return fmt.Errorf("request %d headers: %w", i, err)
		}
		if err := sameFields(g.trailers, w.Trailers); err != nil {
			return fmt.Errorf("request %d trailers: %w", i, err)
		}
		body, _ := base64.StdEncoding.DecodeString(w.Body)
		if !bytes.Equal(g.body, body) {
			return fmt.Errorf("request %d: body %q, want %q", i, clip(g.body), clip(body))
		}
	}
	br := bufio.NewReader(bytes.NewReader(resp))
	n := len(want)
	if truncated {
		n--
	}
	for i := 0; i < n; i++ {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("response %d: %v (all: %q)", i, err, clip(resp))
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if r.StatusCode != 200 {
			return fmt.Errorf("response %d: status %d", i, r.StatusCode)
		}
	}
	if truncated && br.Buffered() > 0 {
		return fmt.Errorf("a response to the truncated request: %q", clip(resp))
	}
	return nil
}

// truncatedBody reports whether the last expected request declares a
// Content-Length larger than the body the corpus carries.
func truncatedBody(reqs []confRequest) bool {
	if len(reqs) == 0 {
		return false
	}
	r := reqs[len(reqs)-1]
	body, _ := base64.StdEncoding.DecodeString(r.Body)
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], "content-length") {
			var n int
			_, err := fmt.Sscan(h[1], &n)
			return err == nil && n > len(body)
		}
	}
	return false
}

func sameFields(got, want [][2]string) error {
	if len(got) != len(want) {
		return fmt.Errorf("got %d fields %q, want %d %q", len(got), got, len(want), want)
	}
	for i := range want {
		if !strings.EqualFold(got[i][0], want[i][0]) || got[i][1] != latin1(want[i][1]) {
			return fmt.Errorf("field %d: got %q: %q, want %q: %q", i, got[i][0], clip([]byte(got[i][1])), want[i][0], clip([]byte(latin1(want[i][1]))))
		}
	}
	return nil
}

// checkRefused checks no request reached the handler with a clean body and
// that whatever came back is an error status.
func checkRefused(got []recorded, resp []byte) error {
	for _, g := range got {
		if g.bodyErr == nil {
			return fmt.Errorf("reached the handler: %s %q", g.method, clip([]byte(g.target)))
		}
	}
	if len(resp) == 0 {
		return nil // closed
	}
	r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
	if err != nil {
		return fmt.Errorf("unparsable response %q: %v", clip(resp), err)
	}
	if r.StatusCode < 400 {
		return fmt.Errorf("status %d, want an error", r.StatusCode)
	}
	if !r.Close {
		return fmt.Errorf("error response without Connection: close")
	}
	return nil
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return append(append([]byte{}, b[:200]...), "..."...)
	}
	return b
}

// firstHostless is the index of the first expected HTTP/1.1 request
// without Host, or -1.
func firstHostless(reqs []confRequest) int {
	for i, r := range reqs {
		if r.Version != [2]int{1, 1} {
			continue
		}
		has := false
		for _, h := range r.Headers {
			has = has || strings.EqualFold(h[0], "host")
		}
		if !has {
			return i
		}
	}
	return -1
}

func TestConformanceCorpus(t *testing.T) {
	data, err := os.ReadFile(corpusPath)
	if err != nil {
		t.Fatalf("conformance corpus missing: %v (it belongs in testdata/conformance)", err)
	}
	var corpus confCorpus
	if err := json.Unmarshal(data, &corpus); err != nil {
		t.Fatal(err)
	}
	var passed, deviated, skipped int
	var skippedNames []string
	for i := range corpus.Cases {
		c := &corpus.Cases[i]
		if reason, ok := confSkips[c.Name]; ok {
			skipped++
			skippedNames = append(skippedNames, c.Name+": "+reason)
			continue
		}
		cfg, reason := configFor(c)
		if reason != "" {
			skipped++
			skippedNames = append(skippedNames, c.Name+": "+reason)
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(c.Raw)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		hostless, truncated, rawTarget := -1, false, -1
		if c.Error == "" {
			hostless = firstHostless(c.Requests)
			truncated = truncatedBody(c.Requests)
			rawTarget = firstRawTarget(c.Requests)
		}
		ok := t.Run(c.Name, func(t *testing.T) {
			rec := &recorder{}
			srv, addr := startServer(t, rec, cfg)
			lenient, laddr := startServer(t, rec, cfg)
			lenient.opt.allowNoHost = true
			modes := splits(raw)
			names := make([]string, 0, len(modes))
			for m := range modes {
				names = append(names, m)
			}
			sort.Strings(names)
			for _, mode := range names {
				resp, err := feed(addr, modes[mode])
				got := rec.take()
				if err != nil {
					t.Errorf("%s: %v", mode, err)
					continue
				}
				switch {
				case c.Error != "":
					err = checkRefused(got, resp)
				case rawTarget >= 0:
					// Deviation: served up to the raw non-ASCII target, which gets 400.
					err = checkValid(c.Requests[:rawTarget], got, resp)
					if err == nil {
						err = checkStatusAt(resp, rawTarget, 400)
					}
				case hostless >= 0:
					// Deviation: served up to the Host-less request, which gets 400.
					err = checkValid(c.Requests[:hostless], got, resp)
					if err == nil {
						err = checkHostless(resp, hostless)
					}
					if err == nil {
						resp, err = feed(laddr, modes[mode])
						if err == nil {
							err = checkValid(c.Requests, rec.take(), resp)
						}
						if err != nil {
							err = fmt.Errorf("with the Host check off: %w", err)
						}
					}
				default:
					err = checkRequests(c.Requests, got, resp, truncated)
				}
				if err != nil {
					t.Errorf("%s: %v", mode, err)
				}
			}
			_ = srv
		})
		switch {
		case !ok:
		case hostless >= 0 || truncated || rawTarget >= 0:
			deviated++
		default:
			passed++
		}
	}
	t.Logf("conformance corpus: %d cases: %d pass as written, %d deviate deliberately (checked), %d skipped, %d failed",
		len(corpus.Cases), passed, deviated, skipped, len(corpus.Cases)-passed-deviated-skipped)
	for _, d := range confDeviations {
		t.Logf("deviation (%s): %s", d.rfc, d.rule)
	}
	for _, s := range skippedNames {
		t.Logf("skipped %s", s)
	}
}

// firstRawTarget is the index of the first expected request whose target
// has a byte >= 0x80, or -1.
func firstRawTarget(reqs []confRequest) int {
	for i, r := range reqs {
		for _, c := range []byte(latin1(r.Target)) {
			if c >= 0x80 {
				return i
			}
		}
	}
	return -1
}

// checkStatusAt checks that response number i (after i good ones) has the
// given status and is the last.
func checkStatusAt(resp []byte, i, status int) error {
	br := bufio.NewReader(bytes.NewReader(resp))
	for j := 0; j <= i; j++ {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("response %d: %v", j, err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if j == i && (r.StatusCode != status || !r.Close) {
			return fmt.Errorf("response %d: status %d close=%v, want %d and close", j, r.StatusCode, r.Close, status)
		}
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("data after the %d response", status)
	}
	return nil
}

// checkHostless checks that response number i (after i good ones) is 400.
func checkHostless(resp []byte, i int) error {
	br := bufio.NewReader(bytes.NewReader(resp))
	for j := 0; j <= i; j++ {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("response %d: %v", j, err)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		if j == i && r.StatusCode != 400 {
			return fmt.Errorf("HTTP/1.1 request without Host: status %d, want 400", r.StatusCode)
		}
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("data after the 400 response")
	}
	return nil
}
