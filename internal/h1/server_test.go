package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/exchange"
)

func hdr(name, value string) exchange.Header {
	return exchange.Header{Name: []byte(name), Value: []byte(value)}
}

func TestResponseFraming(t *testing.T) {
	tests := []struct {
		name    string
		request string
		handler func(w exchange.ResponseWriter, r *exchange.Request)
		check   func(t *testing.T, resp *http.Response, body string)
		closed  bool // the server must close after this response
	}{
		{
			name:    "content-length",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: hello,
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.StatusCode != 200 || body != "Hello, World!" || resp.ContentLength != 13 {
					t.Fatalf("got %d %q len %d", resp.StatusCode, body, resp.ContentLength)
				}
				if resp.Header.Get("Server") != "krait" || resp.Header.Get("Date") == "" {
					t.Fatalf("missing Server/Date: %v", resp.Header)
				}
				if _, err := http.ParseTime(resp.Header.Get("Date")); err != nil {
					t.Fatalf("bad Date: %v", err)
				}
			},
		},
		{
			name:    "chunked when length unknown",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(200, nil, nil, -1)
				_, _ = w.Write([]byte("abc"))
				_ = w.Flush()
				_, _ = w.Write([]byte(strings.Repeat("d", 10000)))
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
					t.Fatalf("TransferEncoding %v", resp.TransferEncoding)
				}
				if body != "abc"+strings.Repeat("d", 10000) {
					t.Fatalf("body %d bytes", len(body))
				}
			},
		},
		{
			name:    "http/1.0 unknown length closes",
			request: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(200, nil, nil, -1)
				_, _ = w.Write([]byte("abc"))
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if !resp.Close || body != "abc" || resp.TransferEncoding != nil {
					t.Fatalf("close=%v body=%q te=%v", resp.Close, body, resp.TransferEncoding)
				}
			},
			closed: true,
		},
		{
			name:    "http/1.0 keep-alive with length",
			request: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
			handler: hello,
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.Close || resp.Header.Get("Connection") != "keep-alive" {
					t.Fatalf("close=%v connection=%q", resp.Close, resp.Header.Get("Connection"))
				}
			},
		},
		{
			name:    "http/1.0 default closes",
			request: "GET / HTTP/1.0\r\n\r\n",
			handler: hello,
			check: func(t *testing.T, resp *http.Response, body string) {
				if !resp.Close {
					t.Fatal("no Connection: close")
				}
			},
			closed: true,
		},
		{
			name:    "client connection close",
			request: "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			handler: hello,
			check: func(t *testing.T, resp *http.Response, body string) {
				if !resp.Close {
					t.Fatal("no Connection: close")
				}
			},
			closed: true,
		},
		{
			name:    "handler connection close",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(200, nil, []exchange.Header{hdr("Connection", "close")}, 0)
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if !resp.Close {
					t.Fatal("no Connection: close")
				}
			},
			closed: true,
		},
		{
			name:    "head has length, no body",
			request: "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: hello,
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.ContentLength != 13 || body != "" {
					t.Fatalf("len %d body %q", resp.ContentLength, body)
				}
			},
		},
		{
			name:    "204 has no framing",
			request: "DELETE / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(204, nil, nil, -1)
				if n, err := w.Write([]byte("ignored")); n != 7 || err != nil {
					panic(fmt.Sprint("Write on 204: ", n, err))
				}
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.StatusCode != 204 || resp.Header.Get("Content-Length") != "" || resp.TransferEncoding != nil {
					t.Fatalf("%d %v %v", resp.StatusCode, resp.Header, resp.TransferEncoding)
				}
			},
		},
		{
			name:    "handler's own Date and Server and reason",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(299, []byte("Fine"), []exchange.Header{
					hdr("Date", "Mon, 02 Jan 2006 15:04:05 GMT"), hdr("server", "app"), hdr("Content-Length", "2"),
				}, 2)
				_, _ = w.Write([]byte("ok"))
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.Status != "299 Fine" || len(resp.Header["Date"]) != 1 || resp.Header.Get("Server") != "app" ||
					len(resp.Header["Content-Length"]) != 1 || body != "ok" {
					t.Fatalf("%q %v %q", resp.Status, resp.Header, body)
				}
			},
		},
		{
			name:    "no header gives 500",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {},
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.StatusCode != 500 || !resp.Close {
					t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
				}
			},
			closed: true,
		},
		{
			name:    "short body closes",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(200, nil, nil, 10)
				_, _ = w.Write([]byte("12345"))
			},
			closed: true,
		},
		{
			name:    "long body refused",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(200, nil, nil, 3)
				if n, err := w.Write([]byte("12345")); n != 3 || !errors.Is(err, ErrBodyTooLong) {
					panic(fmt.Sprint("long write: ", n, err))
				}
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if body != "123" {
					t.Fatalf("body %q", body)
				}
			},
		},
		{
			name:    "interim 103 then final",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				_ = w.WriteHeader(103, nil, []exchange.Header{hdr("Link", "</a.css>; rel=preload")}, -1)
				hello(w, r)
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.StatusCode != 200 || body != "Hello, World!" {
					t.Fatalf("%d %q", resp.StatusCode, body)
				}
			},
		},
		{
			name:    "invalid response header refused",
			request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
			handler: func(w exchange.ResponseWriter, r *exchange.Request) {
				if err := w.WriteHeader(200, nil, []exchange.Header{hdr("X", "a\r\nInjected: 1")}, 0); !errors.Is(err, ErrInvalidHeader) {
					panic(fmt.Sprint("header injection accepted: ", err))
				}
				_ = w.WriteHeader(200, nil, nil, 0)
			},
			check: func(t *testing.T, resp *http.Response, body string) {
				if resp.Header.Get("Injected") != "" {
					t.Fatal("header injected")
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startServer(t, handlerFunc(tt.handler), Config{})
			c := dial(t, addr)
			br := bufio.NewReader(c)
			method := strings.Fields(tt.request)[0]
			// Send the request twice (pipelined): the second must be served
			// unless the first closes the connection.
			if _, err := io.WriteString(c, tt.request+tt.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			for err == nil && resp.StatusCode < 200 {
				resp, err = http.ReadResponse(br, &http.Request{Method: method}) // skip interim responses
			}
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if tt.check != nil {
				if err != nil {
					t.Fatalf("body: %v", err)
				}
				tt.check(t, resp, string(body))
			}
			if tt.closed {
				expectClosed(t, br)
				return
			}
			resp, err = http.ReadResponse(br, &http.Request{Method: method})
			for err == nil && resp.StatusCode < 200 {
				resp, err = http.ReadResponse(br, &http.Request{Method: method})
			}
			if err != nil {
				t.Fatalf("second response: %v", err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
		})
	}
}

// countConn counts Write calls on a memConn.
type countConn struct {
	memConn
	writes int
}

func (c *countConn) Write(p []byte) (int, error) { c.writes++; return c.memConn.Write(p) }

func TestPipeliningBatchesAndOrders(t *testing.T) {
	const n = 20
	var in strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	var seen []string
	srv := New(handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		seen = append(seen, string(r.Path))
		_ = w.WriteHeader(200, nil, nil, int64(len(r.Path)))
		_, _ = w.Write(r.Path)
	}), Config{})
	mc := &countConn{memConn: memConn{r: strings.NewReader(in.String())}}
	c := newConn(srv, mc)
	srv.conns[c] = struct{}{}
	c.serve()
	if len(seen) != n {
		t.Fatalf("served %d requests, want %d", len(seen), n)
	}
	br := bufio.NewReader(&mc.out)
	for i := 0; i < n; i++ {
		resp, body := readResponse(t, br, "GET")
		if want := fmt.Sprintf("/%d", i); body != want || seen[i] != want || resp.StatusCode != 200 {
			t.Fatalf("response %d: %q (handler saw %q)", i, body, seen[i])
		}
	}
	// Everything arrived in one read, so all responses go out in one write
	// (plus none for the EOF).
	if mc.writes != 1 {
		t.Fatalf("%d writes for %d pipelined responses, want 1", mc.writes, n)
	}
}

