package integration

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// tlsPKI is a test CA and the files of certificates it signed.
type tlsPKI struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	pool   *x509.CertPool
	caFile string
}

func newPKI(t *testing.T) *tlsPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "krait test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &tlsPKI{dir: t.TempDir(), caCert: ca, caKey: key, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	return p
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	// Write and rename: a reader never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// issue signs a certificate with serial for localhost/127.0.0.1 (server)
// or a client; it returns the tls.Certificate and writes name.crt/.key.
func (p *tlsPKI) issue(t *testing.T, name string, serial int64, client bool) (tls.Certificate, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(p.dir, name+".crt"), filepath.Join(p.dir, name+".key")
	// The key first: a reload that sees the new cert also sees its key
	// (and a mismatched pair would only be retried on the next change).
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	writePEM(t, certFile, "CERTIFICATE", der)
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, certFile, keyFile
}

// tlsClient returns a client trusting pool: HTTP/2 when h2, else HTTP/1.1.
func tlsClient(t *testing.T, pool *x509.CertPool, h2 bool, certs ...tls.Certificate) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}, ForceAttemptHTTP2: h2, DisableCompression: true}
	var p http.Protocols
	if h2 {
		p.SetHTTP2(true)
	} else {
		p.SetHTTP1(true)
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"} // offered by ALPN, so the test sees the server pick it
	}
	tr.Protocols = &p
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 2 * ioTimeout}
}

const tlsWSGIApp = `import json

def application(environ, start_response):
    path = environ['PATH_INFO']
    if path == '/upload':
        inp, n = environ['wsgi.input'], 0
        while True:
            b = inp.read(65536)
            if not b:
                break
            n += len(b)
        body = json.dumps({'received': n}).encode()
    elif path == '/download':
        size = int(environ.get('QUERY_STRING') or 0)
        start_response('200 OK', [('Content-Type', 'application/octet-stream')])
        def gen():
            chunk, left = b'k' * 65536, size
            while left > 0:
                yield chunk[:min(left, 65536)]
                left -= 65536
        return gen()
    else:
        keys = ('SERVER_PROTOCOL', 'wsgi.url_scheme', 'HTTP_HOST', 'PATH_INFO', 'QUERY_STRING', 'HTTP_X_TEST')
        body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response('200 OK', [('Content-Type', 'application/json'), ('Content-Length', str(len(body)))])
    return [body]
`

const tlsASGIApp = `import json

async def app(scope, receive, send):
    if scope['type'] == 'lifespan':
        while True:
            m = await receive()
            if m['type'] == 'lifespan.startup':
                await send({'type': 'lifespan.startup.complete'})
            elif m['type'] == 'lifespan.shutdown':
                await send({'type': 'lifespan.shutdown.complete'})
                return
    if scope['type'] == 'websocket':
        await receive()  # websocket.connect
        await send({'type': 'websocket.accept'})
        while True:
            m = await receive()
            if m['type'] == 'websocket.disconnect':
                return
            await send({'type': 'websocket.send', 'text': 'echo:' + (m.get('text') or '') + ':' + scope['scheme']})
    if scope['path'] == '/echo':
        await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'application/octet-stream')]})
        while True:
            m = await receive()
            if m['type'] == 'http.disconnect':
                return
            if m.get('body'):
                await send({'type': 'http.response.body', 'body': m['body'], 'more_body': True})
            if not m.get('more_body'):
                break
        await send({'type': 'http.response.body', 'body': b''})
        return
    body = json.dumps({'http_version': scope['http_version'], 'scheme': scope['scheme']}).encode()
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'application/json')]})
    await send({'type': 'http.response.body', 'body': body})
`

// tlsApps writes the test apps into a directory for --chdir.
func tlsApps(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"tlswsgi.py": tlsWSGIApp, "tlsasgi.py": tlsASGIApp} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func getJSON(t *testing.T, c *http.Client, url string, into any) *http.Response {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading: %v", url, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("GET %s: %v in %q", url, err, b)
	}
	return resp
}

