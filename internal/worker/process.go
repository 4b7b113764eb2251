package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/config"
	"github.com/krait-server/krait/internal/wire"
)

// ProtocolVersion is the worker protocol version this package speaks.
const ProtocolVersion = 3

// UnlimitedCapacity is the HELLO capacity of an ASGI worker without
// --limit-concurrency, the largest capacity a worker may report.
const UnlimitedCapacity = 1000000

// MaxStreams caps the streams krait runs at once on one worker, whatever
// capacity it reports: the stream table (two entries per stream) stays at
// most 1 MiB.
const MaxStreams = 1 << 16

// Config describes one worker process.
type Config struct {
	// Worker is krait's worker settings (config.Worker), passed whole
	// from `krait serve`; there are no defaults here. Python, App,
	// Interface ("auto", "wsgi" or "asgi"), Threads (>= 1) and
	// BootTimeout (the wait for HELLO, > 0) are required; Start refuses
	// a Config without them. Chdir "" is krait's working directory;
	// PythonPath directories go on sys.path right after the adapter; Env
	// holds extra "KEY=VALUE" variables. LimitConcurrency (0 =
	// unlimited), Loop and Lifespan ("" = the adapter's default) are
	// passed to the adapter only when set.
	config.Worker
	// ID is the worker's slot number (1..W), used in its output prefix.
	ID int
	// AdapterDir is put first on PYTHONPATH (from python.Install).
	AdapterDir string
	// Output receives the worker's stdout and stderr, one Write per line,
	// each prefixed with "[worker ID] ". It must be safe for concurrent
	// use. nil discards them.
	Output io.Writer
	// Log receives protocol problems (nil = slog.Default()).
	Log *slog.Logger
	// OnRelease is called from the reader goroutine each time a stream
	// ends on the worker's side, freeing one slot. It must not block.
	OnRelease func()
}

// BootError is a worker that could not start serving: the app failed to
// import (Message is Python's error and traceback), or the process exited
// or hung before its handshake (Message carries the tail of its output).
type BootError struct {
	Message string
}

func (e *BootError) Error() string {
	return "the worker failed to start:\n" + strings.TrimRight(e.Message, "\n")
}

// Errors returned by Stream and Worker methods.
var (
	// ErrWorkerDied: the process exited, its socket closed or it broke
	// the protocol; streams in flight on it fail with an error wrapping it.
	ErrWorkerDied = errors.New("worker died")
	// ErrStopping: the worker is shutting down and takes no new stream.
	ErrStopping = errors.New("worker is stopping")
	// ErrExhausted: the worker used up its stream ids; replace it.
	ErrExhausted = errors.New("worker stream ids exhausted")
	// ErrNotDelivered: SendRequest found the worker already dead, so not
	// one byte of the request was written; it is safe to run the request
	// on another worker. Errors wrapping it also wrap ErrWorkerDied.
	ErrNotDelivered = errors.New("the request was not delivered")
	// ErrReturned: the worker never started the request and gave it back
	// (RETURNED, the answer to a RECALL), or died before it could have
	// started it (docs/protocol.md, "Prefetch and recall"); the request,
	// whose body went whole with its REQUEST, may run on another worker.
	ErrReturned = errors.New("the worker gave the request back unstarted")
)

// tailSize is how much recent output is kept for boot error messages.
const tailSize = 16 << 10

