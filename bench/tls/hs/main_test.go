package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestOnce: one connection does a full TLS 1.3 or 1.2 handshake with the
// chosen group, asks for the close, gets the body, and counts only a 200; a
// server without TLS fails the handshake.
func TestOnce(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ok" {
			http.NotFound(w, r)
			return
		}
		if !r.Close {
			t.Errorf("request without Connection: close")
		}
		_, _ = w.Write([]byte(strings.Repeat("x", 5000)))
	}))
	srv.StartTLS()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, tc := range []struct {
		version, curve string
		wantVersion    uint16
		wantCurve      tls.CurveID
	}{
		{"1.3", "x25519", tls.VersionTLS13, tls.X25519},
		{"1.3", "p256", tls.VersionTLS13, tls.CurveP256},
		{"1.2", "x25519", tls.VersionTLS12, tls.X25519},
	} {
		cfg, err := clientConfig("example.com", tc.version, tc.curve)
		if err != nil {
			t.Fatal(err)
		}
		// Twice with one config, as a run does: the second must not resume.
		for i := range 2 {
			st, err := once(ctx, addr, cfg, request("/ok", "example.com"))
			if err != nil {
				t.Fatalf("once %d (TLS %s, %s): %v", i, tc.version, tc.curve, err)
			}
			if st.Version != tc.wantVersion || st.CurveID != tc.wantCurve || st.DidResume {
				t.Fatalf("TLS %s %s, connection %d: version %x curve %v resumed %v; want %x, %v, a full handshake",
					tc.version, tc.curve, i, st.Version, st.CurveID, st.DidResume, tc.wantVersion, tc.wantCurve)
			}
		}
	}
	cfg, err := clientConfig("example.com", "1.3", "x25519")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clientConfig("example.com", "1.1", "x25519"); err == nil {
		t.Fatal("-tls 1.1 accepted")
	}

	_, err = once(ctx, addr, cfg, request("/missing", "example.com"))
	if err == nil || !strings.Contains(err.Error(), "status 404") {
		t.Fatalf("404 answer: err = %v, want status 404", err)
	}

	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	_, err = once(ctx, plain.Listener.Addr().String(), cfg, request("/", "x"))
	if err == nil || !strings.Contains(err.Error(), "handshake") {
		t.Fatalf("plain-text server: err = %v, want a handshake error", err)
	}
}
