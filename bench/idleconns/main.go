// Command idleconns measures how much memory krait holds for many client
// connections: idle keep-alive ones, and ones that send a large request head
// without ever finishing it. It reads the server's resident set size from
// /proc/PID/status, so it runs on Linux against a local server.
//
//	idleconns -addr 127.0.0.1:8000 -pid $(pgrep -o krait) -n 10000 -mode idle
//	idleconns -addr 127.0.0.1:8000 -pid PID -n 1000 -mode halfhead -lines 98 -size 8192
//
// Modes: "idle" sends one request on each connection, reads the response and
// leaves the connection open (an idle keep-alive connection); "fresh" opens
// connections that send nothing; "halfhead" sends a request line and -lines
// header lines of -size bytes each, never the final empty line. Raise
// `ulimit -n` in the shell (and krait's) above -n first, and start krait with
// --keep-alive and --header-timeout longer than the run.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8000", "server address")
	pid := flag.Int("pid", 0, "server process id (its RSS is reported)")
	n := flag.Int("n", 10000, "connections")
	mode := flag.String("mode", "idle", "idle, fresh or halfhead")
	path := flag.String("path", "/hello", "request path (idle mode)")
	lines := flag.Int("lines", 98, "header lines per connection (halfhead mode)")
	size := flag.Int("size", 8192, "bytes per header line including CRLF (halfhead mode)")
	settle := flag.Duration("settle", 3*time.Second, "wait before measuring with the connections open")
	after := flag.Duration("after", 10*time.Second, "how long RSS is followed after closing")
	par := flag.Int("par", 200, "connections set up at once")
	wait := flag.Duration("wait", 3*time.Second, "halfhead: how long to wait for the server's answers")
	flag.Parse()
	if *pid <= 0 {
		return errors.New("-pid is required")
	}

	start, err := rss(*pid)
	if err != nil {
		return err
	}
	fmt.Printf("mode=%s n=%d\n", *mode, *n)
	fmt.Printf("rss_before_kb=%d\n", start)

	var peak atomic.Int64
	peak.Store(start)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				if v, err := rss(*pid); err == nil && v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()

	conns := make([]net.Conn, *n)
	var (
		wg        sync.WaitGroup
		sem       = make(chan struct{}, *par)
		failed    atomic.Int64
		answered  atomic.Int64 // halfhead: the server answered (431, 503, ...)
		statuses  sync.Map
		firstErr  atomic.Value
		headBytes = halfHead(*lines, *size)
		request   = []byte("GET " + *path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	)
	t0 := time.Now()
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", *addr, 30*time.Second)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				return
			}
			conns[i] = c
			_ = c.SetDeadline(time.Now().Add(120 * time.Second))
			switch *mode {
			case "idle":
				if _, err := c.Write(request); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if err := readOne(c); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			case "halfhead":
				// A server that refuses the head answers and closes (the
				// rest of the write may then fail); one that keeps reading
				// takes it all.
				_, _ = c.Write(headBytes)
			}
		}(i)
	}
	wg.Wait()
	if *mode == "halfhead" {
		// Collect the answers, all connections at once, waiting at most
		// -wait for a server that keeps reading.
		var rg sync.WaitGroup
		deadline := time.Now().Add(*wait)
		for _, c := range conns {
			if c == nil {
				continue
			}
			rg.Add(1)
			go func(c net.Conn) {
				defer rg.Done()
				_ = c.SetReadDeadline(deadline)
				line, err := bufio.NewReader(c).ReadString('\n')
				var st string
				switch {
				case strings.HasPrefix(line, "HTTP/1.1 "):
					answered.Add(1)
					st = strings.Fields(line)[1]
				case isTimeout(err):
					st = "none_still_open"
				default:
					st = "none_closed"
				}
				v, _ := statuses.LoadOrStore(st, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
				_ = c.SetDeadline(time.Now().Add(120 * time.Second))
			}(c)
		}
		rg.Wait()
	}
	fmt.Printf("setup_seconds=%.1f failed=%d\n", time.Since(t0).Seconds(), failed.Load())
	if e := firstErr.Load(); e != nil {
		fmt.Printf("first_error=%q\n", e.(error).Error())
	}
	if *mode == "halfhead" {
		fmt.Printf("answered=%d", answered.Load())
		statuses.Range(func(k, v any) bool {
			fmt.Printf(" status_%s=%d", k, v.(*atomic.Int64).Load())
			return true
		})
		fmt.Println()
	}
	time.Sleep(*settle)
	open, err := rss(*pid)
	if err != nil {
		return err
	}
	fmt.Printf("rss_open_kb=%d peak_kb=%d per_conn_bytes=%d\n", open, max(peak.Load(), open), (open-start)*1024/int64(*n))

	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	closed := time.Now()
	for _, at := range []time.Duration{time.Second, 5 * time.Second, *after} {
		if d := time.Until(closed.Add(at)); d > 0 {
			time.Sleep(d)
		}
		v, err := rss(*pid)
		if err != nil {
			return err
		}
		fmt.Printf("rss_after_close_%s_kb=%d\n", at, v)
	}
	close(stopSampling)
	<-sampled
	fmt.Printf("peak_kb=%d\n", peak.Load())
	return nil
}

// halfHead is a request line and header lines of size bytes each (CRLF
// included), without the empty line that would end the head.
func halfHead(lines, size int) []byte {
	var b bytes.Buffer
	b.WriteString("GET / HTTP/1.1\r\nHost: bench\r\n")
	for i := 0; i < lines; i++ {
		name := "X-Pad-" + strconv.Itoa(i) + ": "
		b.WriteString(name)
		b.Write(bytes.Repeat([]byte("a"), max(size-len(name)-2, 0)))
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// readOne reads one response with a Content-Length body.
func readOne(c net.Conn) error {
	br := bufio.NewReaderSize(c, 512)
	length := -1
	line, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		return fmt.Errorf("status line %q", line)
	}
	for {
		line, err = br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "content-length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		return errors.New("no Content-Length")
	}
	_, err = io.CopyN(io.Discard, br, int64(length))
	if err == nil && br.Buffered() > 0 {
		err = errors.New("bytes after the response")
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rss is the process's resident set size in KiB.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
}