func TestExpectContinue(t *testing.T) {
	entered := make(chan struct{})
	proceed := make(chan struct{})
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if string(r.Path) == "/ignore" {
			_ = w.WriteHeader(413, nil, nil, 0)
			return
		}
		entered <- struct{}{}
		<-proceed
		b, err := io.ReadAll(r.Body)
		if err != nil {
			_ = w.WriteHeader(500, nil, nil, 0)
			return
		}
		_ = w.WriteHeader(200, nil, nil, int64(len(b)))
		_, _ = w.Write(b)
	}), Config{})

	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	<-entered
	// Nothing may arrive before the handler reads the body. (A short wait
	// can only miss a bug, never fail a correct engine.)
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if b, err := br.ReadByte(); err == nil {
		t.Fatalf("got %q before the body was read", b)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	close(proceed)
	line, err := br.ReadString('\n')
	if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("got %q after 100", blank)
	}
	io.WriteString(c, "hello")
	resp, body := readResponse(t, br, "POST")
	if resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}

	// A handler that answers without reading: no 100, and the connection
	// closes because the client never sent its body.
	io.WriteString(c, "POST /ignore HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	resp, _ = readResponse(t, br, "POST")
	if resp.StatusCode != 413 || !resp.Close {
		t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
	}
	expectClosed(t, br)
}

