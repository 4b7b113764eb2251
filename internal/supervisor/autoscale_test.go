package supervisor

import (
	"testing"
	"time"
)

func TestAutoscaleDecide(t *testing.T) {
	cfg := Autoscale{Min: 1, Max: 3, ScaleDownAfter: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	type step struct {
		s    scaleSample
		at   time.Duration // since t0
		want scaleAction
	}
	busy := func(workers, busy, queued int) scaleSample {
		// one thread per worker: spare is workers-1
		return scaleSample{workers: workers, busy: busy, queued: queued, spare: workers - 1}
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"one queued sample is not enough", []step{
			{busy(1, 1, 1), 0, scaleHold},
			{busy(1, 1, 0), 250 * time.Millisecond, scaleHold},
			{busy(1, 1, 1), 500 * time.Millisecond, scaleHold},
		}},
		{"two queued samples add one", []step{
			{busy(1, 1, 2), 0, scaleHold},
			{busy(1, 1, 2), 250 * time.Millisecond, scaleUp},
			// the clock restarts: one more sample is not enough
			{busy(2, 2, 1), 500 * time.Millisecond, scaleHold},
			{busy(2, 2, 1), 750 * time.Millisecond, scaleUp},
		}},
		{"never beyond max", []step{
			{busy(3, 3, 5), 0, scaleHold},
			{busy(3, 3, 5), time.Second, scaleHold},
			{busy(3, 3, 5), 2 * time.Second, scaleHold},
		}},
		{"not while a worker starts", []step{
			{scaleSample{workers: 2, busy: 1, queued: 2, pending: true}, 0, scaleHold},
			{scaleSample{workers: 2, busy: 1, queued: 2, pending: true}, time.Second, scaleHold},
			{scaleSample{workers: 2, busy: 2, queued: 2, spare: 1}, 2 * time.Second, scaleUp},
		}},
		{"spare for the whole period removes one", []step{
			{busy(3, 1, 0), 0, scaleHold},
			{busy(3, 2, 0), 5 * time.Second, scaleHold},
			{busy(3, 0, 0), 10 * time.Second, scaleDown},
			// the clock restarts after a removal
			{busy(2, 0, 0), 11 * time.Second, scaleHold},
			{busy(2, 0, 0), 20 * time.Second, scaleHold},
			{busy(2, 0, 0), 21 * time.Second, scaleDown},
		}},
		{"load that needs every worker resets the clock", []step{
			{busy(2, 0, 0), 0, scaleHold},
			{busy(2, 2, 0), 9 * time.Second, scaleHold}, // both busy: not spare
			{busy(2, 0, 0), 10 * time.Second, scaleHold},
			{busy(2, 0, 0), 19 * time.Second, scaleHold},
			{busy(2, 0, 0), 20 * time.Second, scaleDown},
		}},
		{"queueing between samples resets the clock", []step{
			{busy(2, 0, 0), 0, scaleHold},
			{scaleSample{workers: 2, spare: 1, newWaits: true}, 9 * time.Second, scaleHold},
			{busy(2, 0, 0), 10 * time.Second, scaleHold},
			{busy(2, 0, 0), 20 * time.Second, scaleDown},
		}},
		{"never below min", []step{
			{busy(1, 0, 0), 0, scaleHold},
			{busy(1, 0, 0), time.Minute, scaleHold},
			{busy(1, 0, 0), time.Hour, scaleHold},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var st scaleState
			for i, s := range c.steps {
				var got scaleAction
				got, st = decide(s.s, st, cfg, t0.Add(s.at))
				if got != s.want {
					t.Fatalf("step %d (%+v at %v): got %d, want %d", i, s.s, s.at, got, s.want)
				}
			}
		})
	}
}

func TestAutoscaleSampleOf(t *testing.T) {
	st := Stats{Queued: 2, QueueWait: QueueWait{Count: 7}, Workers: []WorkerStats{
		{State: StateBusy, Busy: 2, Capacity: 2},
		{State: StateIdle, Busy: 0, Capacity: 2},
		{State: StateBusy, Busy: 1, Capacity: 2},
	}}
	got := sampleOf(&st, 7)
	want := scaleSample{workers: 3, queued: 2, busy: 3, spare: 4}
	if got != want {
		t.Fatalf("sampleOf = %+v, want %+v", got, want)
	}
	st.Workers[1].State = StateStarting
	got = sampleOf(&st, 6)
	want = scaleSample{workers: 3, queued: 2, busy: 3, spare: 2, pending: true, newWaits: true}
	if got != want {
		t.Fatalf("with a starting worker and new waits: sampleOf = %+v, want %+v", got, want)
	}
}

func TestStartAutoscalerRefusesBadBounds(t *testing.T) {
	p := &Pool{}
	for _, cfg := range []Autoscale{
		{Min: 0, Max: 2, ScaleDownAfter: time.Second},
		{Min: 3, Max: 2, ScaleDownAfter: time.Second},
		{Min: 1, Max: 2},
	} {
		if err := p.StartAutoscaler(cfg); err == nil {
			t.Fatalf("StartAutoscaler(%+v) = nil, want an error", cfg)
		}
	}
}
