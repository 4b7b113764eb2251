package supervisor

import (
	"github.com/krait-server/krait/internal/worker"
	"os"
	"testing"
)

func TestRequestLimit(t *testing.T) {
	if got := (Recycle{}).requestLimit(); got != 0 {
		t.Fatalf("no max-requests: limit %d, want 0", got)
	}
	if got := (Recycle{MaxRequests: 7}).requestLimit(); got != 7 {
		t.Fatalf("no jitter: limit %d, want 7", got)
	}
	seen := map[int]bool{}
	for range 2000 {
		got := (Recycle{MaxRequests: 10, MaxRequestsJitter: 3}).requestLimit()
		if got < 10 || got > 13 {
			t.Fatalf("limit %d outside 10..13", got)
		}
		seen[got] = true
	}
	if len(seen) != 4 { // 2000 draws of 4 values: every one appears
		t.Fatalf("jittered limits %v, want each of 10..13", seen)
	}
	if (Recycle{MaxRequestsJitter: 5}).enabled() || !(Recycle{MaxRSS: 1}).enabled() {
		t.Fatal("enabled: jitter alone must not enable recycling; max-rss must")
	}
}

func TestReadRSS(t *testing.T) {
	rss, ok := worker.ReadRSS(os.Getpid())
	if !ok || rss <= 0 {
		t.Fatalf("worker.ReadRSS(self) = %d, %v", rss, ok)
	}
	if _, ok := worker.ReadRSS(1 << 30); ok {
		t.Fatal("ReadRSS of a pid that does not exist succeeded")
	}
}
