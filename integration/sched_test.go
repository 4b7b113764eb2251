package integration

import (
	"strconv"
	"testing"
)

// TestWorkerRunsUnderSchedBatch: the worker process runs under
// SCHED_BATCH (Linux), so a worker woken by a frame does not preempt
// krait's Go front in the middle of its write when they share a core
// (python/krait_worker/__main__.py). SCHED_BATCH is 3 on Linux.
func TestWorkerRunsUnderSchedBatch(t *testing.T) {
	const schedBatch = 3
	for _, threads := range []string{"1", "2"} {
		t.Run("threads="+threads, func(t *testing.T) {
			k := startKrait(t, nil, "sched_app:application", "--chdir", supAppsDir(), "-w", "1", "--threads", threads)
			resp, body := k.Get("/")
			if resp.StatusCode != 200 {
				t.Fatalf("GET /: %d %q", resp.StatusCode, body)
			}
			if got, err := strconv.Atoi(body); err != nil || got != schedBatch {
				t.Fatalf("worker's scheduling policy = %q, want %d (SCHED_BATCH)", body, schedBatch)
			}
		})
	}
}
