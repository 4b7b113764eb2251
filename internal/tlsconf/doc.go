// Package tlsconf builds the *tls.Config of krait's TLS listeners:
// certificates from files (--certfile/--keyfile) that are reloaded without
// dropping connections, client certificates (--ca-certs, --cert-reqs) and
// automatic certificates from an ACME CA (--acme-domain, through
// golang.org/x/crypto/acme/autocert).
//
// Defaults: TLS 1.2 and 1.3 only, Go's cipher suites (ECDHE with AEAD
// ciphers for TLS 1.2) and curves (X25519MLKEM768, X25519, P-256, ...).
//
// Reload: a File hands out the certificate through GetCertificate, so a
// new one applies to new handshakes while established connections keep
// the one they were made with. GetCertificate checks the files'
// modification time and size at most every CheckInterval (2 s) and reloads
// when they changed; Reload does it at once (on SIGHUP). A reload that
// fails (a half-written file, a key that does not match) is logged and
// the old certificate keeps being served; the next check tries again
// once the files change again. The current certificate sits behind an
// atomic pointer: handshakes never wait for a reload, and the stat and
// load run under a mutex, one at a time.
//
// ACME: an autocert.Manager with a DirCache (default
// $XDG_CACHE_HOME/krait/acme), a host policy that allows exactly the
// --acme-domain names, the directory URL of --acme-ca (default Let's
// Encrypt) and, for private CAs and tests (pebble), extra roots to trust
// for the CA's own HTTPS endpoint (--acme-ca-root). Certificates are
// obtained on the first handshake for a name, through the TLS-ALPN-01
// challenge answered on the TLS listener itself ("acme-tls/1" is offered
// by ALPN), and renewed by the manager before they expire.
package tlsconf