func TestAbortLeavesChunkedBodyIncomplete(t *testing.T) {
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		_ = w.WriteHeader(200, nil, nil, -1)
		_, _ = w.Write([]byte("partial"))
		w.Abort()
	}), Config{})
	c := dial(t, addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if !errors.Is(err, io.ErrUnexpectedEOF) || string(b) != "partial" {
		t.Fatalf("body %q, err %v; want partial body and unexpected EOF", b, err)
	}
}

func TestBodyDrainAndKeepAlive(t *testing.T) {
	_, addr := startServer(t, handlerFunc(hello), Config{})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	// Unread bodies (length and chunked) are drained and the connection reused.
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("a", 1000))
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	for i := 0; i < 3; i++ {
		if resp, body := readResponse(t, br, "GET"); resp.StatusCode != 200 || body != "Hello, World!" || resp.Close {
			t.Fatalf("response %d: %d %q close=%v", i, resp.StatusCode, body, resp.Close)
		}
	}
	// A body over the drain limit closes the connection after the response.
	io.WriteString(c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", discardLimit+1))
	readResponse(t, br, "POST")
	expectClosed(t, br)
}

func TestBrokenChunkedBodyGets400(t *testing.T) {
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		if _, err := io.ReadAll(r.Body); err == nil {
			hello(w, r)
		}
	}), Config{})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, _ := readResponse(t, br, "POST")
	if resp.StatusCode != 400 || !resp.Close {
		t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
	}
	expectClosed(t, br)
}

func TestRequestFields(t *testing.T) {
	got := make(chan exchange.Request, 1)
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		cp := *r
		cp.Host = append([]byte(nil), r.Host...)
		cp.Query = append([]byte(nil), r.Query...)
		got <- cp
		hello(w, r)
	}), Config{Scheme: "https"})
	c := dial(t, addr)
	io.WriteString(c, "GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n")
	readResponse(t, bufio.NewReader(c), "GET")
	r := <-got
	local := c.LocalAddr().(*net.TCPAddr)
	remote := c.RemoteAddr().(*net.TCPAddr)
	if r.Scheme != "https" || r.RemoteAddr != "127.0.0.1" || r.RemotePort != local.Port ||
		r.LocalAddr != "127.0.0.1" || r.LocalPort != remote.Port || string(r.Host) != "example.com" ||
		string(r.Query) != "q=1" || r.ContentLength != 0 || r.Body == nil || r.Watch == nil || r.Ctx == nil {
		t.Fatalf("fields: %+v", r)
	}
}

func TestUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Skipf("unix sockets unavailable: %v", err)
	}
	remote := make(chan string, 1)
	s := New(handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		remote <- fmt.Sprintf("%q:%d %q:%d", r.RemoteAddr, r.RemotePort, r.LocalAddr, r.LocalPort)
		hello(w, r)
	}), Config{})
	go s.Serve(l)
	defer s.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := readResponse(t, bufio.NewReader(c), "GET"); body != "Hello, World!" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got := <-remote; got != `"":0 "":0` {
		t.Fatalf("addresses %s", got)
	}
}

