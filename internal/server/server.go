package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/krait-server/krait/internal/accesslog"
	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/dispatch"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/h1"
	"github.com/krait-server/krait/internal/metrics"
	"github.com/krait-server/krait/internal/requestid"
	"github.com/krait-server/krait/internal/route"
	"github.com/krait-server/krait/internal/static"
	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/systemd"
	"github.com/krait-server/krait/internal/worker"
	"github.com/krait-server/krait/internal/wsbridge"
	"github.com/krait-server/krait/python"
)

// Options are the process-level things Run needs besides the settings.
type Options struct {
	Log *slog.Logger
	// WorkerOutput receives the workers' stdout/stderr lines (the error log).
	WorkerOutput io.Writer
	// AccessLog receives access log lines; nil disables the access log.
	AccessLog io.Writer
	// Signals delivers stop requests: the first starts a graceful stop, the
	// second ends it at once.
	Signals <-chan os.Signal
	// AdapterCache is where the Python adapter is written ("" = user cache dir).
	AdapterCache string
	// Systemd is what the service manager passed (systemd.Take): sockets
	// to serve, where to send sd_notify messages; nil outside systemd.
	Systemd *systemd.Env
}

// Run serves cfg until a signal or a fatal error. It returns nil after a
// signal-initiated stop, and the cause otherwise (a *worker.BootError,
// wrapped, when the app cannot be imported).
func Run(ctx context.Context, cfg *config.Serve, opt Options) error {
	log := opt.Log
	listeners, err := listenSystemd(ctx, cfg, opt.Systemd, log)
	if err != nil {
		return err
	}
	defer closeListeners(listeners)
	proxyProtocol(cfg, listeners, log) // in place: the deferred close closes the wrappers
	for _, l := range listeners {
		log.Info("listening", "addr", addrString(l.Addr()))
	}
	obs, err := startMetrics(cfg, log)
	if err != nil {
		return err
	}
	defer obs.stop()

	tc, err := newTLSConfig(cfg, log)
	if err != nil {
		return err
	}
	redirectL, redirectE, err := listenRedirect(cfg, listeners, log)
	if err != nil {
		return err
	}
	if redirectL != nil {
		rl := []net.Listener{redirectL}
		proxyProtocol(cfg, rl, log)
		redirectL = rl[0]
		defer redirectL.Close()
	}
	// Everything is bound: write --pid, drop to --user. The adapter is
	// installed after, as that user, so that the workers can import it.
	osst, err := afterBind(cfg, listeners, log)
	if err != nil {
		return err
	}
	defer osst.close(log)
	adapterDir, err := python.Install(opt.AdapterCache)
	if err != nil {
		return fmt.Errorf("installing the Python adapter: %w", err)
	}

	pool, err := supervisor.Start(ctx, supervisor.Config{
		Worker:     cfg.Worker,
		Workers:    cfg.Workers,
		AdapterDir: adapterDir,
		Log:        log,
		Output:     opt.WorkerOutput,
		Recycle: supervisor.Recycle{
			MaxRequests:       cfg.MaxRequests,
			MaxRequestsJitter: cfg.MaxRequestsJitter,
			MaxRSS:            int64(cfg.MaxRSSMiB) << 20,
			MaxLifetime:       cfg.MaxLifetime,
		},
	})

	if err != nil {
		return err
	}
	if cfg.Autoscaling() {
		if err := pool.StartAutoscaler(supervisor.Autoscale{Min: cfg.Workers, Max: cfg.MaxWorkers, ScaleDownAfter: cfg.ScaleDownAfter}); err != nil {
			pool.Close()
			return err
		}
	}

	// The queue bound is set once: sized for the most workers the
	// autoscaler may run, so that it does not shrink the queue below
	// what --max-queue promises per worker at the peak.
	dispatcher := dispatch.New(pool, dispatch.Config{
		MaxQueue:   cfg.MaxQueue * cfg.PeakWorkers(),
		MaxBody:    cfg.MaxBodySize,
		BufferBody: cfg.BufferBody,
		ASGI:       cfg.Interface == "asgi",
		Timeout:    cfg.Timeout,
		Log:        log,
		WebSocket: wsbridge.Config{
			MaxSize:           cfg.WSMaxSize,
			PingInterval:      cfg.WSPingInterval,
			PingTimeout:       cfg.WSPingTimeout,
			PerMessageDeflate: cfg.WSPerMessageDeflate,
		},

		// Response spooling (--buffer-response and friends).
		BufferResponse:       cfg.BufferResponse,
		BufferDir:            cfg.BufferDir,
		MaxTempFileSize:      cfg.MaxTempFileSize,
		BufferResponseMemory: cfg.BufferResponseMemory,
	})
	statics, err := newStatics(cfg, log)
	if err != nil {
		pool.Close()
		return err
	}
	// Read once from the first workers: a reload (SIGHUP) keeps these
	// routes even if the new code changes the settings.
	statics = append(statics, djangoStatics(cfg, pool.Django(), log)...)
	defer closeStatics(statics)
	obs.setPool(pool)
	router, err := newRouter(dispatcher, statics, opt.AccessLog, obs.metrics(), cfg)
	if err != nil {
		pool.Close()
		return err
	}
	engines := make([]Engine, len(listeners))
	// One head-memory budget for every h1 engine: it bounds the process.
	budget := h1.NewHeadBudget(cfg.MaxHeadMemory)
	// And one --max-connections bound for all of them.
	var conns *h1.ConnLimit
	if cfg.MaxConnections > 0 {
		conns = h1.NewConnLimit(cfg.MaxConnections)
	}
	for i := range listeners {
		if engines[i], err = newEngine(router.Listener(listenerName(cfg.Binds[i])), cfg, budget, conns, tc, log); err != nil {
			pool.Close()
			return err
		}
		if _, ok := engines[i].(*h1.Server); !ok && conns != nil {
			// net/http's engine (TLS, h2c) counts through its listener.
			listeners[i] = h1.LimitListener(listeners[i], conns)
		}
	}
	if redirectL != nil {
		listeners = append(listeners, redirectL)
		engines = append(engines, redirectE)
	}

	sources, err := newSourceWatcher(cfg, log) // --reload; nil without
	if err != nil {
		pool.Close()
		return err
	}
	defer sources.Close()
	serveErr := make(chan error, len(listeners))
	var serving sync.WaitGroup
	for i, l := range listeners {
		serving.Add(1)
		go func(e Engine, l net.Listener) {
			defer serving.Done()
			if err := e.Serve(l); err != nil {
				serveErr <- fmt.Errorf("serving on %s: %w", addrString(l.Addr()), err)
			}
		}(engines[i], l)
	}
	log.Info("ready", "app", cfg.App, "workers", cfg.Workers, "max_workers", cfg.PeakWorkers(), "threads", cfg.Threads, "pid", os.Getpid())
	stopWatchdog := notifyReady(ctx, cfg, opt.Systemd, pool, log)
	defer stopWatchdog()
	// SIGHUP, SIGTTIN and SIGTTOU act here; every other signal is a stop.
	sigCtx, stopSignals := context.WithCancel(ctx)
	defer stopSignals()
	stops, quick := controlSignals(sigCtx, opt.Signals, watchSources(sigCtx, sources), pool, tc, opt.Systemd, log)
	opt.Signals = stops

	var cause error
	delay, graceful := cfg.ShutdownDelay, cfg.GracefulTimeout
	select {
	case sig := <-opt.Signals:
		log.Info("stopping gracefully", "signal", sig.String(), "graceful_timeout", cfg.GracefulTimeout.String())
		if sig == quick {
			log.Warn("SIGQUIT: stopping now")
			delay, graceful = 0, 0
		}
	case err := <-serveErr:
		cause = err
		log.Error("listener failed, stopping", "err", err)
	case <-ctx.Done():
		log.Info("stopping gracefully", "reason", ctx.Err().Error())
	}

	notifyStopping(opt.Systemd, log)
	if cause != nil {
		closeEngines(engines)
		pool.Close()
		serving.Wait()
		return cause
	}

	// Not ready at once; keep serving for --shutdown-delay so a load
	// balancer notices before the listeners close.
	obs.setDraining()
	now := waitShutdownDelay(delay, opt.Signals, log)
	// A stop "now" (SIGQUIT, no graceful time) has a cancelled stopCtx,
	// not an expired one: worker.Shutdown gives ASGI workers extra time to
	// cancel their tasks only when the graceful timeout ran out.
	stopCtx, cancel := context.WithCancel(context.Background())
	if now || graceful <= 0 {
		cancel()
	} else {
		stopCtx, cancel = context.WithTimeout(stopCtx, graceful)
	}
	defer cancel()
	go func() {
		select {
		case sig := <-opt.Signals:
			log.Warn("second signal: stopping now", "signal", sig.String())
			cancel()
		case <-stopCtx.Done():
		}
	}()
	start := time.Now()
	// Open WebSockets never finish by themselves: close them (1012, as
	// uvicorn does) so their workers can drain.
	dispatcher.Shutdown()
	if err := shutdownEngines(stopCtx, engines); err != nil {
		log.Warn("in-flight requests cut short", "err", err)
		closeEngines(engines)
	}
	if err := pool.Shutdown(stopCtx); err != nil {
		log.Warn("workers killed before finishing", "err", err)
		pool.Close()
	}
	serving.Wait()
	log.Info("stopped", "took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// Engine serves HTTP on listeners with the handler it was built with. The
// server runs one per listener: krait's own HTTP/1.1 engine (internal/h1)
// for cleartext today; a net/http-based engine for TLS and HTTP/2 will
// implement the same three methods, beside it, without the dispatcher or
// the router knowing.
type Engine interface {
	// Serve accepts connections on l and serves them until Shutdown or
	// Close, and then returns nil; any other error ends serving on l.
	Serve(l net.Listener) error
	// Shutdown stops accepting, closes idle connections, lets requests in
	// flight finish and returns nil once every connection is closed; when
	// ctx ends first it closes everything and returns ctx.Err().
	Shutdown(ctx context.Context) error
	// Close closes the listeners and every connection now.
	Close() error
}

var _ Engine = (*h1.Server)(nil)

// newRouter builds the routing table: "/" to the Python app and the
// --static mounts (statics), with the access log (when enabled) as global
// middleware so that every request, the router's own 404s included, is logged;
// with metrics (m, nil when off) counted and labelled by route kind too.
// The forwarding headers (newFront) are applied outermost, so the log and
// metrics see the client; the app route alone compresses, inside the log
// so that it counts the bytes sent.
func newRouter(app exchange.Handler, statics []route.Route, accessLog io.Writer, m *metrics.Metrics, cfg *config.Serve) (*route.Router, error) {
	fr, err := newFront(cfg)
	if err != nil {
		return nil, err
	}
	// The request id inside the forwarded middleware (a trusted proxy's
	// view of the request first) and outside the access log, so the log
	// line (written after the inner handlers) finds it in the headers.
	global := []route.Middleware{fr.forwarded, requestid.New().Wrap}
	if accessLog != nil {
		global = append(global, accesslog.New(accessLog).Wrap)
	}
	routes := append([]route.Route{{Kind: route.KindApp, Prefix: "/", Handler: app, Middleware: fr.app}}, statics...)
	routes, global = instrument(m, routes, global)
	r, err := route.New(routes, global...)
	if err != nil {
		return nil, fmt.Errorf("building the routes: %w", err)
	}
	return r, nil
}

// listenerName is the name routes use for the listener of b: the bind as
// given ("127.0.0.1:8000", "unix:/run/krait.sock").
func listenerName(b config.Bind) string { return b.String() }

// newH1Engine builds the cleartext HTTP/1.1 engine for one listener. Every
// engine gets the same budget, so the head-memory limit bounds the whole
// process however many listeners there are.
func newH1Engine(h exchange.Handler, cfg *config.Serve, budget *h1.HeadBudget, conns *h1.ConnLimit, log *slog.Logger) *h1.Server {
	return h1.New(h, h1.Config{HTTP: cfg.HTTP, HeadBudget: budget, ConnLimit: conns, Log: log})
}

// shutdownEngines shuts every engine down at once, so that all listeners
// stop accepting together while in-flight requests drain, and returns
// their errors joined.
func shutdownEngines(ctx context.Context, engines []Engine) error {
	errs := make([]error, len(engines))
	var wg sync.WaitGroup
	for i, e := range engines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.Shutdown(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func closeEngines(engines []Engine) {
	for _, e := range engines {
		_ = e.Close() // closing cannot fail in a way worth reporting at exit
	}
}

func listenAll(binds []config.Bind) ([]net.Listener, error) {
	var ls []net.Listener
	for _, b := range binds {
		if b.Network == "unix" {
			removeStaleSocket(b.Address)
		}
		l, err := net.Listen(b.Network, b.Address)
		if err != nil {
			closeListeners(ls)
			return nil, fmt.Errorf("--bind %s: %w", b, err)
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// removeStaleSocket deletes a socket file left behind by a previous run, as
// gunicorn does; anything that is not a socket is left alone (and the bind
// then fails with a clear error).
func removeStaleSocket(path string) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close() // someone is serving there: let the bind fail
			return
		}
		_ = os.Remove(path)
	}
}

// closeListeners closes ls; a unix listener made by net.Listen removes its
// socket file on Close.
func closeListeners(ls []net.Listener) {
	for _, l := range ls {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			slog.Debug("closing listener", "err", err)
		}
	}
}

func addrString(a net.Addr) string {
	if a.Network() == "unix" {
		return "unix:" + a.String()
	}
	return a.String()
}

// newStatics opens the --static mounts: one route of kind "static" each,
// served by Go without the workers.
func newStatics(cfg *config.Serve, log *slog.Logger) ([]route.Route, error) {
	var routes []route.Route
	for _, m := range cfg.Static {
		h, err := static.New(static.Config{Prefix: m.Prefix, Dir: m.Dir, MaxAge: cfg.StaticMaxAge, Log: log})
		if err != nil {
			closeStatics(routes)
			return nil, fmt.Errorf("--static %s=%s: %w", m.Prefix, m.Dir, err)
		}
		routes = append(routes, route.Route{Kind: static.Kind, Prefix: m.Prefix, Handler: h})
	}
	return routes, nil
}

// djangoStatics serves a Django project's STATIC_URL from STATIC_ROOT,
// and MEDIA_URL from MEDIA_ROOT with --serve-media, as reported by the
// workers' HELLO (dj; nil for other apps). Only path URLs ("/static/",
// not a CDN's "https://…") and absolute, existing roots are served, and
// an explicit --static for the same prefix wins. A setting it cannot
// serve is logged, never fatal: the app still gets those requests.
func djangoStatics(cfg *config.Serve, dj *worker.Django, log *slog.Logger) []route.Route {
	if dj == nil {
		return nil
	}
	taken := map[string]string{} // prefix -> what serves it
	for _, m := range cfg.Static {
		taken[m.Prefix] = "--static"
	}
	var routes []route.Route
	mount := func(setting, url, rootSetting, root string, collect bool) {
		if url == "" {
			return
		}
		if !strings.HasPrefix(url, "/") || strings.HasPrefix(url, "//") {
			log.Info("not serving Django files: the URL is not a path on this server", "setting", setting, "url", url)
			return
		}
		hint := ""
		if collect {
			hint = ": run manage.py collectstatic"
		}
		if root == "" {
			log.Warn("not serving Django files: "+rootSetting+" is not set"+hint, "setting", setting, "url", url)
			return
		}
		if !filepath.IsAbs(root) {
			log.Warn("not serving Django files: "+rootSetting+" is not an absolute path", "setting", setting, "url", url, "dir", root)
			return
		}
		if _, err := os.Stat(root); err != nil {
			log.Warn("not serving Django files: "+rootSetting+" is missing"+hint, "setting", setting, "url", url, "dir", root, "err", err)
			return
		}
		m, err := config.NewStaticMount(url, root)
		if err != nil {
			log.Warn("not serving Django files", "setting", setting, "url", url, "dir", root, "err", err)
			return
		}
		if by, ok := taken[m.Prefix]; ok {
			log.Info("not serving Django files: the prefix is already served", "setting", setting, "prefix", m.Prefix, "by", by)
			return
		}
		if collect {
			if ents, err := os.ReadDir(root); err == nil && len(ents) == 0 {
				log.Warn(rootSetting+" is empty: run manage.py collectstatic", "dir", root)
			}
		}
		h, err := static.New(static.Config{Prefix: m.Prefix, Dir: m.Dir, MaxAge: cfg.StaticMaxAge, Log: log.With("source", "django")})
		if err != nil {
			log.Warn("not serving Django files", "setting", setting, "prefix", m.Prefix, "dir", m.Dir, "err", err)
			return
		}
		taken[m.Prefix] = setting
		routes = append(routes, route.Route{Kind: static.Kind, Prefix: m.Prefix, Handler: h})
	}
	mount("STATIC_URL", dj.StaticURL, "STATIC_ROOT", dj.StaticRoot, true)
	switch {
	case cfg.ServeMedia:
		mount("MEDIA_URL", dj.MediaURL, "MEDIA_ROOT", dj.MediaRoot, false)
	case dj.MediaURL != "" && dj.MediaRoot != "":
		log.Debug("not serving Django's MEDIA_ROOT without --serve-media", "url", dj.MediaURL, "dir", dj.MediaRoot)
	}
	return routes
}

func closeStatics(routes []route.Route) {
	for _, r := range routes {
		if h, ok := r.Handler.(*static.Handler); ok {
			_ = h.Close() // a directory handle: nothing to report at exit
		}
	}
}

// observability is the --metrics-bind listener and the metrics it serves;
// a nil *observability (no --metrics-bind) does nothing.
type observability struct {
	m   *metrics.Metrics
	srv *metrics.Server
}

// startMetrics binds --metrics-bind and serves /metrics, /healthz and
// /readyz on it from now on, before the workers boot (/readyz is 503
// until they are up); nil when the flag is not set.
func startMetrics(cfg *config.Serve, log *slog.Logger) (*observability, error) {
	if cfg.MetricsBind == nil {
		return nil, nil
	}
	if cfg.MetricsBind.Network == "unix" {
		removeStaleSocket(cfg.MetricsBind.Address)
	}
	m := metrics.New()
	srv, err := metrics.Listen(cfg.MetricsBind.Network, cfg.MetricsBind.Address, m, log)
	if err != nil {
		return nil, err
	}
	log.Info("metrics listening", "addr", addrString(srv.Addr()))
	return &observability{m: m, srv: srv}, nil
}

func (o *observability) setPool(p *supervisor.Pool) {
	if o != nil {
		o.m.SetPool(p)
	}
}

// metrics returns the metrics for newRouter, nil when there are none.
func (o *observability) metrics() *metrics.Metrics {
	if o == nil {
		return nil
	}
	return o.m
}

// setDraining turns /readyz to 503 for good.
func (o *observability) setDraining() {
	if o != nil {
		o.m.SetDraining()
	}
}

// stop closes the metrics listener, at the very end of Run: probes keep
// their answers (healthz 200, readyz 503) until the process is done.
func (o *observability) stop() {
	if o == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = o.srv.Shutdown(ctx) // a scrape cut short at exit is nothing to report
}

// instrument adds the metrics to a routing table: the request middleware
// as the innermost global middleware (so the route's kind middleware finds
// its recorder first), and each route's kind as its outermost middleware.
func instrument(m *metrics.Metrics, routes []route.Route, global []route.Middleware) ([]route.Route, []route.Middleware) {
	if m == nil {
		return routes, global
	}
	for i, r := range routes {
		routes[i].Middleware = append([]route.Middleware{m.Kind(r.Kind)}, r.Middleware...)
	}
	return routes, append(global, m.Wrap)
}

// waitShutdownDelay waits d before a graceful stop closes the listeners,
// which keep serving meanwhile (/readyz already answers 503), so that a
// load balancer notices first. It returns true when a second signal came
// meanwhile: the caller then stops at once.
func waitShutdownDelay(d time.Duration, signals <-chan os.Signal, log *slog.Logger) bool {
	if d <= 0 {
		return false
	}
	log.Info("shutdown delay: still serving, not ready", "shutdown_delay", d.String())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return false
	case sig := <-signals:
		log.Warn("second signal: stopping now", "signal", sig.String())
		return true
	}
}
