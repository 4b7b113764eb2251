package config

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLS is the TLS, HTTP/2 and ACME part of Serve.
type TLS struct {
	// CertFile and KeyFile are the PEM certificate (chain) and key; with
	// them every --bind listener speaks TLS. KeyFile may be empty when
	// CertFile holds both.
	CertFile, KeyFile string
	// CACerts is a PEM file of CAs for client certificates; CertReqs is
	// "none", "optional" or "required" (gunicorn's 0, 1, 2 are accepted).
	CACerts  string
	CertReqs string
	// RedirectHTTP is a plain listener that redirects to https; nil = none.
	RedirectHTTP *Bind
	// HSTS, when > 0, is the Strict-Transport-Security max-age.
	HSTS time.Duration
	// HTTP2 offers h2 by ALPN on TLS listeners.
	HTTP2 bool
	// HTTP2Cleartext serves h2c (prior knowledge) on plain listeners.
	HTTP2Cleartext bool
	// HTTP2MaxConcurrentStreams caps the streams of one HTTP/2 connection.
	HTTP2MaxConcurrentStreams int
	// ACMEDomains, when set, get certificates from an ACME CA.
	ACMEDomains []string
	ACMEEmail   string
	ACMECA      string // directory URL; "" = Let's Encrypt
	ACMECARoot  string // PEM roots to trust for the ACME CA's HTTPS endpoint
	ACMECache   string // "" = user cache dir/krait/acme
}

// Enabled reports whether the --bind listeners speak TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || len(t.ACMEDomains) > 0 }

func defaultTLS() TLS {
	return TLS{CertReqs: "none", HTTP2: true, HTTP2MaxConcurrentStreams: 100}
}

