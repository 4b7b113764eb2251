package supervisor

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/worker"
	"github.com/krait-server/krait/internal/worker/workertest"
)

func TestMain(m *testing.M) {
	workertest.Main()
	os.Exit(m.Run())
}

// fakeSettings is what krait serve would pass (config.Default), running
// the fake worker (this test binary) with threads threads and env.
func fakeSettings(threads int, env ...string) config.Worker {
	wc := config.Default().Worker
	wc.Python, wc.App, wc.Threads, wc.Env = os.Args[0], "app:application", threads, env
	wc.BootTimeout = 30 * time.Second
	return wc
}

func fakePool(t *testing.T, workers, capacity int, env ...string) *Pool {
	t.Helper()
	env = append(env, workertest.EnvMode+"=ready", workertest.EnvCapacity+"="+strconv.Itoa(capacity))
	p, err := Start(context.Background(), Config{Worker: fakeSettings(capacity, env...), Workers: workers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// recvErr waits for one result on ch, failing the test with a message
// within a bounded time instead of hanging until the test binary's timeout
// (a queue bug must show in seconds).
func recvErr(t *testing.T, what string, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		return nil
	}
}

// openWithin is p.Open(context.Background(), maxQueue) failing the test with a message
// when Open does not return within 30s (a queue bug that parks the
// caller must show in seconds, not at the test binary's timeout).
func openWithin(t *testing.T, p *Pool, maxQueue int) (*worker.Stream, error) {
	t.Helper()
	type res struct {
		s   *worker.Stream
		err error
	}
	ch := make(chan res, 1)
	go func() {
		s, err := p.Open(context.Background(), maxQueue)
		ch <- res{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(30 * time.Second):
		t.Fatalf("Open(%d) did not return within 30s", maxQueue)
		return nil, nil
	}
}

// waitFor polls cond (a readiness check, not a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartBootError(t *testing.T) {
	wc := fakeSettings(1, workertest.EnvMode+"=import-error")
	wc.App = "app"
	_, err := Start(context.Background(), Config{Worker: wc, Workers: 3})
	var be *worker.BootError
	if !errors.As(err, &be) || !strings.Contains(be.Message, "SyntaxError") {
		t.Fatalf("err = %v, want a BootError with SyntaxError", err)
	}
}

func TestQueue(t *testing.T) {
	p := fakePool(t, 1, 1)
	a, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openWithin(t, p, 0); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("no queue: err = %v", err)
	}
	got := make(chan error, 1)
	go func() {
		s, err := p.Open(context.Background(), 1)
		if err == nil {
			s.Close()
		}
		got <- err
	}()
	waitFor(t, "a waiter", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting == 1 })
	if _, err := openWithin(t, p, 1); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("full queue: err = %v", err)
	}
	a.Close() // frees the slot: handed to the waiter
	if err := recvErr(t, "the waiter to get the freed slot", got); err != nil {
		t.Fatal(err)
	}
	// The slot comes back after the waiter closed its stream.
	s, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestQueueGone(t *testing.T) {
	p := fakePool(t, 1, 1)
	a, err := openWithin(t, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan error, 1)
	go func() {
		_, err := p.Open(ctx, 1)
		got <- err
	}()
	waitFor(t, "a waiter", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting == 1 })
	cancel() // the client went away: the engine cancels the request's context
	if err := recvErr(t, "the waiter to leave the queue", got); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The canceled waiter no longer counts and is skipped.
	got2 := make(chan error, 1)
	go func() {
		s, err := p.Open(context.Background(), 1)
		if err == nil {
			s.Close()
		}
		got2 <- err
	}()
	waitFor(t, "a second waiter", func() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.waiting == 1 })
	a.Close()
	if err := recvErr(t, "the second waiter to get the freed slot", got2); err != nil {
		t.Fatal(err)
	}
}

func TestLeastLoaded(t *testing.T) {
	p := fakePool(t, 2, 2)
	var streams []*worker.Stream
	for i := 0; i < 4; i++ {
		s, err := openWithin(t, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, s)
	}
	seen := map[int]int{}
	for _, s := range streams {
		seen[s.Worker().ID()]++
	}
	if seen[1] != 2 || seen[2] != 2 {
		t.Fatalf("streams per worker %v, want 2 and 2", seen)
	}
	if _, err := openWithin(t, p, 0); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("err = %v", err)
	}
	for _, s := range streams {
		s.Close()
	}
}

func TestRestart(t *testing.T) {
	p := fakePool(t, 2, 1)
	old := p.slots[0].w
	old.Kill()
	waitFor(t, "a replacement worker", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.slots[0].w != nil && p.slots[0].w != old
	})
	s, err := openWithin(t, p, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

func TestShutdown(t *testing.T) {
	p := fakePool(t, 2, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := openWithin(t, p, 10); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Shutdown: %v", err)
	}
}
