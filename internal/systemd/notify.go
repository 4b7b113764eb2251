package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// Notifier sends sd_notify(3) messages to the service manager. A nil
// *Notifier is valid and sends nothing. Safe for concurrent use: each
// message is one datagram on a socket of its own, as libsystemd does (a
// connected socket would break when the manager re-executes itself).
type Notifier struct {
	addr *net.UnixAddr
}

// NewNotifier returns a Notifier for the NOTIFY_SOCKET value socket: an
// absolute path, or "@name" for the abstract namespace (Go's net package
// maps a leading '@' to the abstract namespace on Linux).
func NewNotifier(socket string) (*Notifier, error) {
	if socket == "" || (socket[0] != '/' && socket[0] != '@') {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q is neither an absolute path nor @abstract (vsock is not supported)", socket)
	}
	return &Notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}, nil
}

// Send sends one message: newline-separated VAR=VALUE assignments.
func (n *Notifier) Send(ctx context.Context, state string) error {
	if n == nil {
		return nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixgram", n.addr.Name)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	// A datagram to a full queue blocks: bound it, systemd must not stall us.
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetWriteDeadline(deadline)
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %q: %w", firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// statusLine makes s safe as a STATUS= value: one line.
func statusLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

// Ready tells the manager start-up is complete (READY=1), with a STATUS=.
func (n *Notifier) Ready(ctx context.Context, status string) error {
	return n.Send(ctx, "READY=1\nSTATUS="+statusLine(status))
}

// Reloading tells the manager a reload has begun; Ready ends it. It
// carries MONOTONIC_USEC, which Type=notify-reload (systemd 253+) requires.
func (n *Notifier) Reloading(ctx context.Context, status string) error {
	return n.Send(ctx, "RELOADING=1\nMONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10)+"\nSTATUS="+statusLine(status))
}

// Stopping tells the manager a stop has begun (STOPPING=1).
func (n *Notifier) Stopping(ctx context.Context, status string) error {
	return n.Send(ctx, "STOPPING=1\nSTATUS="+statusLine(status))
}

// Status updates the free-form status systemctl status shows.
func (n *Notifier) Status(ctx context.Context, status string) error {
	return n.Send(ctx, "STATUS="+statusLine(status))
}

// Watchdog runs until ctx ends, sending WATCHDOG=1 every interval/2 while
// healthy() holds (systemd's advice: half the timeout). When healthy()
// fails the pings stop, and the manager kills and restarts krait once
// interval passes without one. interval <= 0 or a nil Notifier: it
// returns at once.
func (n *Notifier) Watchdog(ctx context.Context, interval time.Duration, healthy func() bool, log *slog.Logger) {
	if n == nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	wasHealthy := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok := healthy()
		if ok != wasHealthy { // log transitions, not every tick
			if ok {
				log.Info("watchdog: a worker is ready again, pinging the service manager")
			} else {
				log.Warn("watchdog: no worker ready, not pinging the service manager", "watchdog", interval.String())
			}
			wasHealthy = ok
		}
		if !ok {
			continue
		}
		if err := n.Send(ctx, "WATCHDOG=1"); err != nil && ctx.Err() == nil {
			log.Warn("watchdog ping failed", "err", err)
		}
	}
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with (Go's time keeps its monotonic reading
// private). Raw syscall: no cgo, no golang.org/x/sys.
func monotonicUsec() int64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0
	}
	return ts.Sec*1_000_000 + ts.Nsec/1000
}