// TestTLSHTTP2WSGI: HTTPS with HTTP/2 (ALPN h2) and HTTP/1.1 to a WSGI
// app, which sees SERVER_PROTOCOL HTTP/2 and HTTP/1.1, scheme https;
// TLS 1.2 is the minimum.
func TestTLSHTTP2WSGI(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key)
	base := "https://" + k.Addr()
	for _, c := range []struct {
		h2        bool
		proto     string
		wantMajor int
	}{{true, "HTTP/2", 2}, {false, "HTTP/1.1", 1}} {
		var env map[string]any
		resp := getJSON(t, tlsClient(t, pki.pool, c.h2), base+"/p/a?x=1", &env)
		if resp.ProtoMajor != c.wantMajor || resp.TLS == nil {
			t.Fatalf("response over %s, TLS %v; want HTTP/%d over TLS", resp.Proto, resp.TLS != nil, c.wantMajor)
		}
		if want := map[bool]string{true: "h2", false: "http/1.1"}[c.h2]; resp.TLS.NegotiatedProtocol != want {
			t.Errorf("ALPN %q, want %q", resp.TLS.NegotiatedProtocol, want)
		}
		if env["SERVER_PROTOCOL"] != c.proto || env["wsgi.url_scheme"] != "https" || env["HTTP_HOST"] != k.Addr() ||
			env["PATH_INFO"] != "/p/a" || env["QUERY_STRING"] != "x=1" {
			t.Errorf("over %s the app saw %v", resp.Proto, env)
		}
	}
	// TLS 1.1 and older are refused.
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", k.Addr(), &tls.Config{RootCAs: pki.pool, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Fatal("a TLS 1.1 handshake succeeded")
	}
}

