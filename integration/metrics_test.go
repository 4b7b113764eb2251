package integration

// Tests of --metrics-bind (Prometheus metrics, /healthz, /readyz),
// --shutdown-delay and docs/deploy/kubernetes.yaml, through the real binary.

import (
	"bytes"
	"context"
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

	"github.com/coder/websocket"
	"gopkg.in/yaml.v3"

	"github.com/krait-server/krait/internal/config"
)

// metricsApp is the WSGI app of these tests, written to a temporary
// directory. It coordinates with the test through files in TEST_DIR, never
// through sleeps:
//   - /status/NNN answers NNN;
//   - /block?token=T appends "started T" to TEST_DIR/events.log and waits
//     (bounded) for TEST_DIR/release-T, then answers 200.
const metricsApp = `
import os, time

TEST_DIR = os.environ["KRAIT_TEST_DIR"]

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/status/"):
        code = int(path[len("/status/"):])
        start_response("%d X" % code, [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if path == "/block":
        token = environ["QUERY_STRING"].split("=", 1)[1]
        fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, ("started %s\n" % token).encode())
        os.close(fd)
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(TEST_DIR, "release-" + token)) and time.monotonic() < deadline:
            time.sleep(0.005)  # polling a file, not timing
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
`

var metricsListeningRE = regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)

// metricsKrait is a krait started with --metrics-bind 127.0.0.1:0.
type metricsKrait struct {
	*Krait
	dir     string // KRAIT_TEST_DIR
	metrics string // "127.0.0.1:PORT" of the metrics listener
}

func startMetricsKrait(t *testing.T, args ...string) *metricsKrait {
	t.Helper()
	appDir, dir := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(appDir, "metrics_app.py"), []byte(metricsApp), 0o644); err != nil {
		t.Fatal(err)
	}
	args = append([]string{"metrics_app:application", "--chdir", appDir, "--env", "KRAIT_TEST_DIR=" + dir,
		"--metrics-bind", "127.0.0.1:0"}, args...)
	k := startKrait(t, nil, args...)
	m := k.MustWaitLog(metricsListeningRE)
	return &metricsKrait{Krait: k, dir: dir, metrics: m[1]}
}

// probe GETs path on the metrics listener.
func (k *metricsKrait) probe(path string) (int, string) {
	k.t.Helper()
	c := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + k.metrics + path)
	if err != nil {
		k.t.Fatalf("GET %s on the metrics listener: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		k.t.Fatalf("GET %s: reading: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns the samples of /metrics: "name{labels}" -> value, labels
// as Prometheus prints them (sorted by name).
func (k *metricsKrait) scrape() map[string]float64 {
	k.t.Helper()
	code, body := k.probe("/metrics")
	if code != 200 {
		k.t.Fatalf("/metrics: %d %s", code, body)
	}
	samples := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			k.t.Fatalf("/metrics: bad line %q", line)
		}
		samples[line[:i]] = v
	}
	return samples
}

// sample is one value that must be present.
func sample(t *testing.T, s map[string]float64, name string) float64 {
	t.Helper()
	v, ok := s[name]
	if !ok {
		t.Fatalf("/metrics has no sample %s", name)
	}
	return v
}

