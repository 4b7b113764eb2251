package systemd

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// LogFile is a log file opened for appending that Reopen can swap for a
// new file at the same path: logrotate renames the file, then krait gets
// SIGUSR1 and writes on into a new one. Writes and Reopen are serialised
// by one mutex, so no line is split between the two files.
type LogFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenLogFile opens (creating it, mode 0644) path for appending.
func OpenLogFile(path string) (*LogFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &LogFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Write appends p to the current file.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path anew and closes the old file. When the new open
// fails (after a privilege drop krait may not create files in the log
// directory), logging continues into the old file and the error says why.
func (l *LogFile) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return fmt.Errorf("reopening %s: %w", l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the current file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

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
