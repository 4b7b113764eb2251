package supervisor

import (
	"fmt"
	"time"
)

// Autoscale bounds the autoscaler (--workers, --max-workers,
// --scale-down-after).
type Autoscale struct {
	// Min and Max bound the number of workers the autoscaler keeps; it
	// never removes a worker below Min nor adds one beyond Max.
	Min, Max int
	// ScaleDownAfter is how long the pool must have been able to do
	// without one worker before the autoscaler removes it.
	ScaleDownAfter time.Duration
	// Interval is how often it samples Stats (0 = 250ms).
	Interval time.Duration
}

// scaleAction is what the autoscaler does after one sample.
type scaleAction int

const (
	scaleHold scaleAction = iota
	scaleUp
	scaleDown
)

// scaleSample is what decide looks at: one Stats snapshot, reduced.
type scaleSample struct {
	workers  int  // slots
	pending  bool // a slot has no running worker yet (starting/failing)
	queued   int  // requests waiting for a slot
	busy     int  // requests in flight
	spare    int  // capacity of every running worker but the last slot's
	newWaits bool // requests queued (and left the queue) since the last sample
}

// scaleState is what decide remembers between samples.
type scaleState struct {
	queuedRuns int       // consecutive samples with requests queued
	slackSince time.Time // since when workers-1 could carry the load (zero: not now)
}

// decide is the autoscaler's policy, a pure function for tests.
//
// Up: requests queued in two consecutive samples, fewer than Max
// workers, and no worker still starting (its capacity is on the way; adding
// more while it boots would overshoot).
// Down: for ScaleDownAfter, no request queued and the requests in flight
// fit in every worker but the last (what RemoveWorker takes away), and
// more than Min workers. Each change restarts both clocks, so one sample
// never moves the pool by more than one worker.
func decide(s scaleSample, st scaleState, cfg Autoscale, now time.Time) (scaleAction, scaleState) {
	if s.queued > 0 {
		st.queuedRuns++
	} else {
		st.queuedRuns = 0
	}
	slack := s.queued == 0 && !s.newWaits && s.busy <= s.spare
	switch {
	case !slack:
		st.slackSince = time.Time{}
	case st.slackSince.IsZero():
		st.slackSince = now
	}
	if st.queuedRuns >= 2 && s.workers < cfg.Max && !s.pending {
		return scaleUp, scaleState{}
	}
	if slack && s.workers > cfg.Min && now.Sub(st.slackSince) >= cfg.ScaleDownAfter {
		return scaleDown, scaleState{}
	}
	return scaleHold, st
}

// sampleOf reduces a Stats snapshot for decide; lastWaits is the queue
// wait count of the previous sample.
func sampleOf(st *Stats, lastWaits uint64) scaleSample {
	s := scaleSample{workers: len(st.Workers), queued: st.Queued, newWaits: st.QueueWait.Count != lastWaits}
	for i, w := range st.Workers {
		switch w.State {
		case StateStarting, StateFailing:
			s.pending = true
		case StateIdle, StateBusy:
			if i < len(st.Workers)-1 {
				s.spare += w.Capacity
			}
		}
		s.busy += w.Busy
	}
	return s
}

// StartAutoscaler starts the autoscaler: a loop apart from the pool, like
// the recycler, that samples Stats every Interval and calls AddWorker
// while requests queue and RemoveWorker once a worker has been spare for
// ScaleDownAfter, between Min and Max. It ends with the pool. Call it
// once, right after Start.
func (p *Pool) StartAutoscaler(cfg Autoscale) error {
	if cfg.Min < 1 || cfg.Max < cfg.Min || cfg.ScaleDownAfter <= 0 {
		return fmt.Errorf("supervisor: autoscale bounds %d..%d, scale down after %v: want 1 <= min <= max and a positive delay", cfg.Min, cfg.Max, cfg.ScaleDownAfter)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 250 * time.Millisecond
	}
	p.wg.Add(1)
	go p.autoscaler(cfg)
	return nil
}

func (p *Pool) autoscaler(cfg Autoscale) {
	defer p.wg.Done()
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var state scaleState
	var lastWaits uint64
	for {
		select {
		case <-t.C:
		case <-p.ctx.Done():
			return
		}
		st := p.Stats()
		if st.Closed {
			return
		}
		var act scaleAction
		act, state = decide(sampleOf(&st, lastWaits), state, cfg, time.Now())
		lastWaits = st.QueueWait.Count
		switch act {
		case scaleUp:
			if n, err := p.AddWorker(); err != nil {
				p.log.Warn("autoscale: cannot add a worker", "err", err)
			} else {
				p.log.Info("autoscale: worker added, requests are queueing", "workers", n, "queued", st.Queued, "max_workers", cfg.Max)
			}
		case scaleDown:
			if n, err := p.RemoveWorker(); err != nil {
				p.log.Warn("autoscale: cannot remove a worker", "err", err)
			} else {
				p.log.Info("autoscale: idle worker removed", "workers", n, "min_workers", cfg.Min)
			}
		}
	}
}
