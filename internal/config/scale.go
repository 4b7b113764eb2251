package config

import (
	"errors"
	"flag"
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// workersFlag is --workers: a whole number, or "auto" for one worker per
// CPU krait may use. runtime.GOMAXPROCS(0) is that number: since Go 1.25
// it honours the cgroup CPU quota (a container limited to 2 CPUs on a
// 64-core host gets 2), and $GOMAXPROCS when set.
type workersFlag struct {
	n     *int
	given *bool
}

func (f workersFlag) String() string {
	if f.n == nil {
		return ""
	}
	return strconv.Itoa(*f.n)
}

func (f workersFlag) Set(v string) error {
	*f.given = true
	if strings.EqualFold(v, "auto") {
		*f.n = runtime.GOMAXPROCS(0)
		return nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return errors.New("is not a whole number") // nor auto; the wording other int flags use
	}
	*f.n = n
	return nil
}

// scaleFlags registers --max-workers and --scale-down-after, and the
// --workers flag (-w) with its "auto" value. The returned check runs
// after parsing: without -w, $WEB_CONCURRENCY (an integer) is the worker
// count, as gunicorn and uvicorn take it; then the bounds.
func scaleFlags(fs *flag.FlagSet, s *Serve, getenv func(string) string) func(name func(string) string) error {
	given := false
	wf := workersFlag{&s.Workers, &given}
	fs.Var(wf, "workers", "number of Python worker processes, or auto for one per CPU; without it, $WEB_CONCURRENCY when set")
	fs.Var(wf, "w", "shorthand for --workers")
	fs.IntVar(&s.MaxWorkers, "max-workers", s.MaxWorkers, "autoscale: add workers, up to this many, while requests queue, and remove idle ones down to --workers (0 = no autoscaling)")
	fs.Var(seconds{&s.ScaleDownAfter}, "scale-down-after", "autoscale: seconds the pool must have been able to do without a worker before one is removed")
	return func(name func(string) string) error {
		if !given {
			if v := strings.TrimSpace(getenv("WEB_CONCURRENCY")); v != "" {
				n, err := strconv.Atoi(v)
				if err != nil {
					return &UsageError{Flag: "WEB_CONCURRENCY", Reason: fmt.Sprintf("%q is not a whole number (it sets the default of --workers)", v)}
				}
				if n < 1 || n > maxWorkers {
					return &UsageError{Flag: "WEB_CONCURRENCY", Reason: fmt.Sprintf("%d is out of range: must be between 1 and %d", n, maxWorkers)}
				}
				s.Workers = n
			}
		}
		if s.Workers < 1 || s.Workers > maxWorkers {
			return &UsageError{Flag: name("workers"), Reason: fmt.Sprintf("%d is out of range: must be between 1 and %d", s.Workers, maxWorkers)}
		}
		if s.MaxWorkers != 0 && (s.MaxWorkers < s.Workers || s.MaxWorkers > maxWorkers) {
			return &UsageError{Flag: name("max-workers"), Reason: fmt.Sprintf("%d is out of range: must be between --workers (%d) and %d, or 0 for no autoscaling", s.MaxWorkers, s.Workers, maxWorkers)}
		}
		if s.ScaleDownAfter <= 0 {
			return &UsageError{Flag: name("scale-down-after"), Reason: "must be greater than 0"}
		}
		return nil
	}
}

// maxWorkers bounds --workers, --max-workers and $WEB_CONCURRENCY.
const maxWorkers = 1024

// Autoscaling reports whether --max-workers asks for more workers than
// --workers: the autoscaler runs between the two.
func (s *Serve) Autoscaling() bool { return s.MaxWorkers > s.Workers }

// PeakWorkers is the most workers krait may run by itself: --max-workers
// when autoscaling, else --workers. The dispatcher's queue bound is
// --max-queue times this (SIGTTIN does not raise it).
func (s *Serve) PeakWorkers() int { return max(s.Workers, s.MaxWorkers) }
