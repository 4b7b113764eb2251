// Command hs measures TLS handshakes per second: each of -c goroutines opens
// a TCP connection, does a full TLS handshake (no session cache, so never a
// resumption), sends one GET with "Connection: close", reads the response
// to the end and the server's close, and starts over, for -d. It prints one
// line:
//
//	handshakes=N errors=E seconds=S rate=R/s version=TLS1.3 cipher=... curve=X25519
//
// and exits 1 when any connection failed or answered other than 200 (the
// first error is printed to stderr).
//
//	hs -addr 127.0.0.1:8443 -path /static/hs.txt -c 16 -d 10s
//
// The server's certificate is not verified (verifying costs only the
// client); -curve fixes the key exchange so that every server is measured
// with the same one (Go's default would offer a post-quantum hybrid first).
// Reading until the server closes makes the server the side that closes
// first, so TIME_WAIT piles up there and not on the client's ephemeral ports.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hs:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8443", "server HOST:PORT")
	path := flag.String("path", "/", "request path")
	host := flag.String("host", "localhost", "SNI and Host header")
	conns := flag.Int("c", 16, "concurrent connections")
	dur := flag.Duration("d", 10*time.Second, "how long to run")
	version := flag.String("tls", "1.3", "TLS version: 1.2 or 1.3")
	curve := flag.String("curve", "x25519", "key exchange group: x25519 or p256")
	flag.Parse()

	cfg, err := clientConfig(*host, *version, *curve)
	if err != nil {
		return err
	}
	if *conns < 1 {
		return errors.New("-c must be at least 1")
	}
	req := request(*path, *host)

	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	var (
		ok, failed atomic.Int64
		firstErr   error
		state      tls.ConnectionState
		mu         sync.Mutex
		wg         sync.WaitGroup
	)
	fail := func(err error) {
		failed.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	start := time.Now()
	end := start.Add(*dur)
	// The run is over at end, whether or not ctx's timer has fired yet: a
	// dial whose deadline (taken from ctx) has passed fails at once, before
	// ctx.Err() may report it on a loaded core.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end) }
	for range *conns {
		wg.Go(func() {
			for !over() {
				st, err := once(ctx, *addr, cfg, req)
				switch {
				case err == nil:
					if ok.Add(1) == 1 {
						mu.Lock()
						state = st
						mu.Unlock()
					}
				case over():
					// Cut off by the end of the run: not a failure.
				default:
					fail(err)
				}
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	n := ok.Load()
	fmt.Printf("handshakes=%d errors=%d seconds=%.2f rate=%.1f/s version=%s cipher=%s curve=%s\n",
		n, failed.Load(), secs, float64(n)/secs,
		tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite), state.CurveID)
	if firstErr != nil {
		return fmt.Errorf("%d failed connections, first: %w", failed.Load(), firstErr)
	}
	if n == 0 {
		return errors.New("no handshake completed")
	}
	return nil
}

// clientConfig: no session cache (so every handshake is a full one), no
// certificate verification, one TLS version and one key exchange group.
func clientConfig(host, version, curve string) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         host,
		InsecureSkipVerify: true, // only the server's cost is measured
		NextProtos:         []string{"http/1.1"},
	}
	switch version {
	case "1.2":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	case "1.3":
		cfg.MinVersion, cfg.MaxVersion = tls.VersionTLS13, tls.VersionTLS13
	default:
		return nil, fmt.Errorf("-tls %q: want 1.2 or 1.3", version)
	}
	switch curve {
	case "x25519":
		cfg.CurvePreferences = []tls.CurveID{tls.X25519}
	case "p256":
		cfg.CurvePreferences = []tls.CurveID{tls.CurveP256}
	default:
		return nil, fmt.Errorf("-curve %q: want x25519 or p256", curve)
	}
	return cfg, nil
}

// request: one GET that asks the server to close after answering.
func request(path, host string) []byte {
	return []byte("GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n")
}

// once does one connection: handshake, one request, the whole response.
func once(ctx context.Context, addr string, cfg *tls.Config, req []byte) (tls.ConnectionState, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return tls.ConnectionState{}, fmt.Errorf("dial: %w", err)
	}
	defer raw.Close()
	// Bounded even if the server stalls; the run's end cuts it short too.
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := raw.SetDeadline(deadline); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("deadline: %w", err)
	}
	c := tls.Client(raw, cfg)
	if err := c.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("handshake: %w", err)
	}
	if _, err := c.Write(req); err != nil {
		return tls.ConnectionState{}, fmt.Errorf("write: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return tls.ConnectionState{}, fmt.Errorf("response: %w", err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return tls.ConnectionState{}, fmt.Errorf("body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return tls.ConnectionState{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	// Wait for the server's close (close_notify or FIN); what else it
	// sends (TLS 1.3 session tickets are consumed inside Read) is ignored.
	_, _ = io.Copy(io.Discard, br)
	st := c.ConnectionState()
	if st.DidResume {
		// Cannot happen without a session cache; a resumed handshake
		// would not be the full one this measures.
		return st, errors.New("handshake resumed a session")
	}
	return st, nil
}
