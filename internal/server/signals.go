package server

import (
	"context"
	"log/slog"
	"os"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/systemd"
	"github.com/krait-server/krait/internal/tlsconf"
)

// controlSignals handles the signals that do not stop krait, with
// gunicorn's meanings: SIGHUP reloads (a new generation of workers, the
// TLS certificates), SIGTTIN adds a worker, SIGTTOU removes one. Every
// other signal is passed on the returned channel as a stop request;
// quick is the one that means "stop now" (SIGQUIT). A file received on
// changes (--reload, internal/devreload) reloads exactly as SIGHUP does.
// It runs until ctx ends.
func controlSignals(ctx context.Context, in <-chan os.Signal, changes <-chan string, pool *supervisor.Pool, tc *tlsconf.Config, sd *systemd.Env, log *slog.Logger) (stops <-chan os.Signal, quick os.Signal) {
	out := make(chan os.Signal, 4)
	reloads := make(chan struct{}, 1) // one pending reload is enough
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-reloads:
				reload(ctx, pool, tc, sd, log)
			}
		}
	}()
	go func() {
		for {
			var sig os.Signal
			select {
			case <-ctx.Done():
				return
			case sig = <-in:
			case file := <-changes: // nil (never ready) without --reload
				// Read here, not by the reloading goroutine: a save during
				// a reload queues one more, which sees the newest code.
				log.Info("file changed: reloading", "file", file)
				select {
				case reloads <- struct{}{}:
				default: // one already pending: it will see the same code
				}
				continue
			}
			switch sig {
			case syscall.SIGHUP:
				log.Info("SIGHUP: reloading")
				select {
				case reloads <- struct{}{}:
				default: // one already pending: it will see the same code
				}
			case syscall.SIGTTIN:
				n, err := pool.AddWorker()
				if err != nil {
					log.Warn("SIGTTIN: cannot add a worker", "err", err)
				} else {
					log.Info("SIGTTIN: worker added", "workers", n)
				}
			case syscall.SIGTTOU:
				n, err := pool.RemoveWorker()
				if err != nil {
					log.Warn("SIGTTOU: cannot remove a worker", "err", err)
				} else {
					log.Info("SIGTTOU: worker removed", "workers", n)
				}
			default:
				select {
				case out <- sig:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, syscall.SIGQUIT
}

// reload reloads the TLS certificates and starts a new generation of
// workers; a generation that fails to boot is abandoned (the old one
// keeps serving, the traceback is in the log).
func reload(ctx context.Context, pool *supervisor.Pool, tc *tlsconf.Config, sd *systemd.Env, log *slog.Logger) {
	notify := sd != nil && sd.Notifier != nil
	if notify {
		if err := sd.Notifier.Reloading(ctx, "reloading: starting a new generation of workers"); err != nil {
			log.Warn("sd_notify RELOADING", "err", err)
		}
	}
	if err := tc.Reload(); err != nil {
		log.Error("reload: TLS certificates not reloaded, keeping the old ones", "err", err)
	}
	start := time.Now()
	status := "ready: new generation of workers serving"
	if err := pool.Reload(ctx); err != nil {
		log.Error("reload failed: the old workers keep serving", "err", err)
		status = "ready: reload failed, old workers serving"
	} else {
		log.Info("reloaded: new generation of workers serving", "took", time.Since(start).Round(time.Millisecond).String())
	}
	if notify {
		if err := sd.Notifier.Ready(ctx, status); err != nil {
			log.Warn("sd_notify READY", "err", err)
		}
	}
}