func TestSendFile(t *testing.T) {
	content := strings.Repeat("0123456789", 10000)
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
		f, err := os.Open(path)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		length := int64(-1)
		if string(r.Path) == "/known" {
			length = int64(len(content) - 5)
		}
		_ = w.WriteHeader(200, nil, nil, length)
		_, _ = w.Write([]byte("hi"))
		if _, err := w.SendFile(f, 7, int64(len(content)-7)); err != nil {
			panic(err)
		}
	}), Config{})
	c := dial(t, addr)
	br := bufio.NewReader(c)
	want := "hi" + content[7:]
	for _, req := range []string{"GET /known", "GET /chunked", "HEAD /known"} {
		method, target, _ := strings.Cut(req, " ")
		fmt.Fprintf(c, "%s %s HTTP/1.1\r\nHost: x\r\n\r\n", method, target)
		resp, body := readResponse(t, br, method)
		if method == "HEAD" {
			want = ""
		}
		if body != want || resp.StatusCode != 200 {
			t.Fatalf("%s: %d, %d bytes, want %d", req, resp.StatusCode, len(body), len(want))
		}
	}
}

// TestIdleAndHeaderTimeouts checks each timeout on a server where the other
// cannot interfere (a minute), and asserts only that the short one fires
// eventually (within the test connections' 20 s deadline), never how soon:
// the test must hold on a busy machine.
func TestIdleAndHeaderTimeouts(t *testing.T) {
	t.Run("idle keep-alive connection closed silently", func(t *testing.T) {
		t.Parallel()
		_, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{KeepAlive: 500 * time.Millisecond, HeaderTimeout: time.Minute}})
		// The request must arrive within the idle timeout of a new
		// connection: a client stalled longer than that (a busy machine)
		// finds the connection closed, and tries again.
		for attempt := 1; ; attempt++ {
			c := dial(t, addr)
			br := bufio.NewReader(c)
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				if attempt == 5 {
					t.Fatalf("no response in %d attempts: %v", attempt, err)
				}
				t.Logf("attempt %d: %v (client too slow for the idle timeout?)", attempt, err)
				continue
			}
			if _, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%d %v", resp.StatusCode, err)
			}
			expectClosed(t, br)
			return
		}
	})
	t.Run("connection that never sends closed silently", func(t *testing.T) {
		t.Parallel()
		_, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{KeepAlive: 500 * time.Millisecond, HeaderTimeout: time.Minute}})
		expectClosed(t, bufio.NewReader(dial(t, addr)))
	})
	t.Run("half a head gets 408", func(t *testing.T) {
		t.Parallel()
		_, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{KeepAlive: time.Minute, HeaderTimeout: 500 * time.Millisecond}})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET / HTTP/1.1\r\nHo")
		resp, _ := readResponse(t, br, "GET")
		if resp.StatusCode != 408 || !resp.Close {
			t.Fatalf("%d close=%v", resp.StatusCode, resp.Close)
		}
		expectClosed(t, br)
	})
}

func TestLimits(t *testing.T) {
	_, addr := startServer(t, handlerFunc(hello), Config{HTTP: config.HTTP{LimitRequestLine: 100, LimitRequestFields: 5, LimitRequestFieldSize: 100}})
	tests := []struct {
		name, req string
		status    int
	}{
		{"request line", "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"field size", "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 200) + "\r\n\r\n", 431},
		{"field count", "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("A: b\r\n", 6) + "\r\n", 431},
		{"endless field, no newline", "GET / HTTP/1.1\r\nHost: x\r\nA: " + strings.Repeat("a", 100000), 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			go io.WriteString(c, tt.req) // may fail once the server closes
			resp, _ := readResponse(t, bufio.NewReader(c), "GET")
			if resp.StatusCode != tt.status || !resp.Close {
				t.Fatalf("%d close=%v, want %d", resp.StatusCode, resp.Close, tt.status)
			}
		})
	}
}

