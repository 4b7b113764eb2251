package workertest

import (
	"encoding/binary"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/krait-server/krait/internal/wire"
)

// Environment variables that select the fake worker's behaviour.
const (
	// EnvMode: "ready" (serve), "import-error" (error HELLO), "exit"
	// (exit 1 before HELLO), "hang" (never answer), "garbage" (invalid
	// frame instead of HELLO), "exit-after-hello" (a ready HELLO, then
	// exit 1 at once: a crash loop right after boot), "no-pong" (serve,
	// but never answer PING: a worker whose event loop is blocked).
	EnvMode = "KRAIT_FAKE_WORKER"
	// EnvCapacity is the capacity reported in HELLO (default 4).
	EnvCapacity = "KRAIT_FAKE_CAPACITY"
	// EnvModeFile names a file which, when it exists, overrides EnvMode
	// with its content: tests use it to make replacement workers fail.
	EnvModeFile = "KRAIT_FAKE_WORKER_FILE"
	// EnvInterface is the interface reported in HELLO: "wsgi" (default)
	// or "asgi" (then REQUEST carries an ASGI scope; see asgi.go).
	EnvInterface = "KRAIT_FAKE_INTERFACE"
)

// Main turns the process into the fake worker when EnvMode is set, and
// never returns then. Call it first thing in TestMain.
func Main() {
	mode := os.Getenv(EnvMode)
	if mode == "" {
		return
	}
	if f := os.Getenv(EnvModeFile); f != "" {
		if b, err := os.ReadFile(f); err == nil {
			mode = strings.TrimSpace(string(b))
		}
	}
	os.Exit(run(mode))
}

func marshalTuple(items ...any) []byte {
	b := []byte{'(', 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(b[1:], uint32(len(items)))
	for _, it := range items {
		b = marshalValue(b, it)
	}
	return b
}

func marshalValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case int:
		b = append(b, 'i')
		return binary.LittleEndian.AppendUint32(b, uint32(int32(v)))
	case string:
		b = append(b, 'u')
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	case []byte:
		b = append(b, 's')
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		return append(b, v...)
	case []any:
		b = append(b, '[')
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		for _, it := range v {
			b = marshalValue(b, it)
		}
		return b
	case [2]any:
		return append(b, marshalTuple(v[0], v[1])...)
	case bool:
		if v {
			return append(b, 'T')
		}
		return append(b, 'F')
	case nil:
		return append(b, 'N')
	}
	panic(fmt.Sprintf("fake worker: cannot marshal %T", v))
}

func run(mode string) int {
	fmt.Println("fake worker starting")
	fmt.Fprintln(os.Stderr, "fake worker stderr line")
	sock := os.NewFile(3, "socket")
	capacity := 4
	if c, err := strconv.Atoi(os.Getenv(EnvCapacity)); err == nil {
		capacity = c
	}
	iface := os.Getenv(EnvInterface)
	if iface == "" {
		iface = "wsgi"
	}
	hello := func(status, msg string) {
		p := marshalTuple(3, "fake-1.0", os.Getpid(), iface, status, msg, capacity)
		sock.Write(wire.AppendFrame(nil, wire.Hello, 0, 0, p))
	}
	switch mode {
	case "import-error":
		msg := "Traceback (most recent call last):\n  File \"app.py\", line 1\n    def (:\nSyntaxError: invalid syntax\n"
		fmt.Fprint(os.Stderr, msg)
		hello("error", msg)
		return 3
	case "exit":
		fmt.Fprintln(os.Stderr, "ModuleNotFoundError: No module named 'nope'")
		return 1
	case "hang":
		select {}
	case "garbage":
		sock.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		select {}
	case "exit-after-hello":
		hello("ready", "")
		return 1
	}
	hello("ready", "")
	f := &fake{w: wire.NewWriter(sock), streams: map[uint32]*stream{}, asgi: iface == "asgi", noPong: mode == "no-pong"}
	return f.serve(wire.NewReader(sock))
}

