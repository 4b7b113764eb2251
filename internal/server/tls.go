package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/h1"
	"github.com/krait-server/krait/internal/h2"
	"github.com/krait-server/krait/internal/tlsconf"
)

// newTLSConfig loads the certificates of --certfile or sets up ACME; nil
// when the listeners are plain. Done before the workers boot, so a bad
// certificate stops krait at once.
func newTLSConfig(cfg *config.Serve, log *slog.Logger) (*tlsconf.Config, error) {
	t := cfg.TLS
	if !t.Enabled() {
		return nil, nil
	}
	auth := tls.NoClientCert
	switch t.CertReqs {
	case "optional":
		auth = tls.VerifyClientCertIfGiven
	case "required":
		auth = tls.RequireAndVerifyClientCert
	}
	tc, err := tlsconf.New(tlsconf.Options{
		CertFile: t.CertFile, KeyFile: t.KeyFile, CACerts: t.CACerts, ClientAuth: auth,
		ACME: tlsconf.ACME{Domains: t.ACMEDomains, Email: t.ACMEEmail, CA: t.ACMECA, CARoot: t.ACMECARoot, CacheDir: t.ACMECache},
		Log:  log,
	})
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return tc, nil
}

// newEngine picks the engine of one listener: the net/http-based one
// (internal/h2) for TLS (HTTP/1.1 + HTTP/2 by ALPN) and for
// --http2-cleartext, krait's own HTTP/1.1 engine (sharing budget, the h1
// engines' head-memory budget) otherwise.
func newEngine(h exchange.Handler, cfg *config.Serve, budget *h1.HeadBudget, conns *h1.ConnLimit, tc *tlsconf.Config, log *slog.Logger) (Engine, error) {
	c := h2.Config{
		DisableHTTP2:         !cfg.TLS.HTTP2,
		Cleartext:            cfg.TLS.HTTP2Cleartext,
		MaxConcurrentStreams: cfg.TLS.HTTP2MaxConcurrentStreams,
		HeaderTimeout:        cfg.HeaderTimeout,
		IdleTimeout:          cfg.KeepAlive,
		HSTS:                 cfg.TLS.HSTS,
		Log:                  log,
	}
	if tc == nil && !cfg.TLS.HTTP2Cleartext {
		return newH1Engine(h, cfg, budget, conns, log), nil
	}
	if tc != nil {
		c.TLS = tc.TLS
	}
	e, err := h2.New(h, c)
	if err != nil {
		return nil, fmt.Errorf("TLS/HTTP/2 engine: %w", err)
	}
	return e, nil
}

// listenRedirect binds --redirect-http and returns its listener and
// engine (nil, nil without the flag). Redirects go to the port of the
// first TCP listener.
func listenRedirect(cfg *config.Serve, listeners []net.Listener, log *slog.Logger) (net.Listener, Engine, error) {
	b := cfg.TLS.RedirectHTTP
	if b == nil {
		return nil, nil, nil
	}
	port := ""
	for _, l := range listeners {
		if a, ok := l.Addr().(*net.TCPAddr); ok {
			port = fmt.Sprint(a.Port)
			break
		}
	}
	l, err := net.Listen(b.Network, b.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("--redirect-http %s: %w", b, err)
	}
	log.Info("redirecting to https", "addr", addrString(l.Addr()), "https_port", port)
	return l, h2.NewRedirect(port, cfg.HeaderTimeout, max(cfg.KeepAlive, time.Second), log), nil
}