// waitScrape scrapes until cond holds (a readiness check, bounded).
func (k *metricsKrait) waitScrape(what string, cond func(map[string]float64) bool) map[string]float64 {
	k.t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		s := k.scrape()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("timed out waiting for %s; last scrape:\n%v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var workerRSSRE = regexp.MustCompile(`^krait_worker_rss_bytes\{pid="(\d+)",worker="(\d+)"\}$`)

// workerPids returns worker id -> pid from the RSS series, with the RSS.
func workerPids(s map[string]float64) (pids map[string]int, rss map[string]float64) {
	pids, rss = map[string]int{}, map[string]float64{}
	for name, v := range s {
		if m := workerRSSRE.FindStringSubmatch(name); m != nil {
			pid, _ := strconv.Atoi(m[1])
			pids[m[2]] = pid
			rss[m[2]] = v
		}
	}
	return pids, rss
}

func parentPid(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("worker pid %d: %v", pid, err)
	}
	// "pid (comm) state ppid ...": comm may hold spaces; skip past ')'.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

func TestMetricsRequestsWorkersRSS(t *testing.T) {
	k := startMetricsKrait(t, "-w", "2")
	for path, n := range map[string]int{"/status/200": 5, "/status/503": 3, "/status/404": 2, "/status/302": 1} {
		for range n {
			req := mustRequest(t, "GET", k.URL(path), nil)
			resp, err := (&http.Client{Timeout: ioTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	// A client has its response a moment before krait's handler returns
	// and the worker's slot is released: wait for the counts to settle,
	// then check them exactly (more than 11 must never show up).
	s := k.waitScrape("11 requests counted", func(s map[string]float64) bool {
		n := 0.0
		for _, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
			n += s[`krait_http_requests_total{code="`+c+`",kind="app"}`]
		}
		return n >= 11 && s["krait_http_requests_in_flight"] == 0 && s[`krait_workers{state="idle"}`] == 2
	})
	// Exact counts: the scrapes and probes are on their own listener and
	// never counted as app requests.
	for name, want := range map[string]float64{
		`krait_http_requests_total{code="1xx",kind="app"}`:                 0,
		`krait_http_requests_total{code="2xx",kind="app"}`:                 5,
		`krait_http_requests_total{code="3xx",kind="app"}`:                 1,
		`krait_http_requests_total{code="4xx",kind="app"}`:                 2,
		`krait_http_requests_total{code="5xx",kind="app"}`:                 3,
		`krait_http_request_duration_seconds_count{kind="app"}`:            11,
		`krait_http_requests_in_flight`:                                    0,
		`krait_workers{state="idle"}`:                                      2,
		`krait_workers{state="busy"}`:                                      0,
		`krait_workers{state="starting"}`:                                  0,
		`krait_workers{state="stopping"}`:                                  0,
		`krait_workers{state="failing"}`:                                   0,
		`krait_worker_capacity{worker="1"}`:                                1,
		`krait_worker_capacity{worker="2"}`:                                1,
		`krait_queue_depth`:                                                0,
		`krait_worker_restarts_total{reason="died"}`:                       0,
		`krait_worker_restarts_total{reason="boot_failed"}`:                0,
		`krait_http_requests_total{code="4xx",kind="none"}`:                0,
		`krait_queue_wait_seconds_count`:                                   0,
		`krait_http_request_duration_seconds_bucket{kind="app",le="+Inf"}`: 11,
	} {
		if got := sample(t, s, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	pids, rss := workerPids(s)
	if len(pids) != 2 || pids["1"] == pids["2"] {
		t.Fatalf("RSS series for workers %v, want 2 distinct pids", pids)
	}
	for id, pid := range pids {
		if rss[id] <= 0 {
			t.Errorf("worker %s (pid %d): RSS %v, want > 0", id, pid, rss[id])
		}
		if pp := parentPid(t, pid); pp != k.PID() {
			t.Errorf("worker %s: pid %d is a child of %d, not of krait (%d)", id, pid, pp, k.PID())
		}
	}
	if sample(t, s, "process_resident_memory_bytes") <= 0 {
		t.Error("process_resident_memory_bytes <= 0")
	}
	if code, body := k.probe("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := k.probe("/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	// The metrics listener is not the app's, and the app's is not it.
	if code, _ := k.probe("/status/200"); code != 404 {
		t.Errorf("/status/200 on the metrics listener = %d, want 404", code)
	}
	if resp, body := k.Get("/metrics"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("/metrics on the app listener = %d %q, want the app's 200 ok", resp.StatusCode, body)
	}
}

func TestMetricsQueueAndRestarts(t *testing.T) {
	// --prefetch 0: the requests wait in krait's queue, whose waits the
	// histogram measures (prefetched ones wait in the worker's queue).
	k := startMetricsKrait(t, "-w", "1", "--threads", "1", "--prefetch", "0")
	events := filepath.Join(k.dir, "events.log")
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	block := func(token string) {
		defer wg.Done()
		c := &http.Client{Timeout: 2 * ioTimeout}
		resp, err := c.Get(k.URL("/block?token=" + token))
		if err != nil {
			errs <- err
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			errs <- fmt.Errorf("/block?token=%s: %d", token, resp.StatusCode)
		}
	}
	wg.Add(1)
	go block("a")
	waitFileContains(t, events, "started a\n", ioTimeout)
	wg.Add(2)
	go block("b")
	go block("c")
	s := k.waitScrape("two queued requests", func(s map[string]float64) bool { return s["krait_queue_depth"] == 2 })
	for name, want := range map[string]float64{
		`krait_workers{state="busy"}`:    1,
		`krait_workers{state="idle"}`:    0,
		`krait_worker_busy{worker="1"}`:  1,
		`krait_http_requests_in_flight`:  3,
		`krait_queue_wait_seconds_count`: 0,
	} {
		if got := sample(t, s, name); got != want {
			t.Errorf("with one request running and two queued: %s = %v, want %v", name, got, want)
		}
	}
	if code, body := k.probe("/readyz"); code != 200 {
		t.Errorf("/readyz with a busy worker = %d %q, want 200", code, body)
	}
	for _, tok := range []string{"a", "b", "c"} {
		touch(t, filepath.Join(k.dir, "release-"+tok))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s = k.waitScrape("the three requests counted", func(s map[string]float64) bool {
		return s[`krait_http_requests_total{code="2xx",kind="app"}`] >= 3 && s["krait_http_requests_in_flight"] == 0 &&
			s[`krait_workers{state="idle"}`] == 1
	})
	for name, want := range map[string]float64{
		`krait_queue_depth`:                                 0,
		`krait_queue_wait_seconds_count`:                    2,
		`krait_queue_wait_seconds_bucket{le="+Inf"}`:        2,
		`krait_http_requests_total{code="2xx",kind="app"}`:  3,
		`krait_http_requests_in_flight`:                     0,
		`krait_workers{state="idle"}`:                       1,
		`krait_worker_restarts_total{reason="died"}`:        0,
		`krait_worker_restarts_total{reason="died_early"}`:  0,
		`krait_worker_restarts_total{reason="retired"}`:     0,
		`krait_worker_restarts_total{reason="boot_failed"}`: 0,
	} {
		if got := sample(t, s, name); got != want {
			t.Errorf("after the three requests: %s = %v, want %v", name, got, want)
		}
	}
	if sum := sample(t, s, "krait_queue_wait_seconds_sum"); sum <= 0 {
		t.Errorf("krait_queue_wait_seconds_sum = %v, want > 0", sum)
	}

	// kill -9 the worker, which served requests: one restart, "died".
	pids, _ := workerPids(s)
	old := pids["1"]
	if old <= 0 {
		t.Fatalf("no pid for worker 1 in %v", pids)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s = k.waitScrape("the replacement worker", func(s map[string]float64) bool {
		p, _ := workerPids(s)
		return p["1"] != old && p["1"] > 0 && s[`krait_workers{state="idle"}`] == 1
	})
	for name, want := range map[string]float64{
		`krait_worker_restarts_total{reason="died"}`:        1,
		`krait_worker_restarts_total{reason="died_early"}`:  0,
		`krait_worker_restarts_total{reason="retired"}`:     0,
		`krait_worker_restarts_total{reason="boot_failed"}`: 0,
	} {
		if got := sample(t, s, name); got != want {
			t.Errorf("after kill -9: %s = %v, want %v", name, got, want)
		}
	}
	if resp, body := k.Get("/status/200"); resp.StatusCode != 200 || body != "ok" {
		t.Errorf("after the restart: %d %q", resp.StatusCode, body)
	}
}

// A WebSocket through the metrics middleware (and the access log in front
// of it): the recorder must not hide the engine's Hijack, the session is
// in flight while open, counted as 1xx and not timed.
func TestMetricsWebSocket(t *testing.T) {
	ak, _ := startASGI(t, "", "--metrics-bind", "127.0.0.1:0", "--access-logfile", "-")
	k := &metricsKrait{Krait: ak, metrics: ak.MustWaitLog(metricsListeningRE)[1]}
	c := wsDial(t, ak, "/ws/echo?tag=m", nil)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if typ, b, err := c.Read(ctx); err != nil || typ != websocket.MessageText || string(b) != "hello" {
		t.Fatalf("echo: %v %q %v", typ, b, err)
	}
	s := k.scrape()
	if got := sample(t, s, "krait_http_requests_in_flight"); got != 1 {
		t.Errorf("in flight with a WebSocket open = %v, want 1", got)
	}
	if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}
	s = k.waitScrape("the WebSocket counted", func(s map[string]float64) bool {
		return s[`krait_http_requests_total{code="1xx",kind="app"}`] >= 1 && s["krait_http_requests_in_flight"] == 0
	})
	for name, want := range map[string]float64{
		`krait_http_requests_total{code="1xx",kind="app"}`:      1,
		`krait_http_requests_total{code="2xx",kind="app"}`:      0,
		`krait_http_requests_total{code="4xx",kind="app"}`:      0,
		`krait_http_request_duration_seconds_count{kind="app"}`: 0,
	} {
		if got := sample(t, s, name); got != want {
			t.Errorf("after the WebSocket: %s = %v, want %v", name, got, want)
		}
	}
}

func TestReadyzDuringShutdownDelay(t *testing.T) {
	// 30s is far longer than the checks take; a second SIGTERM ends it.
	k := startMetricsKrait(t, "--shutdown-delay", "30")
	if code, body := k.probe("/readyz"); code != 200 || body != "ok\n" {
		t.Fatalf("/readyz before the stop = %d %q", code, body)
	}
	off := k.LogLen()
	k.Signal(syscall.SIGTERM)
	if _, ok := k.WaitLogFrom(off, regexp.MustCompile(`msg="shutdown delay`), ioTimeout); !ok {
		t.Fatalf("no shutdown-delay log line after SIGTERM; log:\n%s", k.Log())
	}
	// /readyz turns 503 before the delay starts: at once, no polling.
	if code, body := k.probe("/readyz"); code != 503 || body != "not ready: draining\n" {
		t.Errorf("/readyz during the shutdown delay = %d %q, want 503 draining", code, body)
	}
	if code, _ := k.probe("/healthz"); code != 200 {
		t.Errorf("/healthz during the shutdown delay = %d, want 200", code)
	}
	// The app listener still serves, on new connections too.
	c := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		resp, err := c.Get(k.URL("/status/200"))
		if err != nil {
			t.Fatalf("request %d during the shutdown delay: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("request %d during the shutdown delay: %d", i, resp.StatusCode)
		}
	}
	st := k.waitScrape("3 requests counted", func(s map[string]float64) bool {
		return s[`krait_http_requests_total{code="2xx",kind="app"}`] >= 3 && s["krait_http_requests_in_flight"] == 0
	})
	if got := sample(t, st, `krait_http_requests_total{code="2xx",kind="app"}`); got != 3 {
		t.Errorf("app 2xx during the delay = %v, want 3", got)
	}
	// A second signal ends the delay and stops at once.
	k.Signal(syscall.SIGTERM)
	code, ok := k.WaitExit(stopTimeout)
	if !ok {
		t.Fatal("krait did not exit after a second SIGTERM during the shutdown delay")
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", k.metrics, time.Second); err == nil {
		t.Error("the metrics listener still accepts after exit")
	}
}

func TestShutdownDelayEndsAndStops(t *testing.T) {
	k := startMetricsKrait(t, "--shutdown-delay", "0.5")
	off := k.LogLen()
	k.Signal(syscall.SIGTERM)
	// Without a second signal the delay ends by itself and the stop runs.
	code, ok := k.WaitExit(stopTimeout)
	if !ok || code != 0 {
		t.Fatalf("exit after SIGTERM with a 0.5s shutdown delay: ok %v, status %d; log:\n%s", ok, code, k.Log())
	}
	log := k.Log()[off:]
	delay, stopped := strings.Index(log, `msg="shutdown delay`), strings.Index(log, "msg=stopped")
	if delay < 0 || stopped < delay {
		t.Errorf("want the shutdown delay, then msg=stopped; log:\n%s", log)
	}
}

func TestMetricsBindErrors(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	python := testPython(t)
	code, _, stderr := runKrait(t, readyTimeout, "serve", "app:application", "-b", "127.0.0.1:0",
		"--python", python, "--metrics-bind", l.Addr().String())
	if code == 0 || !strings.Contains(stderr, "--metrics-bind") || !strings.Contains(stderr, "address already in use") {
		t.Errorf("metrics port taken: status %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = runKrait(t, readyTimeout, "serve", "app:application", "--python", python, "--metrics-bind", "nonsense")
	if code != 2 || !strings.Contains(stderr, "--metrics-bind") {
		t.Errorf("bad --metrics-bind: status %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = runKrait(t, readyTimeout, "serve", "app:application", "--python", python, "--shutdown-delay", "-1")
	if code != 2 || !strings.Contains(stderr, "--shutdown-delay") {
		t.Errorf("negative --shutdown-delay: status %d, stderr:\n%s", code, stderr)
	}
}

// The Kubernetes manifest we ship must agree with the flags it passes:
// probe paths and ports, and grace periods that fit the stop sequence.
func TestKubernetesManifest(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy", "kubernetes.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	type probe struct {
		HTTPGet *struct {
			Path string    `yaml:"path"`
			Port yaml.Node `yaml:"port"`
		} `yaml:"httpGet"`
		PeriodSeconds    int `yaml:"periodSeconds"`
		FailureThreshold int `yaml:"failureThreshold"`
	}
	type container struct {
		Name    string   `yaml:"name"`
		Command []string `yaml:"command"`
		Args    []string `yaml:"args"`
		Ports   []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		Lifecycle      *struct {
			PreStop *struct {
				Sleep *struct {
					Seconds int `yaml:"seconds"`
				} `yaml:"sleep"`
				Exec *struct {
					Command []string `yaml:"command"`
				} `yaml:"exec"`
			} `yaml:"preStop"`
		} `yaml:"lifecycle"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
		} `yaml:"resources"`
	}
	type doc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			// Deployment
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
					Containers                    []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
			// Service
			Ports []struct {
				Port       int       `yaml:"port"`
				TargetPort yaml.Node `yaml:"targetPort"`
			} `yaml:"ports"`
			// HorizontalPodAutoscaler
			ScaleTargetRef struct {
				Kind string `yaml:"kind"`
				Name string `yaml:"name"`
			} `yaml:"scaleTargetRef"`
			MinReplicas int `yaml:"minReplicas"`
			MaxReplicas int `yaml:"maxReplicas"`
		} `yaml:"spec"`
	}
	docs := map[string]*doc{}
	var service map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("kubernetes.yaml: %v", err)
		}
		d := &doc{}
		var raw map[string]any
		if err := n.Decode(&raw); err != nil {
			t.Fatal(err)
		}
		// A Service's selector is a plain map: Deployment's struct
		// ignores it, and raw keeps it.
		if err := n.Decode(d); err != nil {
			t.Fatalf("kubernetes.yaml %v: %v", raw["kind"], err)
		}
		if d.Kind == "Service" {
			service = raw
		}
		if docs[d.Kind] != nil {
			t.Fatalf("kubernetes.yaml has two %s documents", d.Kind)
		}
		docs[d.Kind] = d
	}
	dep, svcDoc, hpa := docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
	if dep == nil || svcDoc == nil || hpa == nil {
		t.Fatalf("kubernetes.yaml must hold a Deployment, a Service and a HorizontalPodAutoscaler; has %v", docs)
	}
	cs := dep.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("%d containers, want 1", len(cs))
	}
	c := cs[0]
	if len(c.Command) != 1 || c.Command[0] != "krait" || len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("the container must run krait serve: command %v args %v", c.Command, c.Args)
	}
	// The real flag parser: the args must be valid krait serve flags.
	cfg, err := config.ParseServe(c.Args[1:], io.Discard, func(string) string { return "" },
		func(p string) (string, error) { return "/usr/bin/" + filepath.Base(p), nil })
	if err != nil {
		t.Fatalf("the container's args do not parse: %v", err)
	}
	if cfg.MetricsBind == nil || cfg.MetricsBind.Network == "unix" || len(cfg.Binds) != 1 {
		t.Fatalf("want one TCP --bind and a TCP --metrics-bind, got %v and %v", cfg.Binds, cfg.MetricsBind)
	}
	portOf := func(addr string) int {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	appPort, metricsPort := portOf(cfg.Binds[0].Address), portOf(cfg.MetricsBind.Address)
	for _, a := range []string{cfg.Binds[0].Address, cfg.MetricsBind.Address} {
		if h, _, _ := net.SplitHostPort(a); h != "0.0.0.0" && h != "" && h != "::" {
			t.Errorf("%s: in a pod, bind every address so the kubelet and the Service reach it", a)
		}
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["http"] != appPort || ports["metrics"] != metricsPort {
		t.Errorf("container ports %v, want http=%d (--bind) and metrics=%d (--metrics-bind)", ports, appPort, metricsPort)
	}
	resolve := func(n yaml.Node) int {
		if p, err := strconv.Atoi(n.Value); err == nil {
			return p
		}
		p, ok := ports[n.Value]
		if !ok {
			t.Errorf("port %q is not a named container port", n.Value)
		}
		return p
	}
	for name, pr := range map[string]*probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if pr == nil || pr.HTTPGet == nil {
			t.Errorf("missing httpGet probe for %s", name)
			continue
		}
		if pr.HTTPGet.Path != name || resolve(pr.HTTPGet.Port) != metricsPort {
			t.Errorf("probe %s: path %q port %d, want %s on %d", name, pr.HTTPGet.Path, resolve(pr.HTTPGet.Port), name, metricsPort)
		}
	}
	// Grace periods: preStop (if any) + --shutdown-delay + --graceful-timeout
	// + a margin for stopping the workers must fit the pod's grace period,
	// or Kubernetes SIGKILLs a krait still draining.
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		switch ps := c.Lifecycle.PreStop; {
		case ps.Sleep != nil:
			preStop = time.Duration(ps.Sleep.Seconds) * time.Second
		case ps.Exec != nil && len(ps.Exec.Command) == 2 && ps.Exec.Command[0] == "sleep":
			n, err := strconv.Atoi(ps.Exec.Command[1])
			if err != nil {
				t.Fatalf("preStop %v", ps.Exec.Command)
			}
			preStop = time.Duration(n) * time.Second
		default:
			t.Fatalf("preStop hook this test does not understand: %+v", ps)
		}
	}
	const margin = 5 * time.Second
	grace := dep.Spec.Template.Spec.TerminationGracePeriodSeconds
	if grace == nil {
		t.Fatal("terminationGracePeriodSeconds must be set (the default 30s does not fit --graceful-timeout 30)")
	}
	need := preStop + cfg.ShutdownDelay + cfg.GracefulTimeout + margin
	if time.Duration(*grace)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %d < preStop %v + shutdown-delay %v + graceful-timeout %v + margin %v",
			*grace, preStop, cfg.ShutdownDelay, cfg.GracefulTimeout, margin)
	}
	if cfg.ShutdownDelay+preStop <= 0 {
		t.Error("no --shutdown-delay nor preStop: the listener closes before load balancers notice")
	}
	// The readiness probe must notice the 503 within the delay.
	if rp := c.ReadinessProbe; rp != nil {
		notice := time.Duration(rp.PeriodSeconds*max(rp.FailureThreshold, 1)) * time.Second
		if notice > cfg.ShutdownDelay+preStop {
			t.Errorf("readiness notices a stop after %v, longer than the shutdown delay %v", notice, cfg.ShutdownDelay+preStop)
		}
	}
	// The Service sends to the pods of the Deployment, on the app port.
	sel, _ := service["spec"].(map[string]any)["selector"].(map[string]any)
	if len(sel) == 0 {
		t.Error("the Service has no selector")
	}
	for k, v := range sel {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("Service selector %s=%v does not match the pod labels %v", k, v, dep.Spec.Template.Metadata.Labels)
		}
	}
	for k, v := range dep.Spec.Selector.MatchLabels {
		if dep.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("Deployment selector %s=%s does not match its pod labels", k, v)
		}
	}
	if len(svcDoc.Spec.Ports) != 1 || resolve(svcDoc.Spec.Ports[0].TargetPort) != appPort {
		t.Errorf("Service ports %+v, want one with targetPort the app port %d", svcDoc.Spec.Ports, appPort)
	}
	// The autoscaler scales this Deployment, on CPU, which needs requests.
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != dep.Metadata.Name {
		t.Errorf("HPA targets %s/%s, want Deployment/%s", hpa.Spec.ScaleTargetRef.Kind, hpa.Spec.ScaleTargetRef.Name, dep.Metadata.Name)
	}
	if hpa.Spec.MinReplicas < 1 || hpa.Spec.MaxReplicas < hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %d..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if c.Resources.Requests["cpu"] == "" {
		t.Error("the container has no CPU request: a CPU-utilization HPA cannot work")
	}
}

// Requests are labelled by the kind of the route that served them: a
// --static mount is "static", the app "app".
func TestMetricsStaticKind(t *testing.T) {
	assets := t.TempDir()
	if err := os.WriteFile(filepath.Join(assets, "a.css"), []byte("body{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := startMetricsKrait(t, "--static", "/assets="+assets)
	for path, want := range map[string]int{"/assets/a.css": 200, "/assets/missing.css": 404, "/status/200": 200} {
		if resp, _ := k.Get(path); resp.StatusCode != want {
			t.Fatalf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, _ := k.Get("/assets/a.css")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /assets/a.css again: %d", resp.StatusCode)
	}
	s := k.waitScrape("4 requests counted", func(s map[string]float64) bool {
		return s[`krait_http_requests_total{code="2xx",kind="static"}`]+s[`krait_http_requests_total{code="4xx",kind="static"}`]+
			s[`krait_http_requests_total{code="2xx",kind="app"}`] >= 4 && s["krait_http_requests_in_flight"] == 0
	})
	for name, want := range map[string]float64{
		`krait_http_requests_total{code="2xx",kind="static"}`:      2,
		`krait_http_requests_total{code="4xx",kind="static"}`:      1,
		`krait_http_requests_total{code="2xx",kind="app"}`:         1,
		`krait_http_requests_total{code="4xx",kind="app"}`:         0,
		`krait_http_request_duration_seconds_count{kind="static"}`: 3,
		`krait_http_request_duration_seconds_count{kind="app"}`:    1,
	} {
		if got := sample(t, s, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
