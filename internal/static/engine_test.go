package static

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/h1"
)

// engineRoundTrip serves the handler with krait's HTTP/1.1 engine on
// loopback and returns a function doing one keep-alive GET of target,
// checking the status line and reading the body, with a preallocated
// buffer so that the client allocates nothing.
func engineRoundTrip(t testing.TB, h *Handler, target string, bodyLen int) func() {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := h1.New(h, h1.Config{})
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.DialTimeout("tcp", l.Addr().String(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := []byte("GET " + target + " HTTP/1.1\r\nHost: localhost\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 64<<10)
	status := []byte("HTTP/1.1 200 OK\r\n")
	clHeader := []byte("\r\nContent-Length: " + strconv.Itoa(bodyLen) + "\r\n")
	return func() {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		// Read the head, then exactly the body.
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
				head := buf[:i+2]
				if !bytes.HasPrefix(head, status) || !bytes.Contains(head, clHeader) {
					t.Fatalf("response head:\n%s", head)
				}
				rest := n - (i + 4)
				if rest < bodyLen {
					if _, err := io.ReadFull(c, buf[n:n+bodyLen-rest]); err != nil {
						t.Fatal(err)
					}
				}
				return
			}
		}
	}
}

// TestEngineHotPathAllocations: a keep-alive GET of a cached file through
// the HTTP/1.1 engine allocates nothing, server and client together.
func TestEngineHotPathAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	fx := newFixture(t)
	h := newHandler(t, Config{Prefix: "/static", Dir: fx.dir, Recheck: time.Hour})
	get := engineRoundTrip(t, h, "/static/css/app.css", len(fx.css))
	get()
	if allocs := testing.AllocsPerRun(300, get); allocs != 0 {
		t.Errorf("%v allocations per request through the engine, want 0", allocs)
	}
}

func BenchmarkEngineStatic(b *testing.B) {
	fx := newFixture(b)
	h := newHandler(b, Config{Prefix: "/static", Dir: fx.dir, Recheck: time.Hour})
	get := engineRoundTrip(b, h, "/static/css/app.css", len(fx.css))
	b.ReportAllocs()
	for b.Loop() {
		get()
	}
}
