package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves /metrics (Prometheus text or protobuf), /healthz (200
// while the process runs) and /readyz (200 when Ready, else 503 with the
// reason). Anything else is 404.
func (m *Metrics) Handler(log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:          slogPrinter{log},
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp's own scrape counters
		EnableOpenMetrics: false,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, reason := m.Ready(); !ok {
			plain(w, http.StatusServiceUnavailable, "not ready: "+reason+"\n")
			return
		}
		plain(w, http.StatusOK, "ok\n")
	})
	return mux
}

func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body)) // a probe that hung up needs nothing more
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Error("metrics: " + fmt.Sprint(v...)) }

// Server is the metrics listener: its own net/http server, separate from
// the app's listeners and never routed to the app.
type Server struct {
	srv  *http.Server
	l    net.Listener
	done chan struct{}
}

// Listen binds network/address now (so a bad --metrics-bind fails at
// start-up, like --bind) and serves m's Handler on it in the background
// until Close.
func Listen(network, address string, m *Metrics, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	l, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("--metrics-bind: %w", err)
	}
	s := &Server{
		srv: &http.Server{
			Handler: m.Handler(log),
			// Probes and scrapers are local and quick: bound what a
			// stuck one may hold.
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		l:    l,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "addr", l.Addr().String(), "err", err)
		}
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Shutdown stops the server, letting scrapes in progress finish until ctx
// ends, then closing what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	return err
}
