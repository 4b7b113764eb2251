package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// listenFdsStart is the first fd systemd passes (SD_LISTEN_FDS_START).
const listenFdsStart = 3

// Env is what the service manager passed to this process.
type Env struct {
	// Files are the sockets passed by socket activation, in fd order,
	// already close-on-exec. Inherited turns them into listeners.
	Files []*os.File
	// Notifier sends sd_notify messages; nil without NOTIFY_SOCKET.
	Notifier *Notifier
	// Watchdog is WATCHDOG_USEC when it is meant for this process (0:
	// no watchdog): send WATCHDOG=1 at least this often.
	Watchdog time.Duration
}

// variables are the environment variables Take consumes and unsets.
var variables = []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"}

// Take reads the service manager's variables from the environment and
// unsets them, whatever their values, so that no child process of krait
// inherits them. It returns an empty Env outside systemd. An error means
// a malformed LISTEN_FDS or WATCHDOG_USEC; the variables are unset anyway.
func Take() (*Env, error) {
	get := func(k string) string { v, _ := os.LookupEnv(k); return v }
	pid := os.Getpid()
	e := &Env{}
	var errs []error
	defer func() {
		for _, k := range variables {
			_ = os.Unsetenv(k) // Unsetenv fails only on an invalid name
		}
	}()

	if fds := get("LISTEN_FDS"); fds != "" && get("LISTEN_PID") == strconv.Itoa(pid) {
		n, err := strconv.Atoi(fds)
		if err != nil || n < 0 || n > 1<<16 {
			errs = append(errs, fmt.Errorf("LISTEN_FDS=%q is not a number of sockets", fds))
		} else {
			names := strings.Split(get("LISTEN_FDNAMES"), ":")
			for i := range n {
				fd := listenFdsStart + i
				// Before anything can fork: the workers must not inherit it.
				syscall.CloseOnExec(fd)
				name := "LISTEN_FD_" + strconv.Itoa(fd)
				if i < len(names) && names[i] != "" && len(names) == n {
					name = names[i]
				}
				e.Files = append(e.Files, os.NewFile(uintptr(fd), name))
			}
		}
	}
	if s := get("NOTIFY_SOCKET"); s != "" {
		n, err := NewNotifier(s)
		if err != nil {
			errs = append(errs, err)
		} else {
			e.Notifier = n
		}
	}
	if us := get("WATCHDOG_USEC"); us != "" {
		wp := get("WATCHDOG_PID")
		n, err := strconv.ParseUint(us, 10, 63)
		switch {
		case err != nil || n == 0:
			errs = append(errs, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", us))
		case wp == "" || wp == strconv.Itoa(pid):
			e.Watchdog = time.Duration(n) * time.Microsecond
		}
	}
	return e, errors.Join(errs...)
}

// Listener is one inherited socket as a listener.
type Listener struct {
	net.Listener
	// Name is the socket's LISTEN_FDNAMES entry (FileDescriptorName=),
	// or "LISTEN_FD_<fd>".
	Name string
}

// Inherited turns the sockets of Files into listeners and closes the
// files (net.FileListener works on a close-on-exec duplicate). Every fd
// must be a listening stream socket (TCP or unix); on an error every
// listener made so far is closed.
func (e *Env) Inherited() ([]Listener, error) {
	var ls []Listener
	fail := func(err error) ([]Listener, error) {
		for _, l := range ls {
			_ = l.Close()
		}
		for _, f := range e.Files {
			_ = f.Close()
		}
		e.Files = nil
		return nil, err
	}
	for _, f := range e.Files {
		if t, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_TYPE); err != nil || t != syscall.SOCK_STREAM {
			return fail(fmt.Errorf("socket activation: fd %d (%s) is not a stream socket: use ListenStream= (and Accept=no)", f.Fd(), f.Name()))
		}
		if acc, err := syscall.GetsockoptInt(int(f.Fd()), syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN); err != nil || acc == 0 {
			return fail(fmt.Errorf("socket activation: fd %d (%s) is not a listening socket: use Accept=no", f.Fd(), f.Name()))
		}
		l, err := net.FileListener(f)
		if err != nil {
			return fail(fmt.Errorf("socket activation: fd %d (%s): %w", f.Fd(), f.Name(), err))
		}
		ls = append(ls, Listener{Listener: l, Name: f.Name()})
	}
	for _, f := range e.Files {
		_ = f.Close() // the listener holds its own duplicate
	}
	e.Files = nil
	return ls, nil
}
