package h1

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

func TestTrailers(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, nil, []exchange.Header{{Name: []byte("Trailer"), Value: []byte("X-Sum")}}, -1)
		_, _ = w.Write([]byte("body"))
		tw := w.(exchange.TrailerWriter)
		if err := tw.WriteTrailers([]exchange.Header{{Name: []byte("X-Sum"), Value: []byte("42")}}); err != nil {
			t.Errorf("WriteTrailers: %v", err)
		}
		if _, err := w.Write([]byte("more")); err == nil {
			t.Error("Write after WriteTrailers succeeded")
		}
	})
	_, addr := startServer(t, h, Config{})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	for i := 0; i < 2; i++ { // keep-alive still works after trailers
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, body := readResponse(t, br, "GET")
		if body != "body" || resp.Trailer.Get("X-Sum") != "42" {
			t.Fatalf("body %q trailers %v", body, resp.Trailer)
		}
	}

	// HTTP/1.0 and known lengths: trailers are dropped.
	h2 := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, nil, nil, 4)
		_, _ = w.Write([]byte("body"))
		if err := w.(exchange.TrailerWriter).WriteTrailers([]exchange.Header{{Name: []byte("X-Sum"), Value: []byte("1")}}); err != nil {
			t.Errorf("WriteTrailers: %v", err)
		}
	})
	_, addr2 := startServer(t, h2, Config{})
	c2 := dial(t, addr2)
	br2 := bufio.NewReader(c2)
	_, _ = io.WriteString(c2, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := readResponse(t, br2, "GET")
	if body != "body" || resp.ContentLength != 4 || len(resp.Trailer) != 0 {
		t.Fatalf("body %q length %d trailers %v", body, resp.ContentLength, resp.Trailer)
	}
}

func TestHijack(t *testing.T) {
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if string(r.Path) != "/up" {
			hello(w, r)
			return
		}
		r.Watch() // a running watcher must hand over what it read
		nc, brw, err := w.(exchange.Hijacker).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		if _, err := w.Write([]byte("x")); err == nil {
			t.Error("Write after Hijack succeeded")
		}
		_, _ = io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString("echo " + line)
			_ = brw.Flush()
			if line == "bye\n" {
				return
			}
		}
	})
	_, addr := startServer(t, h, Config{})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	// A normal request first, then the upgrade with bytes right behind it.
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readResponse(t, br, "GET"); body != string(helloBody) {
		t.Fatalf("body %q", body)
	}
	_, _ = io.WriteString(c, "GET /up HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nearly\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade response %v %v", resp, err)
	}
	line, err := br.ReadString('\n')
	if err != nil || line != "echo early\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	_, _ = io.WriteString(c, "bye\n")
	if line, err = br.ReadString('\n'); line != "echo bye\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	// The engine closes the connection once the handler returns, and
	// writes nothing of its own.
	rest, _ := io.ReadAll(br)
	if strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("engine wrote %q after the hijack", rest)
	}
}
