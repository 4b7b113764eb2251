package dispatch

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// receive buffers a body whole up to BufferBody, stops at BufferMemory
// over all requests (the rest then streams), gives the memory back on
// release, and refuses a body over MaxBody.
func TestReceiveStopsAtBudget(t *testing.T) {
	d := &Dispatcher{bufBody: 1 << 20, bufLimit: 3 * chunkSize}
	body := bytes.Repeat([]byte("x"), 300_000)

	a, err := d.receive(bytes.NewReader(body), -1, false)
	if err != nil || a.eof || len(a.bufs) != 4 || a.total != 4*inlineBody {
		t.Fatalf("over the budget: err %v eof %v total %d chunks %d, want 4 full chunks and the rest left to stream",
			err, a.eof, a.total, len(a.bufs))
	}
	if got := d.bufMem.Load(); got != 3*chunkSize {
		t.Fatalf("budget in use %d, want %d", got, 3*chunkSize)
	}
	// A second request meanwhile gets its first chunk only.
	b, err := d.receive(bytes.NewReader(body), int64(len(body)), false)
	if err != nil || b.eof || len(b.bufs) != 1 || b.total != inlineBody {
		t.Fatalf("second body with the budget spent: err %v eof %v total %d chunks %d", err, b.eof, b.total, len(b.bufs))
	}
	a.release()
	b.release()
	if got := d.bufMem.Load(); got != 0 {
		t.Fatalf("budget in use after release: %d, want 0", got)
	}
	// Now it fits: 200 KB in 4 chunks (3 extra).
	c, err := d.receive(bytes.NewReader(body[:200_000]), 200_000, false)
	if err != nil || !c.eof || c.total != 200_000 || len(c.bufs) != 4 {
		t.Fatalf("after release: err %v eof %v total %d chunks %d", err, c.eof, c.total, len(c.bufs))
	}
	c.release()
}

func TestReceiveTooLarge(t *testing.T) {
	d := &Dispatcher{bufBody: 1 << 20, bufLimit: DefaultBufferMemory, maxBody: 100_000}
	if _, err := d.receive(bytes.NewReader(make([]byte, 100_001)), -1, false); !errors.Is(err, errTooLarge) {
		t.Fatalf("body of 100001 bytes over MaxBody 100000: %v, want errTooLarge", err)
	}
	if got := d.bufMem.Load(); got != 0 {
		t.Fatalf("budget in use after a refusal: %d", got)
	}
	rc, err := d.receive(bytes.NewReader(make([]byte, 100_000)), -1, false)
	if err != nil || !rc.eof || rc.total != 100_000 {
		t.Fatalf("body at MaxBody: err %v", err)
	}
	rc.release()
	// A reader failing mid-body: its error, memory given back.
	if _, err := d.receive(io.MultiReader(bytes.NewReader(make([]byte, 70_000)), errReader{}), -1, false); !errors.Is(err, errBoom) {
		t.Fatalf("failing body: %v", err)
	}
	if got := d.bufMem.Load(); got != 0 {
		t.Fatalf("budget in use after a failure: %d", got)
	}
}

var errBoom = errors.New("boom")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBoom }

// For an ASGI app only the first bytes are read before the slot is taken:
// the app may answer while the client is still sending.
func TestReceiveFirstOnly(t *testing.T) {
	d := &Dispatcher{bufBody: 1 << 20, bufLimit: DefaultBufferMemory}
	rc, err := d.receive(bytes.NewReader(make([]byte, 300_000)), -1, true)
	if err != nil || rc.eof || len(rc.bufs) != 1 || rc.total == 0 || rc.total > inlineBody {
		t.Fatalf("firstOnly: err %v eof %v total %d chunks %d, want only the first read", err, rc.eof, rc.total, len(rc.bufs))
	}
	rc.release()
}
