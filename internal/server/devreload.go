package server

import (
	"context"
	"log/slog"
	"os"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/devreload"
)

// newSourceWatcher starts watching the app's sources for --reload: the
// --chdir directory (default: the current one) and the --pythonpath
// ones. It returns nil without --reload.
func newSourceWatcher(cfg *config.Serve, log *slog.Logger) (*devreload.Watcher, error) {
	if !cfg.Reload {
		return nil, nil
	}
	root := cfg.Chdir
	if root == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		root = wd
	}
	dirs := append([]string{root}, cfg.PythonPath...)
	w, err := devreload.New(devreload.Options{Dirs: dirs, Include: cfg.ReloadInclude, Log: log})
	if err != nil {
		return nil, err
	}
	log.Info("watching for changes", "dirs", dirs, "include", cfg.ReloadInclude)
	return w, nil
}

// watchSources runs w until ctx ends and returns the channel its changed
// files arrive on (debounced); nil, which never delivers, when w is nil.
func watchSources(ctx context.Context, w *devreload.Watcher) <-chan string {
	if w == nil {
		return nil
	}
	changes := make(chan string)
	go w.Run(ctx, func(file string) {
		select {
		case changes <- file:
		case <-ctx.Done():
		}
	})
	return changes
}
