package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseServeTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for _, p := range []string{cert, key} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := parse([]string{"app", "--certfile", cert, "--keyfile", key, "--ca-certs", cert, "--cert-reqs", "2",
		"--redirect-http", "127.0.0.1:8080", "--hsts", "31536000", "--http2-max-concurrent-streams", "50"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tl := s.TLS
	if !tl.Enabled() || tl.CertFile != cert || tl.KeyFile != key || tl.CACerts != cert || tl.CertReqs != "required" ||
		tl.RedirectHTTP == nil || tl.RedirectHTTP.String() != "127.0.0.1:8080" || tl.HSTS != 365*24*time.Hour ||
		!tl.HTTP2 || tl.HTTP2MaxConcurrentStreams != 50 {
		t.Errorf("TLS settings %+v", tl)
	}
	s, err = parse([]string{"app", "--acme-domain", "a.test", "--acme-domain=b.test", "--acme-email", "x@y.test",
		"--acme-ca", "https://127.0.0.1:14000/dir", "--acme-ca-root", cert, "--acme-cache", dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.TLS.ACMEDomains, ",") != "a.test,b.test" || s.TLS.ACMECA != "https://127.0.0.1:14000/dir" || !s.TLS.Enabled() {
		t.Errorf("ACME settings %+v", s.TLS)
	}
	s, err = parse([]string{"app", "--http2-cleartext"}, nil)
	if err != nil || !s.TLS.HTTP2Cleartext || s.TLS.Enabled() {
		t.Errorf("--http2-cleartext: %+v %v", s, err)
	}
}

func TestParseServeTLSErrors(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(cert, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--certfile", filepath.Join(dir, "missing")}, "--certfile: "},
		{[]string{"--keyfile", cert}, "--keyfile: needs --certfile"},
		{[]string{"--certfile", cert, "--acme-domain", "a.test"}, "--acme-domain: cannot be combined"},
		{[]string{"--acme-domain", "a/b"}, "--acme-domain: "},
		{[]string{"--acme-email", "x@y"}, "--acme-email: needs --acme-domain"},
		{[]string{"--acme-domain", "a.test", "--acme-ca", "ftp://x"}, "--acme-ca: "},
		{[]string{"--hsts", "10"}, "--hsts: needs TLS"},
		{[]string{"-redirect-http", "127.0.0.1:1"}, "-redirect-http: needs TLS"},
		{[]string{"--ca-certs", cert}, "--ca-certs: needs TLS"},
		{[]string{"--certfile", cert, "--cert-reqs", "required"}, "--cert-reqs: needs --ca-certs"},
		{[]string{"--certfile", cert, "--cert-reqs", "maybe"}, "--cert-reqs: "},
		{[]string{"--certfile", cert, "--http2-cleartext"}, "--http2-cleartext: "},
		{[]string{"--http2-max-concurrent-streams", "0"}, "--http2-max-concurrent-streams: 0 is out of range"},
		{[]string{"--certfile", cert, "--redirect-http", "unix:/tmp/x.sock"}, "--redirect-http: must be a TCP address"},
	} {
		_, err := parse(append([]string{"app"}, c.args...), nil)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want prefix %q", c.args, err, c.want)
		}
	}
}