// tail keeps the last tailSize bytes written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) add(line []byte) {
	t.mu.Lock()
	t.buf = append(t.buf, line...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	t.mu.Unlock()
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// copyLines copies r to out line by line with a prefix; overlong lines
// are cut into pieces rather than buffered without bound.
func copyLines(r io.Reader, out io.Writer, prefix string, t *tail, done chan<- struct{}) {
	defer close(done)
	br := bufio.NewReaderSize(r, 64<<10)
	line := make([]byte, 0, 256)
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			line = append(line[:0], prefix...)
			line = append(line, chunk...)
			if line[len(line)-1] != '\n' {
				line = append(line, '\n')
			}
			t.add(line[len(prefix):])
			if out != nil {
				_, _ = out.Write(line)
			}
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

// Start spawns the worker and waits for its handshake. A failure to boot
// is a *BootError; ctx cancels the wait (the process is then killed).
func Start(ctx context.Context, cfg Config) (*Worker, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log.With("worker", cfg.ID)

	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("creating the worker socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "krait-worker-socket")
	theirs := os.NewFile(uintptr(fds[1]), "krait-worker-socket")
	fc, err := net.FileConn(ours) // dups the fd into the netpoller
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("wrapping the worker socket: %w", err)
	}
	conn := fc.(*net.UnixConn)

	outR, outW, err := os.Pipe()
	if err != nil {
		conn.Close()
		theirs.Close()
		return nil, fmt.Errorf("creating the worker stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		conn.Close()
		theirs.Close()
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("creating the worker stderr pipe: %w", err)
	}

	args := []string{"-u", "-m", "krait_worker", "--app", cfg.App,
		"--threads", strconv.Itoa(cfg.Threads), "--interface", cfg.Interface}
	if cfg.LimitConcurrency > 0 {
		args = append(args, "--limit-concurrency", strconv.Itoa(cfg.LimitConcurrency))
	}
	if cfg.Loop != "" {
		args = append(args, "--loop", cfg.Loop)
	}
	if cfg.Lifespan != "" {
		args = append(args, "--lifespan", cfg.Lifespan)
	}
	if cfg.Prefetch > 0 {
		// A one-thread WSGI worker then watches the socket while a long
		// request runs, so it can answer RECALL (docs/protocol.md).
		args = append(args, "--prefetch", strconv.Itoa(cfg.Prefetch))
	}
	for _, d := range cfg.PythonPath {
		args = append(args, "--pythonpath", d)
	}
	cmd := exec.Command(cfg.Python, args...)
	cmd.Dir = cfg.Chdir
	cmd.Env = workerEnv(os.Environ(), cfg.AdapterDir, cfg.Env)
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{theirs} // fd 3
	err = cmd.Start()
	theirs.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		conn.Close()
		outR.Close()
		errR.Close()
		return nil, &BootError{Message: fmt.Sprintf("cannot run %s: %v", cfg.Python, err)}
	}

	w := &Worker{
		cfg:     cfg,
		log:     log,
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		conn:    conn,
		exited:  make(chan struct{}),
		done:    make(chan struct{}),
		outDone: make(chan struct{}),
		errDone: make(chan struct{}),
		rdDone:  make(chan struct{}),
	}
	prefix := "[worker " + strconv.Itoa(cfg.ID) + "] "
	go copyLines(outR, cfg.Output, prefix, &w.tail, w.outDone)
	go copyLines(errR, cfg.Output, prefix, &w.tail, w.errDone)
	go w.wait()

	if err := w.handshake(ctx); err != nil {
		w.Kill()
		<-w.exited
		w.conn.Close()
		close(w.rdDone)
		return nil, err
	}
	w.wr = wire.NewWriter(conn)
	go w.readLoop()
	if cfg.HeartbeatTimeout > 0 {
		go w.heartbeat(cfg.HeartbeatTimeout)
	}
	return w, nil
}

// check refuses a Config that lacks a required setting: the defaults
// live in config.Default, and a caller that forgot one must not get a
// different value than krait serve would use.
func (c *Config) check() error {
	var missing []string
	if c.Python == "" {
		missing = append(missing, "Python")
	}
	if c.App == "" {
		missing = append(missing, "App")
	}
	if c.Interface == "" {
		missing = append(missing, "Interface")
	}
	if c.Threads < 1 {
		missing = append(missing, "Threads")
	}
	if c.BootTimeout <= 0 {
		missing = append(missing, "BootTimeout")
	}
	if len(missing) > 0 {
		return fmt.Errorf("worker %d: incomplete config, set %s (from config.Default)", c.ID, strings.Join(missing, ", "))
	}
	return nil
}

// workerEnv is krait's environment plus PYTHONPATH (the adapter first) and
// the configured variables, later entries overriding earlier ones.
func workerEnv(base []string, adapterDir string, extra []string) []string {
	env := make([]string, 0, len(base)+len(extra)+1)
	pythonPath := adapterDir
	for _, kv := range base {
		if v, ok := strings.CutPrefix(kv, "PYTHONPATH="); ok {
			if v != "" && adapterDir != "" {
				pythonPath = adapterDir + string(os.PathListSeparator) + v
			} else if adapterDir == "" {
				pythonPath = v
			}
			continue
		}
		env = append(env, kv)
	}
	if pythonPath != "" {
		env = append(env, "PYTHONPATH="+pythonPath)
	}
	env = append(env, extra...)
	return env
}

// wait reaps the process, then makes sure the reader ends even if some
// grandchild still holds the worker's end of the socket.
func (w *Worker) wait() {
	err := w.cmd.Wait()
	w.state = w.cmd.ProcessState
	if w.state == nil && err != nil {
		w.waitErr = err
	}
	// The process is gone even if its socket lives on in a child that
	// inherited it (a fork()ed multiprocessing worker): no new streams.
	w.gone.Store(true)
	close(w.exited)
	// Frames the worker wrote before exiting are still in the socket
	// buffer: give the reader time to drain them before closing.
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	select {
	case <-w.rdDone:
	case <-t.C:
		w.conn.Close()
	}
}

// outputTail waits briefly for the output pipes to drain and returns the
// last lines the worker printed.
func (w *Worker) outputTail() string {
	t := time.NewTimer(2 * time.Second)
	defer t.Stop()
	for _, ch := range []chan struct{}{w.outDone, w.errDone} {
		select {
		case <-ch:
		case <-t.C:
		}
	}
	return w.tail.String()
}

// LastOutput returns the last lines the worker printed (stdout and stderr
// interleaved as they came, without the "[worker N]" prefix): at most
// maxLines lines and maxBytes bytes, cut at a line start, without the
// final newline. It waits up to 2 s for the output pipes to drain, so call
// it once Done is closed: the crash-loop log shows why the worker died.
func (w *Worker) LastOutput(maxLines, maxBytes int) string {
	return lastLines(w.outputTail(), maxLines, maxBytes)
}

func lastLines(s string, maxLines, maxBytes int) string {
	s = strings.TrimRight(s, "\n")
	if len(s) > maxBytes {
		// One byte more: a cut right after a newline keeps a whole line.
		s = s[len(s)-maxBytes-1:]
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:] // drop the partial first line
		} else {
			s = s[1:]
		}
	}
	start := len(s)
	for range maxLines {
		j := strings.LastIndexByte(s[:start], '\n')
		if j < 0 {
			return s
		}
		start = j
	}
	return s[start+1:]
}