func TestGone(t *testing.T) {
	t.Run("client closes", func(t *testing.T) {
		result := make(chan bool, 1)
		inHandler := make(chan struct{})
		_, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
			r.Watch()
			gone := r.Context().Done()
			_, _ = io.ReadAll(r.Body)
			close(inHandler)
			select {
			case <-gone:
				result <- true
			case <-time.After(20 * time.Second):
				result <- false
			}
		}), Config{})
		c := dial(t, addr)
		io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
		<-inHandler
		c.Close()
		if !<-result {
			t.Fatal("the request context was not cancelled after the client left")
		}
	})
	t.Run("pipelined bytes kept", func(t *testing.T) {
		var srv *Server
		release := make(chan struct{})
		var calls atomic.Int32
		h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
			if calls.Add(1) == 1 {
				r.Watch()
				<-release
			}
			_ = w.WriteHeader(200, nil, nil, int64(len(r.Path)))
			_, _ = w.Write(r.Path)
		})
		srv, addr := startServer(t, h, Config{})
		c := dial(t, addr)
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
		// Wait until the watcher is running, then send the next request:
		// the watcher reads it, and it must still be served.
		waitFor(t, func() bool { return watcherState(srv, func(g *goneWatch) bool { return g.started }) })
		io.WriteString(c, "GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
		waitFor(t, func() bool { return watcherState(srv, func(g *goneWatch) bool { return len(g.ahead) > 0 }) })
		close(release)
		for _, want := range []string{"/first", "/second"} {
			if _, body := readResponse(t, br, "GET"); body != want {
				t.Fatalf("got %q, want %q", body, want)
			}
		}
	})
}

func watcherState(s *Server, f func(*goneWatch) bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.gone.mu.Lock()
		ok := f(&c.gone)
		c.gone.mu.Unlock()
		if ok {
			return true
		}
	}
	return false
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("drains in-flight request", func(t *testing.T) {
		entered := make(chan struct{})
		release := make(chan struct{})
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := New(handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
			if string(r.Path) == "/slow" {
				close(entered)
				<-release
			}
			hello(w, r)
		}), Config{})
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		addr := l.Addr().String()

		idle := dial(t, addr)
		idleBr := bufio.NewReader(idle)
		io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		readResponse(t, idleBr, "GET")

		busy := dial(t, addr)
		io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
		<-entered

		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(shutdownCtx(t, 20*time.Second)) }()
		expectClosed(t, idleBr) // idle connection closed at once
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with a request in flight", err)
		default:
		}
		close(release)
		resp, body := readResponse(t, bufio.NewReader(busy), "GET")
		if body != "Hello, World!" || !resp.Close {
			t.Fatalf("in-flight response %q close=%v", body, resp.Close)
		}
		if err := <-shut; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Fatalf("Serve: %v", err)
		}
		if n := s.ActiveConns(); n != 0 {
			t.Fatalf("%d connections left", n)
		}
		if _, err := net.Dial("tcp", addr); err == nil {
			t.Fatal("listener still accepting")
		}
	})
	t.Run("deadline closes everything", func(t *testing.T) {
		entered := make(chan struct{})
		release := make(chan struct{})
		defer close(release)
		s, addr := startServer(t, handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) {
			close(entered)
			<-release
		}), Config{})
		c := dial(t, addr)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		<-entered
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		expectClosed(t, bufio.NewReader(c))
	})
}

// TestHotPathAllocs proves the keep-alive hot path allocates nothing: a GET
// with a few headers answered with a small body, over real TCP.
func TestHotPathAllocs(t *testing.T) {
	if raceEnabled {
		// The race detector makes sync.Pool drop a quarter of what is put
		// back, so the buffers an idle connection returns get reallocated.
		t.Skip("sync.Pool drops items at random under -race")
	}
	_, addr := startServer(t, handlerFunc(hello), Config{})
	c := dial(t, addr)
	req := []byte("GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n\r\n")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := readHello(c, buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 100; i++ {
		roundTrip() // warm up buffers, Date cache, header slices
	}
	if avg := testing.AllocsPerRun(2000, roundTrip); avg != 0 {
		t.Fatalf("%.2f allocations per request, want 0", avg)
	}
}

// raceEnabled is set by race_test.go in -race builds.
var raceEnabled bool

// helloLen is the length of the hello response (Date has a fixed width).
var helloLen = len("HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nServer: krait\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")

// readHello reads exactly one hello response without allocating.
func readHello(c net.Conn, buf []byte) error {
	got := 0
	for got < helloLen {
		n, err := c.Read(buf[got:helloLen])
		if err != nil {
			return err
		}
		got += n
	}
	if string(buf[got-13:got]) != "Hello, World!" {
		return fmt.Errorf("unexpected response %q", buf[:got])
	}
	return nil
}
