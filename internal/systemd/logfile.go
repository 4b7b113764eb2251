package systemd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// LogFile is a log file opened for appending that Reopen can swap for a
// new file at the same path: logrotate renames the file, then krait gets
// SIGUSR1 and writes on into a new one. No lock is held across a write:
// a write blocked on a stuck destination (a FIFO nobody reads) must not
// stop Close, which unblocks it, as closing an *os.File does. A write
// that loses the race with Reopen's close of the old file is retried once
// on the new one, so no line is lost to a rotation.
type LogFile struct {
	path string
	cur  atomic.Pointer[os.File]
}

// OpenLogFile opens (creating it, mode 0644) path for appending.
func OpenLogFile(path string) (*LogFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	l := &LogFile{path: path}
	l.cur.Store(f)
	return l, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Write appends p to the current file.
func (l *LogFile) Write(p []byte) (int, error) {
	f := l.cur.Load()
	n, err := f.Write(p)
	if errors.Is(err, os.ErrClosed) && n == 0 {
		if g := l.cur.Load(); g != f {
			return g.Write(p) // Reopen closed f under us
		}
	}
	return n, err
}

// Reopen opens the path anew, makes it the current file and closes the
// old one. When the new open fails (after a privilege drop krait may not
// create files in the log directory), logging continues into the old
// file and the error says why.
func (l *LogFile) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", l.path, err)
	}
	return l.cur.Swap(f).Close()
}

// Close closes the current file; a write blocked on it returns.
func (l *LogFile) Close() error { return l.cur.Load().Close() }

// Path is the file's path.
func (l *LogFile) Path() string { return l.path }

// ReopenOnSIGUSR1 reopens files each time the process gets SIGUSR1, until
// stop is called. It takes SIGUSR1 over even with no files, so that the
// signal (whose default action ends the process) is harmless when krait
// logs to stderr.
func ReopenOnSIGUSR1(log *slog.Logger, files ...*LogFile) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-sig:
			}
			var errs []error
			for _, f := range files {
				errs = append(errs, f.Reopen())
			}
			if err := errors.Join(errs...); err != nil {
				log.Error("SIGUSR1: reopening log files", "err", err)
			} else {
				log.Info("SIGUSR1: log files reopened", "files", len(files))
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
		<-finished
	}
}
