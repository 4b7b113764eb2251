package server

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/krait-server/krait/internal/compress"
	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/forwarded"
	"github.com/krait-server/krait/internal/proxyproto"
	"github.com/krait-server/krait/internal/route"
)

// front is the middleware krait puts in front of the app from the
// forwarding and compression settings.
type front struct {
	// forwarded applies X-Forwarded-* / Forwarded from trusted proxies:
	// the outermost global middleware, so that everything inside it (the
	// access log, metrics, the app) sees the client, not the proxy.
	forwarded route.Middleware
	// app is the app route's own middleware: compression (none with
	// --compress off). Static routes have none: they serve their own
	// precompressed files and need sendfile, ranges and strong ETags.
	app []route.Middleware
}

// newFront builds the front middleware of cfg.
func newFront(cfg *config.Serve) (front, error) {
	fwd := forwarded.New(forwarded.Config{Trusted: cfg.ForwardedAllowIPs, Headers: cfg.ForwardedHeaders})
	fr := front{forwarded: fwd.Wrap}
	if len(cfg.Compress.Codings) == 0 {
		return fr, nil
	}
	cz, err := compress.New(cfg.Compress)
	if err != nil {
		return front{}, fmt.Errorf("compression: %w", err)
	}
	fr.app = []route.Middleware{cz.Wrap}
	return fr, nil
}

// proxyProtocol wraps each of ls, in place, to read a PROXY protocol
// header first when --proxy-protocol is set: before any engine sees a
// connection, since h1 takes RemoteAddr and LocalAddr from the accepted
// conn (which then carry the header's) and TLS starts after the header.
// Closing a wrapper closes the listener it wraps.
func proxyProtocol(cfg *config.Serve, ls []net.Listener, log *slog.Logger) {
	if !cfg.ProxyProtocol {
		return
	}
	for i, l := range ls {
		ls[i] = proxyproto.NewListener(l, proxyproto.Config{Trusted: cfg.ForwardedAllowIPs, Log: log})
	}
}
