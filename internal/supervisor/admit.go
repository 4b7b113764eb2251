package supervisor

// Admits reports what Open(maxQueue, ...) called now would do without
// waiting for a worker: nil (a free slot or room in the queue), ErrClosed,
// ErrUnavailable or ErrQueueFull, by the same rules as acquire. It reserves
// nothing, so the answer is advisory (Open decides); the dispatcher uses it
// to refuse a request that waits for "100 Continue" before its client
// sends a body that could not be served anyway.
func (p *Pool) Admits(maxQueue int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	for _, sl := range p.slots {
		if sl.w != nil && sl.busy < sl.cap && !sl.w.Stopping() && !sl.w.Dead() {
			return nil
		}
	}
	if p.allFailingLocked() {
		return ErrUnavailable
	}
	if p.waiting+p.prefetchedLocked() >= maxQueue {
		return ErrQueueFull
	}
	return nil
}