// tlsFlags registers the TLS flags; the returned function validates them
// after parsing (name spells a flag as the user wrote it).
func tlsFlags(fs *flag.FlagSet, t *TLS) func(name func(string) string) error {
	var acmeDomains stringList
	var redirect string
	fs.StringVar(&t.CertFile, "certfile", "", "TLS certificate (PEM, chain after the leaf); every --bind listener then speaks HTTPS. Reloaded when the file changes and on SIGHUP")
	fs.StringVar(&t.KeyFile, "keyfile", "", "TLS private key (PEM) of --certfile (default: in --certfile)")
	fs.StringVar(&t.CACerts, "ca-certs", "", "PEM file of CAs that sign client certificates")
	fs.StringVar(&t.CertReqs, "cert-reqs", t.CertReqs, "client certificates: none, optional or required (0, 1, 2 as gunicorn)")
	fs.StringVar(&redirect, "redirect-http", "", "plain HTTP address (HOST:PORT) that redirects every request to https")
	fs.Var(seconds{&t.HSTS}, "hsts", "Strict-Transport-Security max-age in seconds on HTTPS responses (0 = none)")
	fs.BoolVar(&t.HTTP2, "http2", t.HTTP2, "offer HTTP/2 on TLS listeners (--http2=false for HTTP/1.1 only)")
	fs.BoolVar(&t.HTTP2Cleartext, "http2-cleartext", t.HTTP2Cleartext, "serve cleartext HTTP/2 with prior knowledge (h2c) beside HTTP/1.1 on plain listeners")
	fs.IntVar(&t.HTTP2MaxConcurrentStreams, "http2-max-concurrent-streams", t.HTTP2MaxConcurrentStreams, "concurrent streams per HTTP/2 connection")
	fs.Var(&acmeDomains, "acme-domain", "domain to get a certificate for from an ACME CA (TLS-ALPN-01 on the TLS listener); repeatable")
	fs.StringVar(&t.ACMEEmail, "acme-email", "", "contact e-mail for the ACME account")
	fs.StringVar(&t.ACMECA, "acme-ca", "", "ACME directory URL (default Let's Encrypt)")
	fs.StringVar(&t.ACMECARoot, "acme-ca-root", "", "PEM file of extra roots trusted for the ACME CA's HTTPS endpoint (private CAs)")
	fs.StringVar(&t.ACMECache, "acme-cache", "", "directory for ACME account and certificates (default: the user cache dir/krait/acme)")

	return func(name func(string) string) error {
		if len(acmeDomains) > 0 {
			t.ACMEDomains = acmeDomains
		}
		switch t.CertReqs {
		case "none", "0":
			t.CertReqs = "none"
		case "optional", "1":
			t.CertReqs = "optional"
		case "required", "2":
			t.CertReqs = "required"
		default:
			return &UsageError{Flag: name("cert-reqs"), Reason: fmt.Sprintf("%q is not one of none, optional, required", t.CertReqs)}
		}
		for _, f := range []struct{ flag, path string }{{"certfile", t.CertFile}, {"keyfile", t.KeyFile}, {"ca-certs", t.CACerts}, {"acme-ca-root", t.ACMECARoot}} {
			if f.path == "" {
				continue
			}
			if fi, err := os.Stat(f.path); err != nil || fi.IsDir() {
				return &UsageError{Flag: name(f.flag), Reason: fmt.Sprintf("%s is not a readable file", f.path)}
			}
		}
		if t.KeyFile != "" && t.CertFile == "" {
			return &UsageError{Flag: name("keyfile"), Reason: "needs --certfile"}
		}
		if t.CertFile != "" && len(t.ACMEDomains) > 0 {
			return &UsageError{Flag: name("acme-domain"), Reason: "cannot be combined with --certfile: choose one certificate source"}
		}
		for _, d := range t.ACMEDomains {
			if d == "" || strings.ContainsAny(d, "/: *") {
				return &UsageError{Flag: name("acme-domain"), Reason: fmt.Sprintf("%q is not a domain name", d)}
			}
		}
		if len(t.ACMEDomains) == 0 {
			for _, f := range []struct{ flag, v string }{{"acme-email", t.ACMEEmail}, {"acme-ca", t.ACMECA}, {"acme-ca-root", t.ACMECARoot}, {"acme-cache", t.ACMECache}} {
				if f.v != "" {
					return &UsageError{Flag: name(f.flag), Reason: "needs --acme-domain"}
				}
			}
		}
		if t.ACMECA != "" {
			if u, err := url.Parse(t.ACMECA); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return &UsageError{Flag: name("acme-ca"), Reason: fmt.Sprintf("%q is not an http(s) URL", t.ACMECA)}
			}
		}
		if !t.Enabled() {
			for _, f := range []struct {
				flag string
				set  bool
			}{{"ca-certs", t.CACerts != ""}, {"cert-reqs", t.CertReqs != "none"}, {"redirect-http", redirect != ""}, {"hsts", t.HSTS > 0}} {
				if f.set {
					return &UsageError{Flag: name(f.flag), Reason: "needs TLS: --certfile or --acme-domain"}
				}
			}
		}
		if t.CertReqs != "none" && t.CACerts == "" {
			return &UsageError{Flag: name("cert-reqs"), Reason: "needs --ca-certs to verify client certificates"}
		}
		if t.HTTP2Cleartext && t.Enabled() {
			return &UsageError{Flag: name("http2-cleartext"), Reason: "is for plain listeners: with TLS, HTTP/2 is offered by ALPN"}
		}
		if t.HTTP2MaxConcurrentStreams < 1 || t.HTTP2MaxConcurrentStreams > 10000 {
			return &UsageError{Flag: name("http2-max-concurrent-streams"), Reason: fmt.Sprintf("%d is out of range: must be between 1 and 10000", t.HTTP2MaxConcurrentStreams)}
		}
		if redirect != "" {
			b, err := ParseBind(redirect)
			if err != nil {
				return &UsageError{Flag: name("redirect-http"), Reason: err.Error()}
			}
			if b.Network == "unix" {
				return &UsageError{Flag: name("redirect-http"), Reason: "must be a TCP address"}
			}
			t.RedirectHTTP = &b
		}
		return nil
	}
}
