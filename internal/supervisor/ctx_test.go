package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/worker/workertest"
)

// TestOpenContextQueue: a caller waiting in the queue leaves it when its
// context ends, with an error wrapping ctx.Err(), and the queue's
// accounting is right afterwards: the next freed slot goes to the next
// live waiter, and room in the queue is back.
func TestOpenContextQueue(t *testing.T) {
	p := fakePool(t, 1, 1)
	held, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	queued := func() int { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting }

	for _, tc := range []struct {
		name string
		make func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		ctx, cancel := tc.make()
		got := make(chan error, 1)
		go func() {
			s, err := p.Open(ctx, 1)
			if s != nil {
				s.Close()
			}
			got <- err
		}()
		waitFor(t, "the caller to queue", func() bool { return queued() == 1 })
		if tc.want == context.Canceled {
			cancel()
		}
		err := recvErr(t, "the waiter to leave the queue", got)
		cancel()
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want one wrapping %v", tc.name, err, tc.want)
		}
		if errors.Is(err, ErrQueueFull) || errors.Is(err, ErrClosed) {
			t.Fatalf("%s: err = %v: a context's end is not ErrQueueFull nor ErrClosed", tc.name, err)
		}
		if n := queued(); n != 0 {
			t.Fatalf("%s: %d callers counted in the queue after the waiter left, want 0", tc.name, n)
		}
	}

	// The queue (bound 1) has room again, and the freed slot goes to the
	// live waiter, not to a cancelled one.
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := p.Open(ctx, 1)
		if s != nil {
			s.Close()
		}
		got <- err
	}()
	waitFor(t, "a live waiter", func() bool { return queued() == 1 })
	held.Close()
	if err := recvErr(t, "the live waiter to get the freed slot", got); err != nil {
		t.Fatal(err)
	}
}

// TestOpenContextHandedThenCancelled: a slot handed to a waiter whose
// context ended at the same moment goes back to the pool.
func TestOpenContextHandedThenCancelled(t *testing.T) {
	p := fakePool(t, 1, 1)
	for i := 0; i < 20; i++ {
		held, err := openWithin(t, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			s, err := p.Open(ctx, 1)
			if s != nil {
				s.Close()
			}
			got <- err
		}()
		waitFor(t, "the caller to queue", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting == 1 })
		go held.Close()
		cancel()
		if err := recvErr(t, "the waiter", got); err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		// Either way the slot is free again.
		s, err := openWithin(t, p, 1)
		if err != nil {
			t.Fatalf("round %d: the slot was not given back: %v", i, err)
		}
		s.Close()
	}
}

// TestStartRefusesIncompleteConfig: the supervisor declares no defaults
// (the boot timeout used to be 120s in the CLI and 60s here and in the
// worker): settings missing from the config.Worker are refused, naming
// them, and so is a pool of no workers.
func TestStartRefusesIncompleteConfig(t *testing.T) {
	wc := fakeSettings(1, workertest.EnvMode+"=ready")
	wc.BootTimeout = 0
	p, err := Start(context.Background(), Config{Worker: wc, Workers: 1})
	if err == nil {
		p.Close()
		t.Fatal("Start accepted a config.Worker without BootTimeout")
	}
	if !strings.Contains(err.Error(), "BootTimeout") {
		t.Errorf("err = %v, want it to name BootTimeout", err)
	}
	p, err = Start(context.Background(), Config{Worker: fakeSettings(1, workertest.EnvMode+"=ready")})
	if err == nil {
		p.Close()
		t.Fatal("Start accepted Workers 0")
	}
}