// TestTLSHTTP2ASGI: an ASGI app over HTTP/2 sees http_version "2" and
// scheme https, and streams both ways: each chunk of a request body sent
// over HTTP/2 comes back while the request is still open.
func TestTLSHTTP2ASGI(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k := startKrait(t, nil, "tlsasgi:app", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key)
	client := tlsClient(t, pki.pool, true)
	var scope map[string]any
	resp := getJSON(t, client, "https://"+k.Addr()+"/", &scope)
	if resp.ProtoMajor != 2 || scope["http_version"] != "2" || scope["scheme"] != "https" {
		t.Fatalf("over %s the app saw %v, want http_version 2, scheme https", resp.Proto, scope)
	}
	var h1scope map[string]any
	getJSON(t, tlsClient(t, pki.pool, false), "https://"+k.Addr()+"/", &h1scope)
	if h1scope["http_version"] != "1.1" {
		t.Fatalf("over HTTP/1.1 the app saw %v", h1scope)
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := http.NewRequest("POST", "https://"+k.Addr()+"/echo", pr)
	first := "chunk-0;"
	wrote := make(chan error, 1)
	go func() { _, err := pw.Write([]byte(first)); wrote <- err }() // the headers come with the first echo
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("echo over %s", resp.Proto)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		msg := fmt.Sprintf("chunk-%d;", i)
		if i > 0 {
			if _, err := pw.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(resp.Body, got); err != nil {
			t.Fatalf("echo of chunk %d: %v", i, err)
		}
		if string(got) != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after the request ended: %q, %v", rest, err)
	}
}

// TestTLSHTTP2StreamingWSGI: a 24 MiB upload and a 24 MiB download over
// one HTTP/2 connection, through the flow-control windows, intact.
func TestTLSHTTP2StreamingWSGI(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key)
	client := tlsClient(t, pki.pool, true)
	const size = 24 << 20
	// Upload of unknown length, streamed from a reader.
	body := io.LimitReader(zeroReader{}, size)
	req, _ := http.NewRequest("POST", "https://"+k.Addr()+"/upload", io.NopCloser(body))
	req.ContentLength = -1
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != fmt.Sprintf(`{"received": %d}`, size) {
		t.Fatalf("upload over %s: %d %s", resp.Proto, resp.StatusCode, b)
	}
	resp, err = client.Get("https://" + k.Addr() + "/download?" + strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(countK{}, resp.Body)
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v; want %d", n, err, size)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// countK fails on any byte that is not 'k'.
type countK struct{}

func (countK) Write(p []byte) (int, error) {
	if i := bytes.IndexFunc(p, func(r rune) bool { return r != 'k' }); i >= 0 {
		return i, fmt.Errorf("unexpected byte %q", p[i])
	}
	return len(p), nil
}

// TestTLSCertReload: replacing the certificate files is picked up by new
// connections (new serial) while an established connection goes on
// working with the certificate it was made with; SIGHUP is not needed.
func TestTLSCertReload(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 100, false)
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key)
	old := tlsClient(t, pki.pool, true)
	var env map[string]any
	resp := getJSON(t, old, "https://"+k.Addr()+"/", &env)
	if s := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); s != 100 {
		t.Fatalf("serial %d, want 100", s)
	}

	// Make sure the modification time differs even on a coarse clock.
	time.Sleep(10 * time.Millisecond)
	pki.issue(t, "server", 200, false)
	future := time.Now().Add(2 * time.Second)
	for _, f := range []string{cert, key} {
		if err := os.Chtimes(f, future, future); err != nil {
			t.Fatal(err)
		}
	}
	// New connections see the new certificate within a few check intervals.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", k.Addr(), &tls.Config{RootCAs: pki.pool})
		if err != nil {
			t.Fatalf("handshake during reload: %v", err)
		}
		s := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
		c.Close()
		if s == 200 {
			break
		}
		if s != 100 {
			t.Fatalf("serial %d, want 100 or 200", s)
		}
		if time.Now().After(deadline) {
			t.Fatal("new connections still get serial 100 30s after the files changed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, ok := k.WaitLog(regexp.MustCompile(`msg="TLS certificate reloaded".*serial=200`), ioTimeout); !ok {
		t.Errorf("no reload logged:\n%s", k.Log())
	}
	// The old connection is still open, still on serial 100.
	resp = getJSON(t, old, "https://"+k.Addr()+"/again", &env)
	if s := resp.TLS.PeerCertificates[0].SerialNumber.Int64(); s != 100 {
		t.Fatalf("the established connection now reports serial %d, want 100 (was it dropped?)", s)
	}
	if env["PATH_INFO"] != "/again" {
		t.Fatalf("app saw %v", env)
	}
	// A broken replacement keeps the current certificate.
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The files are checked on handshakes: keep shaking hands until the
	// failed reload is logged, each one still getting serial 200.
	brokenRE := regexp.MustCompile(`cannot be loaded; serving the previous one`)
	deadline = time.Now().Add(30 * time.Second)
	for !brokenRE.MatchString(k.Log()) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: ioTimeout}, "tcp", k.Addr(), &tls.Config{RootCAs: pki.pool})
		if err != nil {
			t.Fatalf("handshake after a broken reload: %v", err)
		}
		if s := c.ConnectionState().PeerCertificates[0].SerialNumber.Int64(); s != 200 {
			t.Fatalf("after a broken reload, serial %d, want 200", s)
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a broken key was not reported within 30s:\n%s", k.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var redirectRE = regexp.MustCompile(`msg="redirecting to https" addr=(\S+)`)

// TestTLSRedirectAndHSTS: --redirect-http answers 301 (GET) and 308
// (POST) to the same path on https at the TLS port; --hsts puts
// Strict-Transport-Security on HTTPS responses.
func TestTLSRedirectAndHSTS(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key,
		"--redirect-http", "127.0.0.1:0", "--hsts", "600")
	m := k.MustWaitLog(redirectRE)
	_, port, _ := net.SplitHostPort(k.Addr())
	noFollow := &http.Client{Timeout: ioTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method string
		code   int
	}{{"GET", 301}, {"POST", 308}} {
		req, _ := http.NewRequest(c.method, "http://"+m[1]+"/some/path?q=1", strings.NewReader("x"))
		resp, err := noFollow.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := "https://127.0.0.1:" + port + "/some/path?q=1"
		if resp.StatusCode != c.code || resp.Header.Get("Location") != want {
			t.Errorf("%s: %d Location %q, want %d %q", c.method, resp.StatusCode, resp.Header.Get("Location"), c.code, want)
		}
	}
	// Following the redirect lands on the app over HTTPS, with HSTS.
	follow := tlsClient(t, pki.pool, true)
	resp, err := follow.Get("http://" + m[1] + "/landed")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.TLS == nil || !strings.Contains(string(b), `"PATH_INFO": "/landed"`) {
		t.Fatalf("after the redirect: TLS %v, body %s", resp.TLS != nil, b)
	}
	if v := resp.Header.Get("Strict-Transport-Security"); v != "max-age=600" {
		t.Errorf("Strict-Transport-Security %q, want max-age=600", v)
	}
}

// TestTLSClientCertRequired: with --ca-certs and --cert-reqs required, a
// client without a certificate, or with one from another CA, cannot
// connect; one with a certificate from the CA can.
func TestTLSClientCertRequired(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	good, _, _ := pki.issue(t, "client", 3, true)
	other, _, _ := newPKI(t).issue(t, "stranger", 4, true)
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key,
		"--ca-certs", pki.caFile, "--cert-reqs", "required")
	url := "https://" + k.Addr() + "/"
	var env map[string]any
	getJSON(t, tlsClient(t, pki.pool, true, good), url, &env)
	if env["wsgi.url_scheme"] != "https" {
		t.Fatalf("app saw %v", env)
	}
	for name, c := range map[string]*http.Client{
		"no certificate":       tlsClient(t, pki.pool, true),
		"another CA's":         tlsClient(t, pki.pool, true, other),
		"no certificate h1":    tlsClient(t, pki.pool, false),
		"another CA's over h1": tlsClient(t, pki.pool, false, other),
	} {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			t.Errorf("%s: got %d, want the handshake refused", name, resp.StatusCode)
		}
	}
}

