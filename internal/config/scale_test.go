package config

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestParseServeWorkers(t *testing.T) {
	cases := []struct {
		args     []string
		env      map[string]string
		workers  int
		max      int
		downAter time.Duration
	}{
		{nil, nil, 1, 0, 30 * time.Second},
		{[]string{"-w", "auto"}, nil, runtime.GOMAXPROCS(0), 0, 30 * time.Second},
		{[]string{"--workers=AUTO"}, nil, runtime.GOMAXPROCS(0), 0, 30 * time.Second},
		{nil, map[string]string{"WEB_CONCURRENCY": "3"}, 3, 0, 30 * time.Second},
		{nil, map[string]string{"WEB_CONCURRENCY": " 5 "}, 5, 0, 30 * time.Second},
		// -w wins over WEB_CONCURRENCY, even a bad one (gunicorn's order)
		{[]string{"-w", "2"}, map[string]string{"WEB_CONCURRENCY": "3"}, 2, 0, 30 * time.Second},
		{[]string{"-w", "2"}, map[string]string{"WEB_CONCURRENCY": "lots"}, 2, 0, 30 * time.Second},
		{[]string{"-w", "2", "--max-workers", "8", "--scale-down-after", "1.5"}, nil, 2, 8, 1500 * time.Millisecond},
		{[]string{"--max-workers", "4"}, map[string]string{"WEB_CONCURRENCY": "4"}, 4, 4, 30 * time.Second},
	}
	for _, c := range cases {
		s, err := parse(append([]string{"app:application"}, c.args...), c.env)
		if err != nil {
			t.Fatalf("%v %v: %v", c.args, c.env, err)
		}
		if s.Workers != c.workers || s.MaxWorkers != c.max || s.ScaleDownAfter != c.downAter {
			t.Fatalf("%v %v: workers %d max %d after %v, want %d %d %v", c.args, c.env, s.Workers, s.MaxWorkers, s.ScaleDownAfter, c.workers, c.max, c.downAter)
		}
	}
}

func TestParseServeWorkersErrors(t *testing.T) {
	cases := []struct {
		args []string
		env  map[string]string
		flag string
		msg  string
	}{
		{[]string{"-w", "many"}, nil, "-w", "is not a whole number"},
		{[]string{"--workers", "0"}, nil, "--workers", "out of range"},
		{nil, map[string]string{"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY", "is not a whole number"},
		{nil, map[string]string{"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY", "out of range"},
		{nil, map[string]string{"WEB_CONCURRENCY": "5000"}, "WEB_CONCURRENCY", "out of range"},
		{[]string{"-w", "4", "--max-workers", "2"}, nil, "--max-workers", "between --workers (4)"},
		{[]string{"--max-workers", "2"}, map[string]string{"WEB_CONCURRENCY": "3"}, "--max-workers", "between --workers (3)"},
		{[]string{"--max-workers", "2000"}, nil, "--max-workers", "out of range"},
		{[]string{"--max-workers", "2", "--scale-down-after", "0"}, nil, "--scale-down-after", "greater than 0"},
	}
	for _, c := range cases {
		_, err := parse(append([]string{"app:application"}, c.args...), c.env)
		var ue *UsageError
		if !errors.As(err, &ue) || ue.Flag != c.flag || !strings.Contains(ue.Reason, c.msg) {
			t.Fatalf("%v %v: error %v, want one naming %s with %q", c.args, c.env, err, c.flag, c.msg)
		}
	}
}

func TestServePeakWorkers(t *testing.T) {
	for _, c := range []struct {
		w, m, peak int
		auto       bool
	}{
		{1, 0, 1, false}, {2, 2, 2, false}, {1, 3, 3, true},
	} {
		s := Serve{Workers: c.w, MaxWorkers: c.m}
		if s.PeakWorkers() != c.peak || s.Autoscaling() != c.auto {
			t.Fatalf("%+v: peak %d autoscaling %v", c, s.PeakWorkers(), s.Autoscaling())
		}
	}
}