type fake struct {
	asgi     bool
	noPong   bool
	w        *wire.Writer
	mu       sync.Mutex
	streams  map[uint32]*stream
	lastID   uint32
	wg       sync.WaitGroup
	shutdown bool
}

type stream struct {
	id    uint32
	env   map[string]string
	scope map[string]any // ASGI only
	ws    wsState        // ASGI websocket only
	f     *fake
	mu    sync.Mutex
	cond  *sync.Cond
	body  [][]byte
	eof   bool
	win   int64 // send window
	rwin  int64 // receive window: body bytes krait may still send
	got   int64 // body bytes received so far
	rst   bool
}

func (f *fake) serve(r *wire.Reader) int {
	for {
		h, p, err := r.ReadFrame()
		if err != nil {
			f.wg.Wait()
			return 0
		}
		switch h.Type {
		case wire.Ping:
			if !f.noPong {
				f.w.Append(wire.AppendFrame(nil, wire.Pong, 0, 0, p))
			}
			continue
		case wire.Shutdown:
			f.mu.Lock()
			f.shutdown = true
			f.mu.Unlock()
			go func() {
				f.wg.Wait()
				os.Exit(0)
			}()
			continue
		case wire.Request:
			if h.Stream <= f.lastID {
				fmt.Fprintf(os.Stderr, "protocol error: stream id %d after %d\n", h.Stream, f.lastID)
				return 70
			}
			f.lastID = h.Stream
			v, err := wire.Decode(p)
			if err != nil {
				fmt.Fprintf(os.Stderr, "protocol error: %v\n", err)
				return 70
			}
			env := map[string]string{}
			var scope map[string]any
			if f.asgi {
				scope, env = scopeEnv(v.(wire.Dict))
			} else {
				for _, kv := range v.(wire.Dict) {
					k, _ := wire.Latin1(nil, []byte(kv[0].(string)))
					val, _ := wire.Latin1(nil, []byte(kv[1].(string)))
					env[string(k)] = string(val)
				}
			}
			s := &stream{id: h.Stream, env: env, scope: scope, f: f, eof: h.End(), win: wire.InitialWindow, rwin: wire.InitialWindow}
			s.cond = sync.NewCond(&s.mu)
			f.mu.Lock()
			if f.shutdown {
				f.mu.Unlock()
				f.w.Append(wire.AppendFrame(nil, wire.Reset, 0, h.Stream, []byte("shutting down")))
				continue
			}
			f.streams[h.Stream] = s
			f.wg.Add(1)
			f.mu.Unlock()
			go s.run()
			continue
		}
		f.mu.Lock()
		s := f.streams[h.Stream]
		f.mu.Unlock()
		if s == nil {
			continue // ended already
		}
		s.mu.Lock()
		switch h.Type {
		case wire.Data, wire.WSMessage:
			// krait must honour the window it was given, as the real
			// adapter relies on: an overrun is a protocol error.
			if int64(len(p)) > s.rwin {
				s.mu.Unlock()
				fmt.Fprintf(os.Stderr, "protocol error: %d bytes of %s beyond the receive window (%d left) on stream %d\n",
					len(p), h.Type, s.rwin, h.Stream)
				return 70
			}
			s.rwin -= int64(len(p))
			s.got += int64(len(p))
		}
		switch h.Type {
		case wire.Data:
			if len(p) > 0 {
				s.body = append(s.body, append([]byte(nil), p...))
			}
			if h.End() {
				s.eof = true
			}
		case wire.Window:
			c, _ := wire.ParseWindow(p)
			s.win += int64(c)
		case wire.Reset:
			s.rst = true
			fmt.Printf("[fake] reset stream %d\n", h.Stream)
		case wire.WSMessage, wire.WSClose:
			s.wsFrame(h, p)
		}
		s.cond.Broadcast()
		s.mu.Unlock()
	}
}

func (s *stream) send(frames []byte) { s.f.w.Append(frames) }

func (s *stream) end() {
	s.f.mu.Lock()
	delete(s.f.streams, s.id)
	s.f.mu.Unlock()
	s.f.wg.Done()
}

