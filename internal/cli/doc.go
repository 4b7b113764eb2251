// Package cli implements krait's command line: `krait serve`, `krait
// version` and help. Run returns the process exit status so main stays a
// one-liner: 0 on success, 1 when serving fails (for example an app that
// cannot be imported), 2 for a bad command line.
//
// Before serving, `krait serve` logs its version (package version) and
// runs the chosen interpreter once (python -c) to log its path, version
// and virtualenv; the same answer explains a ModuleNotFoundError at boot
// (which interpreter ran, and how to pick another when it is in no
// virtualenv). The probe is bounded and advisory: when it fails krait
// logs a warning and starts anyway.
//
// `krait serve` takes the service manager's variables (systemd.Take)
// before it starts any child process, so neither the probe nor the
// workers inherit them, and reopens its --access-logfile and
// --error-logfile files on SIGUSR1 (logrotate). The other signals, with
// gunicorn's meanings, go to server.Run: SIGINT/SIGTERM stop gracefully,
// SIGQUIT stops at once, SIGHUP reloads, SIGTTIN/SIGTTOU add/remove a
// worker. `krait systemd-unit`
// (systemd_unit.go) prints a service unit, and a socket unit with
// --socket, for the serve flags it is given.
package cli
