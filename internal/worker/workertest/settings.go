package workertest

import (
	"os"
	"time"

	"github.com/krait-server/krait/internal/config"
)

// Settings returns the worker settings krait serve would use
// (config.Default), running this test binary as the fake worker (App
// "app:application") with threads threads and env added to its
// environment (EnvMode and the like), a boot timeout generous for a
// busy machine, and no prefetch.
func Settings(threads int, env ...string) config.Worker {
	wc := config.Default().Worker
	wc.Python, wc.App, wc.Threads, wc.Env = os.Args[0], "app:application", threads, env
	wc.BootTimeout = 30 * time.Second
	// The fake runs every request it gets at once and has no queue to
	// give requests back from (RECALL): hand it at most its threads.
	wc.Prefetch = 0
	return wc
}
