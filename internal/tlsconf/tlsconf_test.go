package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed cert with serial into dir/cert.pem and
// dir/key.pem and returns the DER.
func writePair(t *testing.T, dir string, serial int64, mod time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	write := func(name string, b []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
	return der
}

func serial(t *testing.T, f *File) int64 {
	t.Helper()
	c, err := f.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || c == nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	return c.Leaf.SerialNumber.Int64()
}

// TestFileReloadsOnChange: a changed pair is picked up at the next check,
// not before the interval; a broken pair keeps the old certificate.
func TestFileReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Minute)
	writePair(t, dir, 1, t0)
	f, err := NewFile(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), nil)
	if err != nil {
		t.Fatal(err)
	}
	f.interval = time.Hour
	writePair(t, dir, 2, t0.Add(10*time.Second))
	if s := serial(t, f); s != 1 {
		t.Fatalf("serial %d before the check interval, want 1", s)
	}
	f.interval = 0
	if s := serial(t, f); s != 2 {
		t.Fatalf("serial %d after the files changed, want 2", s)
	}
	// A key that does not match: keep serving 2.
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := serial(t, f); s != 2 {
		t.Fatalf("serial %d after a broken reload, want the old 2", s)
	}
	if err := f.Reload(); err == nil {
		t.Fatal("Reload of a broken pair succeeded")
	}
	if s := serial(t, f); s != 2 {
		t.Fatalf("serial %d after a failed Reload, want 2", s)
	}
	// Explicit Reload picks up a good pair even with the same mtime check pending.
	f.interval = time.Hour
	writePair(t, dir, 3, t0.Add(20*time.Second))
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if s := serial(t, f); s != 3 {
		t.Fatalf("serial %d after Reload, want 3", s)
	}
}

// TestNewOptions: TLS 1.2 minimum, client certificates verified against
// --ca-certs, and the invalid combinations refused.
func TestNewOptions(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, 1, time.Now())
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c, err := New(Options{CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.MinVersion != tls.VersionTLS12 || c.TLS.ClientAuth != tls.NoClientCert || c.Files == nil {
		t.Errorf("config %+v", c.TLS)
	}
	c, err = New(Options{CertFile: cert, KeyFile: key, CACerts: cert, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.ClientAuth != tls.RequireAndVerifyClientCert || c.TLS.ClientCAs == nil {
		t.Errorf("client auth %v", c.TLS.ClientAuth)
	}
	if _, err := New(Options{CertFile: cert, KeyFile: key, ClientAuth: tls.RequireAndVerifyClientCert}); err == nil {
		t.Error("client certificates without CAs accepted")
	}
	if _, err := New(Options{CertFile: cert, KeyFile: filepath.Join(dir, "missing.pem")}); err == nil {
		t.Error("a missing key file accepted")
	}
	if _, err := New(Options{CertFile: cert, KeyFile: key, CACerts: key}); err == nil {
		t.Error("a CA file without certificates accepted")
	}
	a, err := New(Options{ACME: ACME{Domains: []string{"example.test"}, CacheDir: t.TempDir(), CA: "https://127.0.0.1:1/dir"}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Files != nil || a.TLS.GetCertificate == nil || len(a.TLS.NextProtos) == 0 || a.TLS.NextProtos[len(a.TLS.NextProtos)-1] != "acme-tls/1" {
		t.Errorf("ACME config: files %v protos %v", a.Files, a.TLS.NextProtos)
	}
	// A name outside the policy gets no certificate (and no CA round trip).
	if _, err := a.TLS.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.test"}); err == nil {
		t.Error("ACME issued for a name that is not an --acme-domain")
	}
}
