package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/server"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/systemd"
	"github.com/krait-server/krait/internal/version"
	"github.com/krait-server/krait/internal/worker"
)

const usage = `krait: an application server for Python web apps (WSGI and ASGI).

Usage:
  krait serve MODULE:CALLABLE [flags]   serve a WSGI or ASGI app (see krait serve --help)
  krait systemd-unit [--socket] MODULE:CALLABLE [serve flags]
                                        print a systemd service unit (and socket unit)
  krait version                         print the version
  krait help                            print this help
`

// Run runs the command line args (without the program name) and returns
// the exit status.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "systemd-unit":
		return systemdUnit(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "krait %s (%s, %s/%s)\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		if len(args) > 1 && args[1] == "serve" {
			return serve(ctx, []string{"--help"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "krait: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := config.ParseServe(args, stdout, nil, nil)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "krait serve: %v\nRun 'krait serve --help' for the flags.\n", err)
		return 2
	}
	// Before anything starts a child process: the variables must not
	// reach the interpreter probe or the workers.
	sd, sdErr := systemd.Take()

	errOut, closeErr, err := openLog(cfg.ErrorLog, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "krait serve: --error-logfile: %v\n", err)
		return 2
	}
	defer closeErr()
	var accessOut io.Writer
	if cfg.AccessLog != "" {
		w, closeAccess, err := openLog(cfg.AccessLog, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "krait serve: --access-logfile: %v\n", err)
			return 2
		}
		defer closeAccess()
		accessOut = w
	}

	// The error log is shared by slog records and worker output lines;
	// one lock keeps every line whole.
	// A LogWriter never blocks: a log destination nobody reads must not
	// stall workers or a stop (supervisor.LogWriter). Flushed, within
	// bounds, before the log file closes.
	errLog := supervisor.NewLogWriter(errOut, 0)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = errLog.Flush(ctx)
	}()
	log := slog.New(slog.NewTextHandler(errLog, &slog.HandlerOptions{Level: cfg.LogLevel}))
	slog.SetDefault(log)

	log.Info("starting", "version", version.String(), "pid", os.Getpid())
	if sdErr != nil {
		log.Warn("ignoring malformed service manager variables", "err", sdErr)
	}
	stopReopen := systemd.ReopenOnSIGUSR1(log, logFiles(errOut, accessOut)...)
	defer stopReopen()
	// The probe runs beside the start-up, so a slow interpreter delays
	// nothing; only a boot-failure report waits for it.
	probeCtx, stopProbe := context.WithCancel(ctx)
	defer stopProbe()
	probed := make(chan probeResult, 1)
	go func() {
		in, err := probePython(probeCtx, cfg.Python, cfg.Chdir, cfg.Env)
		if probeCtx.Err() == nil {
			logInterpreter(log, in, err)
		}
		probed <- probeResult{in, err}
	}()

	// SIGHUP (reload), SIGTTIN/SIGTTOU (scale) and SIGQUIT (stop now)
	// have gunicorn's meanings; server.Run tells them apart.
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT,
		syscall.SIGHUP, syscall.SIGTTIN, syscall.SIGTTOU)
	defer signal.Stop(signals)

	err = server.Run(ctx, cfg, server.Options{
		Log:          log,
		WorkerOutput: errLog,
		AccessLog:    accessOut,
		Signals:      signals,
		Systemd:      sd,
	})
	if err == nil {
		return 0
	}
	var boot *worker.BootError
	if errors.As(err, &boot) {
		fmt.Fprintf(errLog, "krait: the application %s could not be loaded; Python said:\n\n%s\n", cfg.App, boot.Message)
		pr := awaitProbe(probed, cfg.Python)
		if hint := importHint(boot.Message, pr.in, pr.err == nil, cfg.Chdir); hint != "" {
			fmt.Fprintf(errLog, "%s\n", hint)
		}
		log.Error("worker failed to boot, exiting", "app", cfg.App)
		return 1
	}
	log.Error("krait stopped", "err", err)
	return 1
}

// openLog opens a log destination: "-" is the given standard stream,
// anything else a file opened for appending.
func openLog(dest string, std io.Writer) (io.Writer, func(), error) {
	if dest == "-" {
		return std, func() {}, nil
	}
	f, err := systemd.OpenLogFile(dest) // SIGUSR1 reopens it
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}

// lockedWriter serialises writes so lines from different goroutines never
// interleave.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
