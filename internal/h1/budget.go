package h1

import (
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// HeadBudget bounds the read-buffer memory that connections hold beyond
// their first 4 KiB each, which only request heads (and trailer sections)
// larger than that need. One budget may be shared by several Servers
// (Config.HeadBudget): krait runs one engine per listener and the budget
// bounds the whole process. It is safe for concurrent use.
type HeadBudget struct {
	limit int64
	// mem is the memory reserved now; peak its highest value since the
	// last reclaim, which reclaiming guards.
	mem        atomic.Int64
	peak       atomic.Int64
	reclaiming atomic.Bool
	warnedAt   atomic.Int64 // unix nanoseconds of the last budget warning
	log        atomic.Pointer[slog.Logger]
}

// NewHeadBudget returns a budget of limit bytes (limit > 0).
func NewHeadBudget(limit int64) *HeadBudget {
	if limit <= 0 {
		panic("h1: NewHeadBudget: the limit must be positive")
	}
	return &HeadBudget{limit: limit}
}

// Limit returns the budget's size in bytes.
func (b *HeadBudget) Limit() int64 { return b.limit }

// InUse returns the bytes reserved now.
func (b *HeadBudget) InUse() int64 { return b.mem.Load() }

// reserve takes n bytes from the budget; false when that would exceed it.
func (b *HeadBudget) reserve(n int) bool {
	for {
		cur := b.mem.Load()
		if cur+int64(n) > b.limit {
			return false
		}
		if b.mem.CompareAndSwap(cur, cur+int64(n)) {
			for p := b.peak.Load(); cur+int64(n) > p && !b.peak.CompareAndSwap(p, cur+int64(n)); p = b.peak.Load() {
			}
			return true
		}
	}
}

// warn logs that the budget refused a connection, at most every 10
// seconds: under attack it would otherwise flood the log.
func (b *HeadBudget) warn(log *slog.Logger, remote string) {
	now := time.Now().UnixNano()
	last := b.warnedAt.Load()
	if now-last < int64(10*time.Second) || !b.warnedAt.CompareAndSwap(last, now) {
		return
	}
	log.Warn("h1: request-head memory budget spent; refusing large request heads with 503",
		"remote", remote, "budget", b.limit)
}

// After a burst of large heads (reclaimHigh bytes or more at once) has
// drained below reclaimLow, the memory is handed back to the operating
// system: the Go runtime alone would keep it resident for minutes (until
// a forced GC, then a slow scavenge), since an idle server allocates
// nothing that would trigger a collection.
const (
	reclaimHigh  = 16 << 20
	reclaimLow   = 4 << 20
	reclaimDelay = time.Second // lets the rest of a burst's connections close first
)

// release gives n bytes back to the budget.
func (b *HeadBudget) release(n int, log *slog.Logger) {
	left := b.mem.Add(-int64(n))
	if left < reclaimLow && b.peak.Load() >= reclaimHigh && b.reclaiming.CompareAndSwap(false, true) {
		b.log.Store(log)
		time.AfterFunc(reclaimDelay, b.reclaim)
	}
}

// reclaim collects the garbage a burst of large heads left and returns
// free memory to the operating system.
func (b *HeadBudget) reclaim() {
	b.peak.Store(b.mem.Load())
	debug.FreeOSMemory()
	if log := b.log.Load(); log != nil {
		log.Debug("h1: returned large request-head buffers to the operating system")
	}
	b.reclaiming.Store(false)
}
