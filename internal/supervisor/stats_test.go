package supervisor

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"
)

func states(st Stats) map[string]int {
	m := map[string]int{}
	for _, w := range st.Workers {
		m[w.State]++
	}
	return m
}

func TestStatsWorkersQueueAndRestarts(t *testing.T) {
	p := fakePool(t, 2, 1)
	st := p.Stats()
	if got := states(st); got[StateIdle] != 2 || len(st.Workers) != 2 || !st.Ready() {
		t.Fatalf("after start: states %v, ready %v; want 2 idle and ready", got, st.Ready())
	}
	for i, w := range st.Workers {
		if w.ID != i+1 || w.Pid <= 0 || w.Capacity != 1 || w.Busy != 0 {
			t.Errorf("worker %d: %+v", i, w)
		}
	}

	a, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := states(p.Stats()); got[StateBusy] != 2 {
		t.Errorf("two streams open: states %v, want 2 busy", got)
	}
	got := make(chan error, 1)
	go func() {
		s, err := p.Open(context.Background(), 1)
		if err == nil {
			s.Close()
		}
		got <- err
	}()
	waitFor(t, "a queued request", func() bool { return p.Stats().Queued == 1 })
	if qw := p.Stats().QueueWait; qw.Count != 0 {
		t.Errorf("queue wait count before the waiter left = %d, want 0", qw.Count)
	}
	a.Close()
	if err := recvErr(t, "the waiter", got); err != nil {
		t.Fatal(err)
	}
	b.Close()
	st = p.Stats()
	if st.Queued != 0 || st.QueueWait.Count != 1 || st.QueueWait.Buckets[QueueWaitBuckets[len(QueueWaitBuckets)-1]] != 1 {
		t.Errorf("after the waiter got a slot: queued %d, wait %+v; want 0 and one wait", st.Queued, st.QueueWait)
	}

	// kill -9 a worker that served nothing itself, right after boot: a
	// restart for "died_early".
	old := st.Workers[1].Pid
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replacement", func() bool {
		w := p.Stats().Workers[1]
		return w.Pid != old && w.Pid > 0 && w.State == StateIdle
	})
	st = p.Stats()
	want := map[string]uint64{RestartRetired: 0, RestartDied: 0, RestartDiedEarly: 1, RestartBootFailed: 0}
	for r, n := range want {
		if st.Restarts[r] != n {
			t.Errorf("restarts[%s] = %d, want %d (all: %v)", r, st.Restarts[r], n, st.Restarts)
		}
	}
	p.Close()
	if st := p.Stats(); st.Ready() || !st.Closed {
		t.Errorf("closed pool: ready %v closed %v", st.Ready(), st.Closed)
	}
	if _, err := p.Open(context.Background(), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v", err)
	}
}

func TestObserveWaitBuckets(t *testing.T) {
	p := &Pool{}
	for _, d := range []time.Duration{0, time.Millisecond, 3 * time.Millisecond, time.Minute} {
		p.stats.observeWait(d)
	}
	qw := p.Stats().QueueWait
	if qw.Count != 4 || qw.Buckets[0.001] != 2 || qw.Buckets[0.0025] != 2 || qw.Buckets[0.005] != 3 || qw.Buckets[30] != 3 {
		t.Errorf("queue wait %+v", qw)
	}
	if want := (time.Minute + 4*time.Millisecond).Seconds(); qw.SumSeconds != want {
		t.Errorf("sum %v, want %v", qw.SumSeconds, want)
	}
}
