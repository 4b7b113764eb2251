package supervisor

import (
	"errors"

	"github.com/krait-server/krait/internal/worker"
)

// ErrLastWorker: RemoveWorker refuses to remove the pool's last worker.
var ErrLastWorker = errors.New("the pool has one worker left")

// AddWorker adds a slot (SIGTTIN) and starts its worker in the
// background (retried with backoff like any replacement); it returns the
// new number of slots.
func (p *Pool) AddWorker() (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	id := 0
	for _, sl := range p.slots {
		id = max(id, sl.id)
	}
	p.genSeq++
	sl := &slot{id: id + 1, gen: p.genSeq, kick: make(chan struct{}, 1)}
	p.slots = append(p.slots, sl)
	n := len(p.slots)
	gen := sl.gen
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		if p.replace(sl, gen) == nil {
			p.wg.Done()
			return
		}
		p.monitor(sl) // calls p.wg.Done
	}()
	return n, nil
}

// RemoveWorker removes the last slot (SIGTTOU): its worker takes no new
// request, finishes those in flight and exits. It returns the new number
// of slots; the last one is never removed (ErrLastWorker).
func (p *Pool) RemoveWorker() (int, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return 0, ErrClosed
	}
	if len(p.slots) <= 1 {
		p.mu.Unlock()
		return 1, ErrLastWorker
	}
	sl := p.slots[len(p.slots)-1]
	p.slots[len(p.slots)-1] = nil
	p.slots = p.slots[:len(p.slots)-1]
	n := len(p.slots)
	sl.removed = true
	old := sl.w
	sl.w = nil // its releases are ignored from now on
	var w *worker.Worker
	if old != nil {
		w = old
		p.retiring[w] = struct{}{}
		p.wg.Add(1)
	}
	select {
	case sl.kick <- struct{}{}:
	default:
	}
	p.mu.Unlock()
	if w != nil {
		go p.retire(sl, w, "")
	}
	return n, nil
}
