package systemd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// PIDFile is a --pid file this process wrote.
type PIDFile struct {
	path string
	pid  int
}

// WritePIDFile writes this process's pid to path, atomically (a reader
// never sees a half-written file). A file naming another live process
// with this process's name (/proc/PID/comm: another krait) is refused;
// any other existing file is stale and is replaced, as gunicorn does.
func WritePIDFile(path string) (*PIDFile, error) {
	pid := os.Getpid()
	if b, err := os.ReadFile(path); err == nil {
		if other, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && other > 0 && other != pid && sameProgram(other, pid) {
			return nil, fmt.Errorf("--pid %s: krait (pid %d) is already running with this pid file", path, other)
		}
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "." // CreateTemp would take "" for the temp dir
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return nil, fmt.Errorf("--pid %s: %w", path, err)
	}
	_, werr := tmp.WriteString(strconv.Itoa(pid) + "\n")
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp.Name(), 0o644), os.Rename(tmp.Name(), path)); err != nil {
		_ = os.Remove(tmp.Name())
		return nil, fmt.Errorf("--pid %s: %w", path, err)
	}
	return &PIDFile{path: path, pid: pid}, nil
}

// sameProgram reports whether process other is alive and runs the same
// program (by /proc/PID/comm) as process self.
func sameProgram(other, self int) bool {
	if err := syscall.Kill(other, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	a, err1 := os.ReadFile("/proc/" + strconv.Itoa(other) + "/comm")
	b, err2 := os.ReadFile("/proc/" + strconv.Itoa(self) + "/comm")
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// Path is the file's path.
func (p *PIDFile) Path() string { return p.path }

// Remove deletes the file if it still names this process (a newer krait
// may have taken it over). After a privilege drop this can fail (the
// directory belongs to root): the error says so and the file stays, stale.
func (p *PIDFile) Remove() error {
	if p == nil {
		return nil
	}
	b, err := os.ReadFile(p.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("--pid %s: %w", p.path, err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(p.pid) {
		return nil
	}
	if err := os.Remove(p.path); err != nil {
		return fmt.Errorf("--pid %s: %w", p.path, err)
	}
	return nil
}