func (w *Worker) handshake(ctx context.Context) error {
	deadline := time.Now().Add(w.cfg.BootTimeout)
	w.conn.SetReadDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { w.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	w.rd = wire.NewReader(w.conn)
	h, p, err := w.rd.ReadFrame()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("starting worker %d: %w", w.cfg.ID, ctx.Err())
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.Kill()
			<-w.exited
			return &BootError{Message: fmt.Sprintf("the worker did not report ready within %s; its last output:\n%s",
				w.cfg.BootTimeout, w.outputTail())}
		}
		if errors.Is(err, wire.ErrProtocol) {
			return fmt.Errorf("worker %d handshake: %w", w.cfg.ID, err)
		}
		// The socket closed: the process is exiting or gone.
		t := time.NewTimer(5 * time.Second)
		defer t.Stop()
		select {
		case <-w.exited:
		case <-t.C:
			w.Kill()
			<-w.exited
		}
		return &BootError{Message: fmt.Sprintf("the worker exited (%s) before it was ready; its last output:\n%s",
			w.exitString(), w.outputTail())}
	}
	w.conn.SetReadDeadline(time.Time{})
	if h.Type != wire.Hello || h.Stream != 0 {
		return fmt.Errorf("worker %d handshake: %w: got %s on stream %d, want HELLO", w.cfg.ID, wire.ErrProtocol, h.Type, h.Stream)
	}
	hello, err := parseHello(p)
	if err != nil {
		return fmt.Errorf("worker %d handshake: %w", w.cfg.ID, err)
	}
	if hello.version != ProtocolVersion {
		return fmt.Errorf("worker %d handshake: %w: protocol version %d, krait speaks %d (adapter %s)",
			w.cfg.ID, wire.ErrProtocol, hello.version, ProtocolVersion, hello.adapter)
	}
	if hello.status != "ready" {
		msg := hello.errText
		if msg == "" {
			msg = "the worker reported status " + strconv.Quote(hello.status) + " without an error message"
		}
		return &BootError{Message: msg}
	}
	if hello.capacity < 1 || hello.capacity > UnlimitedCapacity {
		return fmt.Errorf("worker %d handshake: %w: capacity %d", w.cfg.ID, wire.ErrProtocol, hello.capacity)
	}
	w.iface = hello.iface
	w.capacity = int(min(hello.capacity, MaxStreams))
	w.adapter = hello.adapter
	w.django = hello.django
	if w.iface == "wsgi" {
		// ASGI workers run every stream at once: nothing to prefetch.
		w.prefetch = min(max(w.cfg.Prefetch, 0), MaxStreams)
	}
	size := 8
	for size < 2*(w.capacity+w.prefetch) {
		size *= 2
	}
	w.table = make([]tableEntry, size)
	w.mask = uint32(size - 1)
	w.nextID = 1
	w.log.Debug("worker ready", "pid", w.pid, "interface", w.iface, "capacity", w.capacity, "adapter", w.adapter)
	return nil
}