// TestTLSH2C: --http2-cleartext serves HTTP/2 with prior knowledge and
// HTTP/1.1 on the same plain listener.
func TestTLSH2C(t *testing.T) {
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--http2-cleartext")
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	var env map[string]any
	resp := getJSON(t, &http.Client{Transport: tr, Timeout: 2 * ioTimeout}, k.URL("/c"), &env)
	if resp.ProtoMajor != 2 || env["SERVER_PROTOCOL"] != "HTTP/2" || env["wsgi.url_scheme"] != "http" {
		t.Fatalf("h2c: over %s the app saw %v", resp.Proto, env)
	}
	resp = getJSON(t, k.Client(), k.URL("/c"), &env)
	if resp.ProtoMajor != 1 || env["SERVER_PROTOCOL"] != "HTTP/1.1" {
		t.Fatalf("HTTP/1.1 beside h2c: over %s the app saw %v", resp.Proto, env)
	}
}

// TestTLSBadCertificate: a certificate that cannot be loaded stops krait
// before the workers boot, naming the file.
func TestTLSBadCertificate(t *testing.T) {
	dir := t.TempDir()
	cert := filepath.Join(dir, "c.pem")
	if err := os.WriteFile(cert, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runKrait(t, readyTimeout, "serve", "tlswsgi:application", "--chdir", tlsApps(t),
		"-b", "127.0.0.1:0", "--certfile", cert, "--keyfile", cert, "--python", testPython(t))
	if code == 0 || !strings.Contains(stderr, cert) || strings.Contains(stderr, "msg=ready") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestTLSACMEPebble gets a certificate from a local ACME CA (pebble) end
// to end: pebble validates the TLS-ALPN-01 challenge by connecting to
// krait's TLS listener, and the certificate krait then serves chains to
// pebble's root.
func TestTLSACMEPebble(t *testing.T) {
	pebble := requireTool(t, "pebble", "apt-get install pebble")
	pki := newPKI(t)
	_, pcert, pkey := pki.issue(t, "pebble", 5, false)
	kraitPort, acmePort, mgmtPort := freePort(t), freePort(t), freePort(t)
	cfgFile := filepath.Join(t.TempDir(), "pebble.json")
	cfg := fmt.Sprintf(`{"pebble": {"listenAddress": "127.0.0.1:%d", "managementListenAddress": "127.0.0.1:%d",
		"certificate": %q, "privateKey": %q, "httpPort": %d, "tlsPort": %d, "ocspResponderURL": "",
		"externalAccountBindingRequired": false}}`, acmePort, mgmtPort, pcert, pkey, freePort(t), kraitPort)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	plog := newLogBuffer()
	// autocert wants a name with a dot: krait.test, which pebble resolves
	// through its mock DNS server to 127.0.0.1.
	challtest := requireTool(t, "pebble-challtestsrv", "apt-get install pebble")
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	dns := exec.Command(challtest, "-dns01", dnsAddr, "-http01", "", "-https01", "", "-tlsalpn01", "",
		"-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
	dns.Stdout, dns.Stderr = plog, plog
	dns.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = dns.Process.Kill(); _ = dns.Wait() }()
	cmd := exec.Command(pebble, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	cmd.Stdout, cmd.Stderr = plog, plog
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pclient := &http.Client{Timeout: ioTimeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	dirURL := fmt.Sprintf("https://127.0.0.1:%d/dir", acmePort)
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := pclient.Get(dirURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not answering at %s: %v\n%s", dirURL, err, plog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}

	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "-b", fmt.Sprintf("127.0.0.1:%d", kraitPort),
		"--acme-domain", "krait.test", "--acme-email", "ops@example.com", "--acme-ca", dirURL,
		"--acme-ca-root", pki.caFile, "--acme-cache", t.TempDir())

	// pebble's root, from its management API.
	resp, err := pclient.Get(fmt.Sprintf("https://127.0.0.1:%d/roots/0", mgmtPort))
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble's /roots/0 is not PEM: %q", rootPEM)
	}
	// The first handshake for localhost obtains the certificate.
	ctx, cancel := context.WithTimeout(context.Background(), 2*readyTimeout)
	defer cancel()
	c := tlsClient(t, roots, true)
	kraitAddr := fmt.Sprintf("127.0.0.1:%d", kraitPort)
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, kraitAddr) // krait.test is krait
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("https://krait.test:%d/acme", kraitPort), nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatalf("HTTPS with an ACME certificate: %v\nkrait:\n%s\npebble:\n%s", err, k.Log(), plog.String())
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || !strings.Contains(string(b), `"PATH_INFO": "/acme"`) {
		t.Fatalf("over %s: %s", resp.Proto, b)
	}
	leaf := resp.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname("krait.test"); err != nil {
		t.Errorf("served certificate: %v", err)
	}
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Errorf("served certificate issued by %q, want pebble's intermediate", leaf.Issuer.CommonName)
	}
}

// TestTLSWebSocket: a WebSocket over TLS (wss, HTTP/1.1 upgrade on the
// TLS listener) reaches the ASGI app with scheme wss and echoes.
func TestTLSWebSocket(t *testing.T) {
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k := startKrait(t, nil, "tlsasgi:app", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key)
	ctx, cancel := context.WithTimeout(context.Background(), 2*ioTimeout)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "wss://"+k.Addr()+"/ws", &websocket.DialOptions{HTTPClient: tlsClient(t, pki.pool, false)})
	if err != nil {
		t.Fatalf("wss dial: %v (response %v)", err, resp)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg) != "echo:hi:wss" {
		t.Fatalf("got %q, want echo:hi:wss", msg)
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// h2specBin is the h2spec conformance tester: $KRAIT_H2SPEC, else h2spec
// on PATH (.ci/run installs it with go install).
func h2specBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KRAIT_H2SPEC"); p != "" {
		return p
	}
	return requireTool(t, "h2spec", "go install github.com/summerwind/h2spec/cmd/h2spec@v2.2.1+incompatible, or set KRAIT_H2SPEC")
}

