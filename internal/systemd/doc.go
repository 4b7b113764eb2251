// Package systemd is krait's operating-system integration: what a service
// manager hands a daemon and what a daemon owes it, without cgo or
// libsystemd.
//
//   - Take reads the service manager's environment once, at start-up, and
//     unsets it (LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET,
//     WATCHDOG_USEC, WATCHDOG_PID) so that nothing krait starts later — the
//     Python workers, the interpreter probe — sees it: the workers'
//     environment is built from os.Environ. Call it before any goroutine
//     starts a child process.
//   - Socket activation: the fds 3 .. 3+LISTEN_FDS-1 are taken only when
//     LISTEN_PID is this process; they are made close-on-exec at once (so a
//     worker never inherits a listener) and turned into net.Listeners by
//     Inherited. MatchBinds pairs them with --bind entries by address.
//   - Notifier sends sd_notify datagrams (READY=1, RELOADING=1 with
//     MONOTONIC_USEC, STOPPING=1, STATUS=, WATCHDOG=1) to NOTIFY_SOCKET, a
//     path or an abstract name ("@name"). A nil *Notifier does nothing, so
//     callers need no "under systemd?" checks.
//   - Credentials and Drop: --user/--group, applied after the listeners are
//     bound (setgroups, setgid, setuid: Go applies them to every thread).
//   - PIDFile: --pid, written after binding, removed at exit if it still
//     names this process.
//   - LogFile: a log file that Reopen (SIGUSR1) swaps for a newly opened
//     one at the same path, for logrotate's rename-then-signal.
//   - Unit and SocketUnit render the service and socket units printed by
//     `krait systemd-unit`; Quote escapes a word for an Exec*= line.
package systemd