// read returns the next body chunk (nil at EOF) and credits it.
func (s *stream) read() ([]byte, bool) {
	s.mu.Lock()
	for len(s.body) == 0 && !s.eof && !s.rst {
		s.cond.Wait()
	}
	if s.rst {
		s.mu.Unlock()
		return nil, false
	}
	if len(s.body) == 0 {
		s.mu.Unlock()
		return nil, true
	}
	c := s.body[0]
	s.body = s.body[1:]
	s.rwin += int64(len(c))
	s.mu.Unlock()
	s.send(wire.AppendWindow(nil, s.id, uint32(len(c))))
	return c, true
}

// data sends body bytes honouring the send window; false when reset.
func (s *stream) data(p []byte, end bool) bool {
	for {
		s.mu.Lock()
		for s.win <= 0 && !s.rst && len(p) > 0 {
			s.cond.Wait()
		}
		if s.rst {
			s.mu.Unlock()
			return false
		}
		n := int64(len(p))
		n = min(n, s.win, 64<<10)
		s.win -= n
		s.mu.Unlock()
		last := end && int(n) == len(p)
		var fl uint8
		if last {
			fl = wire.FlagEndStream
		}
		s.send(wire.AppendFrame(nil, wire.Data, fl, s.id, p[:n]))
		p = p[n:]
		if len(p) == 0 {
			return true
		}
	}
}

func response(id uint32, status any, headers []any, flags uint8) []byte {
	return wire.AppendFrame(nil, wire.Response, flags, id, marshalTuple(status, headers))
}

var textPlain = []any{[2]any{"Content-Type", "text/plain"}}