type hello struct {
	version  int64
	adapter  string
	pid      int64
	iface    string
	status   string
	errText  string
	capacity int64
	django   *Django // the optional 8th item; nil without it
}

// Django is what a worker hosting a configured Django project reports of
// its settings in HELLO (protocol.md, Handshake): each "" when the
// setting is None or unset. Values are as the settings give them; the
// caller decides which are servable (path URLs, absolute roots).
type Django struct {
	StaticURL, StaticRoot, MediaURL, MediaRoot string
}

// Django returns the Django settings the worker reported in its HELLO,
// nil when its app is not a configured Django project.
func (w *Worker) Django() *Django { return w.django }

func parseHello(p []byte) (hello, error) {
	var h hello
	d := wire.NewDecoder(p)
	_, n, err := d.Seq()
	if err != nil {
		return h, fmt.Errorf("HELLO: %w", err)
	}
	if n != 7 && n != 8 {
		return h, fmt.Errorf("HELLO: %w: a tuple of %d items, want 7 or 8", wire.ErrProtocol, n)
	}
	str := func() string {
		if err != nil {
			return ""
		}
		var s []byte
		_, s, err = d.Str()
		return string(s)
	}
	num := func() int64 {
		if err != nil {
			return 0
		}
		var v int64
		v, err = d.Int()
		return v
	}
	h.version = num()
	h.adapter = str()
	h.pid = num()
	h.iface = str()
	h.status = str()
	h.errText = str()
	h.capacity = num()
	if err == nil && n == 8 {
		// The last item: Decode takes the rest whole, so trailing bytes
		// after it are refused there.
		h.django, err = parseDjango(d.Rest())
		d = wire.NewDecoder(nil)
	}
	if err == nil && !d.Done() {
		err = fmt.Errorf("%w: trailing bytes", wire.ErrProtocol)
	}
	if err != nil {
		return h, fmt.Errorf("HELLO: %w", err)
	}
	return h, nil
}

// parseDjango decodes HELLO's 8th item: None, or a dict of str keys to
// str or None. Unknown keys are ignored, so that later adapters may add
// some without a protocol version bump.
func parseDjango(b []byte) (*Django, error) {
	v, err := wire.Decode(b)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	dict, ok := v.(wire.Dict)
	if !ok {
		return nil, fmt.Errorf("%w: item 8 is a %T, want a dict", wire.ErrProtocol, v)
	}
	dj := &Django{}
	for _, kv := range dict {
		key, ok := kv[0].(string)
		if !ok {
			return nil, fmt.Errorf("%w: item 8 has a %T key, want str", wire.ErrProtocol, kv[0])
		}
		var val string
		switch x := kv[1].(type) {
		case nil:
		case string:
			val = x
		default:
			return nil, fmt.Errorf("%w: item 8's %q is a %T, want str or None", wire.ErrProtocol, key, kv[1])
		}
		switch key {
		case "static_url":
			dj.StaticURL = val
		case "static_root":
			dj.StaticRoot = val
		case "media_url":
			dj.MediaURL = val
		case "media_root":
			dj.MediaRoot = val
		}
	}
	return dj, nil
}

func (w *Worker) exitString() string {
	if w.state != nil {
		return w.state.String()
	}
	if w.waitErr != nil {
		return w.waitErr.Error()
	}
	return "still running"
}
