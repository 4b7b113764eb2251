package supervisor

import "github.com/krait-server/krait/internal/worker"

// Django returns the Django settings a live worker reported in its HELLO
// (nil when the app is not a configured Django project, or no worker is
// live). Right after Start every slot has a worker of the first
// generation, which is when krait reads it: a reload does not re-read it.
func (p *Pool) Django() *worker.Django {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, sl := range p.slots {
		if sl.w != nil {
			return sl.w.Django()
		}
	}
	return nil
}
