package dispatch

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/worker/workertest"
)

// newLoggedEnv is newEnv with the pool's and the dispatcher's logs kept.
func newLoggedEnv(t *testing.T) (*env, *syncBuffer) {
	t.Helper()
	out, logs := &syncBuffer{}, &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	p, err := supervisor.Start(context.Background(), supervisor.Config{
		Worker:  workertest.Settings(2, workertest.EnvMode+"=ready", workertest.EnvCapacity+"="+strconv.Itoa(2)),
		Workers: 1, Log: log, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return &env{pool: p, d: New(p, Config{MaxQueue: 10, Log: log}), out: out}, logs
}

// workerPid opens a stream on the pool's only worker and returns its pid.
func workerPid(t *testing.T, e *env) int {
	t.Helper()
	s, err := e.pool.Open(context.Background(), 10)
	if err != nil {
		t.Fatalf("no worker: %v", err)
	}
	defer s.Close()
	return s.Worker().Pid()
}

// TestProtocolErrorReplacesWorker: an undecodable RESPONSE is reported to
// the worker layer (Stream.ProtocolError), which logs and kills the worker;
// the supervisor replaces it. The client gets 502, once.
func TestProtocolErrorReplacesWorker(t *testing.T) {
	e, logs := newLoggedEnv(t)
	before := workerPid(t, e)
	rec := e.serve(get("/respond?undecodable"))
	if rec.status != 502 || rec.aborted {
		t.Fatalf("status %d aborted=%v, want a 502", rec.status, rec.aborted)
	}
	deadline := time.Now().Add(30 * time.Second)
	for workerPid(t, e) == before {
		if time.Now().After(deadline) {
			t.Fatalf("worker %d was not replaced after a protocol error; log:\n%s", before, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rec := e.serve(get("/")); rec.status != 200 {
		t.Fatalf("the replacement worker answered %d", rec.status)
	}
	l := logs.String()
	if n := strings.Count(l, "worker broke the protocol, killing it"); n != 1 {
		t.Fatalf("%d protocol-error reports, want 1; log:\n%s", n, l)
	}
	if !strings.Contains(l, "undecodable RESPONSE") || !strings.Contains(l, "pid="+strconv.Itoa(before)) {
		t.Fatalf("the report does not name the frame and the pid %d; log:\n%s", before, l)
	}
}

// TestDroppedHeadersReported: the codec drops hop-by-hop fields and names
// them; the dispatcher logs each one, and the response goes on without it.
func TestDroppedHeadersReported(t *testing.T) {
	e, logs := newLoggedEnv(t)
	rec := e.serve(get("/respond?hop-by-hop"))
	if rec.status != 200 || rec.headers["X-Ok"] != "yes" {
		t.Fatalf("status %d headers %v", rec.status, rec.headers)
	}
	if _, ok := rec.headers["Connection"]; ok {
		t.Fatalf("Connection passed through: %v", rec.headers)
	}
	l := logs.String()
	if n := strings.Count(l, `msg="the application set a hop-by-hop header; dropped" header=Connection`); n != 1 {
		t.Fatalf("%d reports of the dropped Connection, want 1; log:\n%s", n, l)
	}
	if strings.Contains(l, "killing") {
		t.Fatalf("an app error killed the worker; log:\n%s", l)
	}
}