func (s *stream) run() {
	defer s.end()
	if s.scope != nil && s.asgiRun() {
		return
	}
	path := s.env["PATH_INFO"]
	query, _ := url.QueryUnescape(s.env["QUERY_STRING"])
	id := s.id
	if strings.HasPrefix(path, "/env") {
		path = "/env"
	}
	switch path {
	case "/":
		s.send(append(response(id, "200 OK", textPlain, 0), wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, id, []byte("hello"))...))
	case "/env":
		keys := make([]string, 0, len(s.env))
		for k := range s.env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + s.env[k] + "\n")
		}
		s.send(response(id, "200 OK", textPlain, 0))
		s.data([]byte(b.String()), true)
	case "/echo":
		s.send(response(id, "200 OK", textPlain, 0))
		for {
			c, ok := s.read()
			if !ok {
				s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
				return
			}
			if c == nil {
				s.data(nil, true)
				return
			}
			if !s.data(c, false) {
				s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
				return
			}
		}
	case "/big":
		n, _ := strconv.Atoi(query)
		s.send(response(id, 200, textPlain, 0))
		chunk := []byte(strings.Repeat("x", 64<<10))
		if n <= 0 {
			s.data(nil, true)
		}
		for n > 0 {
			c := chunk[:min(n, len(chunk))]
			n -= len(c)
			if !s.data(c, n == 0) {
				s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
				return
			}
		}
	case "/chunks":
		s.send(response(id, "200 OK", textPlain, 0))
		for i, c := range []string{"one ", "two ", "three"} {
			s.data([]byte(c), i == 2)
		}
	case "/sendfile":
		s.send(append(response(id, "200 OK", textPlain, 0),
			wire.AppendFrame(nil, wire.SendFile, wire.FlagEndStream, id, marshalTuple(query, 0, -1))...))
	case "/die":
		os.Exit(1)
	case "/die-holding":
		// Exit, leaving the socket open in a child (as a fork()ed
		// multiprocessing worker would): krait sees the process reaped
		// long before its connection ends.
		holder := exec.Command(os.Args[0])
		holder.Env = append(os.Environ(), EnvMode+"=hang", EnvModeFile+"=")
		holder.ExtraFiles = []*os.File{os.NewFile(3, "socket")}
		if err := holder.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "starting the holder: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("[fake] holder pid %d\n", holder.Process.Pid)
		os.Exit(1)
	case "/die-mid":
		s.send(response(id, "200 OK", textPlain, 0))
		s.data([]byte("partial"), false)
		// Another goroutine may be mid-write with our frames queued
		// behind it: let them out before dying.
		for !s.f.w.Idle() {
			runtime.Gosched()
		}
		os.Exit(1)
	case "/reset-mid":
		s.send(response(id, "200 OK", textPlain, 0))
		s.data([]byte("partial"), false)
		s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("app failed")))
	case "/stream-wait":
		s.send(response(id, "200 OK", textPlain, 0))
		s.data([]byte("first"), false)
		s.mu.Lock()
		for !s.rst {
			s.cond.Wait()
		}
		s.mu.Unlock()
		s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
	case "/wait-reset":
		s.mu.Lock()
		for !s.rst {
			s.cond.Wait()
		}
		s.mu.Unlock()
		s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
	case "/respond":
		s.respond(query)
	case "/hold-body":
		// Reads nothing (returns no credit) until krait has sent a whole
		// window, then answers with the bytes received by then and
		// drains the rest: a krait that does not charge its send window
		// sends more and trips the overrun check in serve.
		s.mu.Lock()
		for s.got < wire.InitialWindow && !s.eof && !s.rst {
			s.cond.Wait()
		}
		held := s.got
		s.mu.Unlock()
		total := 0
		for {
			c, ok := s.read()
			if !ok {
				s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
				return
			}
			if c == nil {
				break
			}
			total += len(c)
		}
		s.send(response(id, "200 OK", textPlain, 0))
		s.data([]byte(fmt.Sprintf("held %d total %d", held, total)), true)
	case "/overrun":
		// Ignores the window: a whole window plus one byte without
		// waiting for credit. krait must treat it as a protocol error.
		s.send(response(id, "200 OK", textPlain, 0))
		s.send(wire.AppendFrame(nil, wire.Data, 0, id, make([]byte, wire.InitialWindow/2)))
		s.send(wire.AppendFrame(nil, wire.Data, 0, id, make([]byte, wire.InitialWindow/2)))
		s.send(wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, id, []byte("!")))
	case "/fill-window":
		// Exactly one window without waiting for credit: allowed.
		s.send(response(id, "200 OK", textPlain, 0))
		s.send(wire.AppendFrame(nil, wire.Data, 0, id, make([]byte, wire.InitialWindow/2)))
		s.send(wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, id, make([]byte, wire.InitialWindow/2)))
	default:
		s.send(append(response(id, "404 Not Found", textPlain, 0), wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, id, []byte("not found"))...))
	}
}

// respond sends the RESPONSE for a scenario, then "body" and the end.
func (s *stream) respond(scenario string) {
	var p []byte
	switch scenario {
	case "int-status":
		p = marshalTuple(201, textPlain)
	case "bad-status":
		p = marshalTuple("20 OK", textPlain)
	case "bad-header-name":
		p = marshalTuple("200 OK", []any{[2]any{"Bad Name", "x"}})
	case "bad-header-value":
		p = marshalTuple("200 OK", []any{[2]any{"X-A", "a\r\nb"}})
	case "hop-by-hop":
		p = marshalTuple("200 OK", []any{[2]any{"Connection", "close"}, [2]any{"X-Ok", "yes"}})
	case "content-length":
		p = marshalTuple("200 OK", []any{[2]any{"Content-Length", "4"}})
	case "bytes-headers":
		p = marshalTuple("200 OK", []any{[2]any{[]byte("X-Bytes"), []byte("caf\xe9")}, [2]any{"X-Str", "caf\u00e9"}})
	case "non-latin1":
		p = marshalTuple("200 OK", []any{[2]any{"X-A", "\u0100"}})
	case "undecodable":
		p = []byte{'g', 1, 2}
	}
	s.send(append(wire.AppendFrame(nil, wire.Response, 0, s.id, p),
		wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, s.id, []byte("body"))...))
}
