package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// CheckInterval is how often GetCertificate looks at the files' mtimes.
const CheckInterval = 2 * time.Second

// Options are the TLS settings of `krait serve`.
type Options struct {
	CertFile, KeyFile string
	// CACerts is a PEM file of CAs that sign client certificates;
	// ClientAuth says whether clients must present one.
	CACerts    string
	ClientAuth tls.ClientAuthType

	// ACME, when Domains is not empty, replaces CertFile/KeyFile.
	ACME ACME
	Log  *slog.Logger
}

// ACME configures automatic certificates.
type ACME struct {
	Domains  []string
	Email    string
	CA       string // directory URL ("" = Let's Encrypt)
	CARoot   string // PEM file of extra roots trusted for the CA's HTTPS endpoint
	CacheDir string // "" = the user cache dir + /krait/acme
}

// Enabled reports whether o asks for TLS at all.
func (o Options) Enabled() bool { return o.CertFile != "" || len(o.ACME.Domains) > 0 }

// Config is a built TLS configuration and the handle to reload it.
type Config struct {
	TLS *tls.Config
	// Files is the file-based certificate source; nil with ACME.
	Files *File
}

// Reload reloads file-based certificates now (SIGHUP); a no-op with ACME,
// whose manager renews by itself.
func (c *Config) Reload() error {
	if c == nil || c.Files == nil {
		return nil
	}
	return c.Files.Reload()
}

// New builds the TLS configuration o describes.
func New(o Options) (*Config, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	out := &Config{TLS: cfg}
	switch {
	case len(o.ACME.Domains) > 0:
		m, err := newManager(o.ACME)
		if err != nil {
			return nil, err
		}
		mc := m.TLSConfig()
		log := o.Log
		cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := mc.GetCertificate(hello)
			if err != nil {
				// The client only sees "internal error": say why here.
				log.Warn("no ACME certificate for this handshake", "server_name", hello.ServerName, "err", err)
			}
			return c, err
		}
		cfg.NextProtos = mc.NextProtos // acme-tls/1 for the TLS-ALPN-01 challenge
	case o.CertFile != "":
		f, err := NewFile(o.CertFile, o.KeyFile, o.Log)
		if err != nil {
			return nil, err
		}
		out.Files = f
		cfg.GetCertificate = f.GetCertificate
	default:
		return nil, errors.New("tlsconf: no certificate source (certfile or ACME domains)")
	}
	if o.CACerts != "" {
		pool, err := loadPool(o.CACerts)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = o.ClientAuth
		if cfg.ClientAuth == tls.NoClientCert {
			// CAs given but certificates not asked for: ask, and verify
			// the ones presented (gunicorn asks for none; asking is harmless).
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
	} else if o.ClientAuth != tls.NoClientCert {
		return nil, errors.New("tlsconf: client certificates requested without CA certificates to verify them")
	}
	return out, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: reading CA certificates: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsconf: %s holds no PEM certificate", path)
	}
	return pool, nil
}

func newManager(a ACME) (*autocert.Manager, error) {
	dir := a.CacheDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("tlsconf: no cache directory for ACME certificates: %w", err)
		}
		dir = filepath.Join(base, "krait", "acme")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsconf: ACME cache: %w", err)
	}
	client := &acme.Client{DirectoryURL: a.CA}
	if client.DirectoryURL == "" {
		client.DirectoryURL = autocert.DefaultACMEDirectory
	}
	if a.CARoot != "" {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: reading the ACME CA root: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tlsconf: %s holds no PEM certificate", a.CARoot)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client.HTTPClient = &http.Client{Transport: tr, Timeout: time.Minute}
	}
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      autocert.DirCache(dir),
		HostPolicy: autocert.HostWhitelist(a.Domains...),
		Email:      a.Email,
		Client:     client,
	}, nil
}

// File serves a certificate from a cert and a key file and reloads it
// when they change.
type File struct {
	certFile, keyFile string
	log               *slog.Logger
	interval          time.Duration

	cert atomic.Pointer[tls.Certificate]

	mu        sync.Mutex // serializes checks and loads
	lastCheck time.Time
	stamp     [2]fileStamp // of the files last tried (loaded or failed)
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewFile loads certFile and keyFile (PEM; the cert file may hold the
// chain after the leaf).
func NewFile(certFile, keyFile string, log *slog.Logger) (*File, error) {
	if log == nil {
		log = slog.Default()
	}
	if keyFile == "" {
		keyFile = certFile // one PEM file with both, as gunicorn allows
	}
	f := &File{certFile: certFile, keyFile: keyFile, log: log, interval: CheckInterval}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.load(); err != nil {
		return nil, err
	}
	f.lastCheck = time.Now()
	return f, nil
}

// Certificate is the certificate handshakes get now.
func (f *File) Certificate() *tls.Certificate { return f.cert.Load() }

// GetCertificate is for tls.Config: the current certificate, reloaded
// first when the files changed since the last check (at most one check
// per interval; handshakes during a check do not wait for it).
func (f *File) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if f.mu.TryLock() {
		if time.Since(f.lastCheck) >= f.interval {
			f.lastCheck = time.Now()
			if st, err := f.stat(); err == nil && st != f.stamp {
				if err := f.load(); err != nil {
					f.log.Error("TLS certificate changed but cannot be loaded; serving the previous one", "err", err)
				}
			}
		}
		f.mu.Unlock()
	}
	return f.cert.Load(), nil
}

// Reload loads the files now. On error the previous certificate stays.
func (f *File) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCheck = time.Now()
	if err := f.load(); err != nil {
		f.log.Error("TLS certificate reload failed; serving the previous one", "err", err)
		return err
	}
	return nil
}

func (f *File) stat() ([2]fileStamp, error) {
	var st [2]fileStamp
	for i, p := range []string{f.certFile, f.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return st, fmt.Errorf("tlsconf: %w", err)
		}
		st[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	return st, nil
}

// load reads both files; f.mu is held.
func (f *File) load() error {
	st, err := f.stat()
	if err != nil {
		return err
	}
	// Remember what was tried even if it fails: a broken pair is not
	// retried until the files change again.
	f.stamp = st
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		return fmt.Errorf("tlsconf: loading %s and %s: %w", f.certFile, f.keyFile, err)
	}
	if f.cert.Load() != nil {
		f.log.Info("TLS certificate reloaded", "certfile", f.certFile, "serial", c.Leaf.SerialNumber.String(), "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	f.cert.Store(&c)
	return nil
}
