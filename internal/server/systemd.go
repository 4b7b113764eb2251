package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/systemd"
)

// listenSystemd binds cfg.Binds, taking each from the sockets systemd
// passed (socket activation) when one matches it by address. Without
// --bind, every inherited socket is served and cfg.Binds becomes their
// addresses. An inherited socket that matches no --bind is an error: it
// would accept connections nobody serves. Unix sockets krait binds itself
// get --uds-mode, and belong to --user.
func listenSystemd(ctx context.Context, cfg *config.Serve, sd *systemd.Env, log *slog.Logger) ([]net.Listener, error) {
	var inherited []systemd.Listener
	if sd != nil && len(sd.Files) > 0 {
		var err error
		if inherited, err = sd.Inherited(); err != nil {
			return nil, err
		}
	}
	if len(inherited) > 0 && !cfg.BindGiven {
		binds := make([]config.Bind, len(inherited))
		ls := make([]net.Listener, len(inherited))
		for i, l := range inherited {
			b, err := systemd.BindOf(l)
			if err != nil {
				closeInherited(inherited)
				return nil, err
			}
			binds[i], ls[i] = b, l.Listener
			log.Info("socket activation: serving inherited socket", "addr", addrString(l.Addr()), "name", l.Name)
		}
		cfg.Binds = binds
		return ls, nil
	}
	byBind, unused := systemd.MatchBinds(ctx, cfg.Binds, inherited)
	if len(unused) > 0 {
		closeInherited(inherited)
		return nil, fmt.Errorf("socket activation: systemd passed %s (%s), which matches no --bind: add it, or remove its ListenStream=", addrString(unused[0].Addr()), unused[0].Name)
	}
	ls := make([]net.Listener, len(cfg.Binds))
	for i, b := range cfg.Binds {
		if byBind[i] != nil {
			ls[i] = byBind[i]
			log.Info("socket activation: inherited", "bind", b.String())
			continue
		}
		l, err := listenAll([]config.Bind{b})
		if err != nil {
			closeListeners(ls[:i])
			closeInherited(inherited)
			return nil, err
		}
		ls[i] = l[0]
		if b.Network == "unix" && cfg.UDSMode != nil {
			if err := os.Chmod(b.Address, *cfg.UDSMode); err != nil {
				closeListeners(ls[:i+1])
				closeInherited(inherited)
				return nil, fmt.Errorf("--uds-mode %04o: %w", uint32(*cfg.UDSMode), err)
			}
		}
	}
	return ls, nil
}

func closeInherited(ls []systemd.Listener) {
	for _, l := range ls {
		_ = l.Close() // giving up on start-up: nothing to report beyond the cause
	}
}

// osState is what afterBind set up and Run undoes at exit.
type osState struct {
	pid *systemd.PIDFile
}

// afterBind runs once every listener is bound and before the workers
// start: it writes --pid, then drops to --user/--group (unix sockets krait
// bound are given to that user first, as gunicorn does).
func afterBind(cfg *config.Serve, listeners []net.Listener, log *slog.Logger) (*osState, error) {
	st := &osState{}
	var creds *systemd.Credentials
	if cfg.User != "" {
		var err error
		if creds, err = systemd.LookupCredentials(cfg.User, cfg.Group); err != nil {
			return nil, err
		}
	}
	if cfg.PIDFile != "" {
		p, err := systemd.WritePIDFile(cfg.PIDFile)
		if err != nil {
			return nil, err
		}
		st.pid = p
	}
	if creds == nil {
		return st, nil
	}
	for _, l := range listeners {
		if a, ok := l.Addr().(*net.UnixAddr); ok {
			if err := systemd.Chown(a.Name, creds); err != nil {
				st.close(log)
				return nil, fmt.Errorf("--user %s: %w", cfg.User, err)
			}
		}
	}
	if err := systemd.Drop(creds); err != nil {
		st.close(log)
		return nil, fmt.Errorf("--user %s: %w", cfg.User, err)
	}
	log.Info("dropped privileges", "user", cfg.User, "uid", creds.UID, "gid", creds.GID)
	return st, nil
}

// close removes the pid file; a failure is logged (after a privilege
// drop the directory may not be ours any more).
func (st *osState) close(log *slog.Logger) {
	if st == nil {
		return
	}
	if err := st.pid.Remove(); err != nil {
		log.Warn("pid file left behind", "err", err)
	}
}

// notifyReady tells systemd krait is ready and starts the watchdog pings
// (while at least one worker is ready); the returned function stops them.
func notifyReady(ctx context.Context, cfg *config.Serve, sd *systemd.Env, pool *supervisor.Pool, log *slog.Logger) (stop func()) {
	if sd == nil || sd.Notifier == nil {
		return func() {}
	}
	status := "serving " + cfg.App + " with " + strconv.Itoa(cfg.Workers) + " worker(s)"
	if err := sd.Notifier.Ready(ctx, status); err != nil {
		log.Warn("sd_notify READY=1 failed", "err", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sd.Notifier.Watchdog(wctx, sd.Watchdog, func() bool {
			st := pool.Stats()
			return st.Ready()
		}, log)
	}()
	return func() { cancel(); <-done }
}

// notifyStopping tells systemd a stop has begun.
func notifyStopping(sd *systemd.Env, log *slog.Logger) {
	if sd == nil || sd.Notifier == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := sd.Notifier.Stopping(ctx, "stopping: draining requests"); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("sd_notify STOPPING=1 failed", "err", err)
	}
}