// requireTool finds an external test tool on PATH. Missing, it fails the
// test when KRAIT_REQUIRE_TOOLS is set (scripts/test.sh sets it after
// installing the tools, so CI never skips silently), else skips saying how
// to install it.
func requireTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("KRAIT_REQUIRE_TOOLS") != "" {
		t.Fatalf("%s is required (KRAIT_REQUIRE_TOOLS is set) but not on PATH: %s", name, install)
	}
	t.Skipf("%s is not installed (%s)", name, install)
	return ""
}

var h2specSummaryRE = regexp.MustCompile(`(?m)^(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed$`)

// runH2spec runs every h2spec test case against addr and returns the
// counts and the descriptions of the failed cases.
func runH2spec(t *testing.T, bin, addr string, tlsOn bool) (total, passed, failed int, failures []string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-h", host, "-p", port, "-o", "10"}
	if tlsOn {
		args = append(args, "-t", "-k")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput() // exits 1 when a case fails
	m := h2specSummaryRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("h2spec printed no summary:\n%s", out)
	}
	total, _ = strconv.Atoi(m[1])
	passed, _ = strconv.Atoi(m[2])
	failed, _ = strconv.Atoi(m[4])
	// The failures are listed again after "Failures:", one "× N: desc" each.
	if _, list, ok := strings.Cut(string(out), "Failures:"); ok {
		for _, line := range strings.Split(list, "\n") {
			if _, desc, ok := strings.Cut(line, "× "); ok {
				failures = append(failures, strings.TrimSpace(desc))
			}
		}
	}
	return total, passed, failed, failures
}

// TestTLSH2spec runs the h2spec HTTP/2 conformance suite against krait:
// over TLS every case passes; over h2c, where HTTP/1.1 shares the port,
// the one case that sends a bad preface gets an HTTP/1.1 400 instead of
// a closed connection.
func TestTLSH2spec(t *testing.T) {
	bin := h2specBin(t)
	pki := newPKI(t)
	_, cert, key := pki.issue(t, "server", 2, false)
	k := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--certfile", cert, "--keyfile", key)
	total, passed, failed, failures := runH2spec(t, bin, k.Addr(), true)
	if total != 145 || passed != 145 || failed != 0 {
		t.Errorf("h2spec over TLS: %d tests, %d passed, %d failed: %q", total, passed, failed, failures)
	}
	kc := startKrait(t, nil, "tlswsgi:application", "--chdir", tlsApps(t), "--http2-cleartext")
	total, passed, failed, failures = runH2spec(t, bin, kc.Addr(), false)
	if total != 145 || passed != 144 || failed != 1 || len(failures) != 1 || !strings.Contains(failures[0], "Sends invalid connection preface") {
		t.Errorf("h2spec over h2c: %d tests, %d passed, %d failed: %q; want only the invalid-preface case to fail", total, passed, failed, failures)
	}
}
