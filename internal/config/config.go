package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/krait-server/krait/internal/compress"
	"github.com/krait-server/krait/internal/forwarded"
)

// Bind is one address krait listens on.
type Bind struct {
	// Network is the net.Listen network: "tcp4" for an IPv4 literal,
	// "tcp6" for an IPv6 literal, "tcp" for [::] (IPv6 and IPv4, as
	// gunicorn binds it), a host name or an empty host, "unix" for a socket.
	Network string
	Address string // "127.0.0.1:8000", "[::1]:8000" or a socket path
}

func (b Bind) String() string {
	if b.Network == "unix" {
		return "unix:" + b.Address
	}
	return b.Address
}

// Serve is everything `krait serve` needs. The zero value is not useful:
// build it with ParseServe, which fills in defaults and validates.
type Serve struct {
	// Worker is what each Python worker process runs and how
	// (App, Python, Threads, BootTimeout, ...): passed whole to the
	// supervisor and on to each worker. Its fields are promoted
	// (s.App, s.Threads).
	Worker

	// Binds are the addresses to listen on; default 127.0.0.1:8000.
	Binds []Bind

	// Workers is the number of Python worker processes (default
	// $WEB_CONCURRENCY, else 1; "auto" is runtime.GOMAXPROCS(0)). With
	// autoscaling it is the minimum.
	Workers int
	// MaxWorkers, when above Workers, turns on the autoscaler: workers
	// are added up to it while requests queue and removed down to
	// Workers after ScaleDownAfter without need (scale.go). 0 = off.
	MaxWorkers     int
	ScaleDownAfter time.Duration

	// WSMaxSize is the largest WebSocket message accepted, in bytes
	// (larger ones close the connection with 1009).
	WSMaxSize int64
	// WSPingInterval is how often krait pings an idle WebSocket client
	// (0 = never); WSPingTimeout is how long it waits for the pong.
	WSPingInterval, WSPingTimeout time.Duration
	// WSPerMessageDeflate offers permessage-deflate compression to
	// WebSocket clients that ask for it.
	WSPerMessageDeflate bool

	// GracefulTimeout bounds how long a stop waits for in-flight requests.
	GracefulTimeout time.Duration
	// MaxQueue is how many requests may wait for a free worker slot, per
	// worker; beyond it requests are answered 503.
	MaxQueue int
	// MaxRequests recycles a worker after this many requests, plus a
	// random 0..MaxRequestsJitter per worker (0 = never). MaxRSSMiB
	// recycles one whose resident memory exceeds it (0 = never);
	// MaxLifetime one that ran this long (0 = never). A recycled worker's
	// successor boots first; the old one drains, never killed mid-request.
	MaxRequests, MaxRequestsJitter int
	MaxRSSMiB                      int
	MaxLifetime                    time.Duration

	// Reload (development) watches the app's sources (Chdir, PythonPath)
	// and reloads the workers, as SIGHUP does, when a *.py file or one
	// matching a ReloadInclude glob changes (internal/devreload).
	Reload        bool
	ReloadInclude []string

	// AccessLog is the access log destination: "" (none), "-" (stdout) or a path.
	AccessLog string
	// ErrorLog is the error log destination: "-" (stderr, default) or a path.
	ErrorLog string
	// LogLevel is the minimum level of the error log.
	LogLevel slog.Level

	// MaxBodySize is the largest request body accepted, in bytes (413
	// beyond it, before a worker is involved when the body is announced
	// or buffered); 0 = no limit.
	MaxBodySize int64
	// BufferBody is the largest request body read whole before a worker
	// slot is taken, in bytes; larger bodies stream to the worker.
	BufferBody int64
	// MaxConnections bounds the client connections open at once over
	// all listeners (0 = no bound); at the bound krait stops accepting
	// until one closes.
	MaxConnections int

	// HTTP is the HTTP/1.1 engine's limits and timeouts, passed whole to
	// internal/h1. Its fields are promoted (s.KeepAlive).
	HTTP

	// Static are the --static mounts, in the order given: files served
	// by Go under a URL prefix, without the Python workers.
	Static []StaticMount
	// StaticMaxAge is the Cache-Control max-age of static files whose
	// names carry no content hash (whole seconds; 0 sends no-cache).
	StaticMaxAge time.Duration
	// ServeMedia also serves a Django project's MEDIA_URL from
	// MEDIA_ROOT (STATIC_URL from STATIC_ROOT always is; see
	// internal/server). Off by default: user uploads are the app's.
	ServeMedia bool

	// MetricsBind is where Prometheus metrics, /healthz and /readyz are
	// served, on a listener of their own (never routed to the app); nil
	// serves none.
	MetricsBind *Bind
	// ShutdownDelay is how long a graceful stop keeps serving, with
	// /readyz answering 503, before the listeners close: time for a load
	// balancer to notice the instance is going away.
	ShutdownDelay time.Duration

	// TLS holds the TLS, HTTP/2 and ACME settings (see tls.go).
	TLS TLS

	// PIDFile is --pid: a file krait writes its pid to after binding and
	// removes at exit ("" = none). Absolute.
	PIDFile string
	// User and Group are --user/--group: the account (name or number)
	// krait switches to after binding, before starting the workers; ""
	// keeps the current one. Group defaults to the user's primary group.
	User, Group string
	// UDSMode is --uds-mode: the permissions of the unix sockets krait
	// binds (nil = as bound, i.e. 0777 minus the umask).
	UDSMode *os.FileMode
	// BindGiven reports whether --bind was given. Without it, krait
	// serves every socket systemd passes it (socket activation) instead
	// of DefaultBind.
	BindGiven bool

	// ForwardedAllowIPs are the peers trusted to send forwarding headers
	// and PROXY protocol headers (--forwarded-allow-ips, else
	// $FORWARDED_ALLOW_IPS; "*" trusts all). Unix socket peers always are.
	ForwardedAllowIPs []netip.Prefix
	// ForwardedHeaders are the forwarding headers applied from them.
	ForwardedHeaders forwarded.Headers
	// ProxyProtocol makes every listener require a PROXY protocol v1/v2
	// header on each connection.
	ProxyProtocol bool
	// Compress says which app responses are compressed and how; no
	// Codings (--compress off) compresses nothing. See front.go.
	Compress compress.Config

	// BufferResponse is --buffer-response: once a client falls behind, a
	// response is read from its worker as fast as the worker writes it
	// and spooled, in memory up to this many bytes per response, then in
	// an unlinked temporary file in BufferDir ("" = os.TempDir()) of at
	// most MaxTempFileSize bytes (0 = memory only). 0 turns spooling
	// off: a slow client then holds its worker. BufferResponseMemory
	// bounds the spool memory of all responses together; beyond it they
	// spool to disk directly.
	BufferResponse       int64
	BufferDir            string
	MaxTempFileSize      int64
	BufferResponseMemory int64
}

// Worker is the settings of one Python worker process: what it runs and
// how. internal/supervisor passes it unchanged to internal/worker, so a
// new worker setting is a field here, a flag in ParseServe and its use in
// internal/worker.
type Worker struct {
	// App is the WSGI/ASGI application, "MODULE:CALLABLE" (or "MODULE",
	// meaning MODULE:application).
	App string
	// Threads is the number of WSGI threads per worker (default 1).
	Threads int
	// Prefetch is how many requests beyond its threads krait may hand a
	// WSGI worker to wait in the worker's own queue, so that under load
	// it takes many requests per wake-up (0 = one per free thread, as
	// before). Only requests whose body is small enough to go whole with
	// the request are prefetched; one that waits there while another
	// worker could run it is recalled and run there. ASGI workers ignore
	// it (they run every request at once).
	Prefetch int

	// Python is the interpreter that runs the workers. Default:
	// $VIRTUAL_ENV/bin/python when VIRTUAL_ENV is set, else python3 on PATH.
	Python string
	// Chdir is the workers' working directory (also first on sys.path).
	Chdir string
	// PythonPath directories are prepended to the workers' sys.path.
	PythonPath []string
	// Env holds KEY=VALUE pairs added to the workers' environment.
	Env []string
	// Interface is "auto", "wsgi" or "asgi".
	Interface string

	// Loop is the ASGI event loop: "auto" (uvloop when installed), "asyncio" or "uvloop".
	Loop string
	// Lifespan is the ASGI lifespan mode: "auto", "on" or "off".
	Lifespan string
	// LimitConcurrency caps the ASGI requests one worker runs at once
	// (0 = no cap); above it requests wait in krait's queue.
	LimitConcurrency int

	// BootTimeout bounds how long a worker may take to import the app.
	BootTimeout time.Duration

	// Timeout is the hard limit on one HTTP request's time on a worker
	// (0 = none; WebSockets are exempt): over it the request is answered
	// 504, a WSGI worker is killed and replaced, an ASGI request's task
	// is cancelled.
	Timeout time.Duration
	// HeartbeatTimeout is how long a worker may leave a PING unanswered
	// (a blocked event loop, a GIL held forever) before it is killed and
	// replaced (0 = no heartbeat).
	HeartbeatTimeout time.Duration
}

// HTTP is the settings of krait's HTTP/1.1 engine (internal/h1), passed
// to it whole. The fields without a flag yet have their one default here
// too: a flag for them touches only ParseServe.
type HTTP struct {
	// LimitRequestLine caps the request line in bytes (414 beyond it).
	LimitRequestLine int
	// LimitRequestFields caps the number of header fields (431 beyond it).
	LimitRequestFields int
	// LimitRequestFieldSize caps one header field line in bytes (431 beyond it).
	LimitRequestFieldSize int
	// KeepAlive is how long an idle keep-alive connection stays open.
	KeepAlive time.Duration
	// HeaderTimeout is how long a client may take to send a request head.
	HeaderTimeout time.Duration

	// MaxHeaderBytes caps a whole request head (431 beyond it); the
	// engine raises it to hold a request line and one field at their
	// limits. nginx's large_client_header_buffers (4 × 8 KiB) hold the
	// same; Go's net/http allows 1 MiB, which let 1,000 clients hold a
	// gigabyte with unfinished heads.
	MaxHeaderBytes int
	// MaxHeadMemory is the read-buffer memory all connections of all
	// listeners together may hold for heads larger than 4 KiB (503
	// beyond it).
	MaxHeadMemory int64
	// WriteTimeout bounds each write to a client.
	WriteTimeout time.Duration
	// BodyTimeout is how long a read of a request body may wait for the
	// client's next bytes (408, or the connection closed, beyond it);
	// unless --body-timeout is given, it is HeaderTimeout.
	BodyTimeout time.Duration
}

// StaticMount is one --static URL_PREFIX=DIR.
type StaticMount struct {
	Prefix string // "/static": starts with '/', one spelling (see parseStatic)
	Dir    string // absolute path of an existing directory
}

// UsageError is a bad command line: a flag, a value or a missing argument.
// The CLI prints it and exits with status 2.
type UsageError struct {
	Flag   string // the flag or argument at fault, e.g. "--workers"
	Reason string
}

func (e *UsageError) Error() string {
	if e.Flag == "" {
		return e.Reason
	}
	return e.Flag + ": " + e.Reason
}

// ErrHelp is returned when the user asked for --help; usage has been printed.
var ErrHelp = flag.ErrHelp

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// seconds is a duration flag given in (possibly fractional) seconds, as
// gunicorn's are; a Go duration ("1m30s") is accepted too.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return ""
	}
	return strconv.FormatFloat(s.d.Seconds(), 'f', -1, 64)
}

func (s seconds) Set(v string) error {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > 1e9 {
			return errors.New("must be a number of seconds >= 0")
		}
		*s.d = time.Duration(f * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return errors.New("must be a number of seconds >= 0 (or a duration like 90s)")
	}
	*s.d = d
	return nil
}

// ServeUsage is the help text of `krait serve`.
const ServeUsage = `Usage: krait serve MODULE:CALLABLE [flags]

Runs the WSGI or ASGI application MODULE:CALLABLE (MODULE alone means
MODULE:application) in a pool of Python worker processes behind krait's
HTTP server. Flags may come before or after MODULE:CALLABLE.

Flags:
`

// DefaultBind is where krait listens when no --bind is given.
const DefaultBind = "127.0.0.1:8000"

// Default returns the settings `krait serve` uses for every flag that is
// not given. It is the one place krait's defaults are declared: the flag
// help prints these values, and the packages below (server, dispatch,
// supervisor, worker, h1) receive every value explicitly from a Serve.
// App, Binds and Python have no static default: ParseServe fills them in
// (Binds from DefaultBind, Python from the environment).
func Default() Serve {
	return Serve{
		Worker: Worker{
			Threads:          1,
			Prefetch:         8,
			Interface:        "auto",
			Loop:             "auto",
			Lifespan:         "auto",
			LimitConcurrency: 0,
			BootTimeout:      120 * time.Second,
			Timeout:          0,
			HeartbeatTimeout: 30 * time.Second,
		},
		Workers:             1,
		ScaleDownAfter:      30 * time.Second,
		WSMaxSize:           16 << 20,
		WSPingInterval:      20 * time.Second,
		WSPingTimeout:       20 * time.Second,
		WSPerMessageDeflate: true,
		GracefulTimeout:     30 * time.Second,
		MaxQueue:            1024,
		AccessLog:           "",
		ErrorLog:            "-",
		LogLevel:            slog.LevelInfo,
		HTTP: HTTP{
			LimitRequestLine:      4094,
			LimitRequestFields:    100,
			LimitRequestFieldSize: 8190,
			KeepAlive:             75 * time.Second,
			HeaderTimeout:         10 * time.Second,
			MaxHeaderBytes:        32 << 10,
			MaxHeadMemory:         64 << 20,
			WriteTimeout:          60 * time.Second,
			BodyTimeout:           10 * time.Second, // HeaderTimeout's
		},
		BufferBody: 1 << 20,
		// Response spooling: 1 MiB in memory per slow client (most pages
		// and API answers whole), 64 MiB for all of them, and nginx's
		// proxy_max_temp_file_size (1 GiB) on disk.
		BufferResponse:       1 << 20,
		MaxTempFileSize:      1 << 30,
		BufferResponseMemory: 64 << 20,
		// An hour bounds how long browsers keep a file a deploy replaced
		// under the same name; after it a revalidation costs a 304.
		// Fingerprinted names get a year whatever this says.
		StaticMaxAge: time.Hour,
		TLS:          defaultTLS(),
		// Forwarding headers from 127.0.0.1 and ::1, as gunicorn and
		// uvicorn; compression as the compress package declares it.
		ForwardedAllowIPs: forwarded.DefaultTrusted(),
		ForwardedHeaders:  forwarded.DefaultHeaders,
		Compress:          compress.Defaults(),
	}
}

// ParseServe parses the arguments of `krait serve` (without the word
// "serve"). getenv and lookPath are injected for tests; nil means the real
// os.Getenv and exec.LookPath. Usage and flag errors are written to out.
//
// Errors are *UsageError values that name the flag as the user wrote it
// ("-w", "--workers", "-workers", "-c"), so the message points at what
// was typed.
func ParseServe(args []string, out io.Writer, getenv func(string) string, lookPath func(string) (string, error)) (*Serve, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	if lookPath == nil {
		lookPath = exec.LookPath
	}
	def := Default()
	s := &def
	var binds, pythonPath, env stringList
	var statics stringList
	var metricsBind string
	logLevel := strings.ToLower(s.LogLevel.String())

	fs := flag.NewFlagSet("krait serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by the caller
	fs.Usage = func() {}
	both := func(short, long string, v flag.Value, usage string) {
		fs.Var(v, long, usage)
		if short != "" {
			fs.Var(v, short, "shorthand for --"+long)
		}
	}
	intVar := func(short, long string, p *int, usage string) {
		fs.IntVar(p, long, *p, usage)
		if short != "" {
			fs.IntVar(p, short, *p, "shorthand for --"+long)
		}
	}
	both("b", "bind", &binds, "address to listen on: HOST:PORT, [::1]:PORT or unix:/path.sock; repeatable (default "+DefaultBind+")")
	validateScale := scaleFlags(fs, s, getenv)
	intVar("", "threads", &s.Threads, "WSGI threads per worker")
	fs.IntVar(&s.Prefetch, "prefetch", s.Prefetch, "requests beyond its threads a WSGI worker may be handed to queue itself, so it takes many per wake-up; ones that could run sooner elsewhere are taken back (0 = none)")
	fs.StringVar(&s.Python, "python", "", "Python interpreter for the workers (default $VIRTUAL_ENV/bin/python, else python3 on PATH)")
	fs.StringVar(&s.Chdir, "chdir", "", "working directory of the workers, put first on sys.path (default: the current directory)")
	fs.Var(&pythonPath, "pythonpath", "directory to prepend to sys.path; repeatable")
	fs.Var(&env, "env", "KEY=VALUE to set in the workers' environment; repeatable")
	fs.StringVar(&s.Interface, "interface", s.Interface, "application interface: auto, wsgi or asgi")
	fs.StringVar(&s.Loop, "loop", s.Loop, "ASGI event loop: auto (uvloop when installed), asyncio or uvloop")
	fs.StringVar(&s.Lifespan, "lifespan", s.Lifespan, "ASGI lifespan: auto, on or off")
	fs.IntVar(&s.LimitConcurrency, "limit-concurrency", s.LimitConcurrency, "ASGI requests one worker runs at once; more wait in the queue (0 = no limit)")
	fs.Int64Var(&s.WSMaxSize, "ws-max-size", s.WSMaxSize, "largest WebSocket message in bytes; larger ones close with 1009")
	fs.Var(seconds{&s.WSPingInterval}, "ws-ping-interval", "seconds between WebSocket pings (0 = no pings)")
	fs.Var(seconds{&s.WSPingTimeout}, "ws-ping-timeout", "seconds to wait for a WebSocket pong before closing")
	fs.BoolVar(&s.WSPerMessageDeflate, "ws-per-message-deflate", s.WSPerMessageDeflate, "offer permessage-deflate compression to WebSocket clients (--ws-per-message-deflate=false to turn off)")
	fs.Var(seconds{&s.GracefulTimeout}, "graceful-timeout", "seconds a stop waits for in-flight requests")
	fs.Var(seconds{&s.BootTimeout}, "boot-timeout", "seconds a worker may take to import the app")
	fs.Var(seconds{&s.Timeout}, "timeout", "hard limit in seconds on one HTTP request's time on a worker: over it the answer is 504 and a WSGI worker is killed and replaced, an ASGI task cancelled (0 = none; WebSockets are exempt)")
	fs.Var(seconds{&s.HeartbeatTimeout}, "heartbeat-timeout", "seconds a worker may leave krait's ping unanswered (a blocked event loop) before it is killed and replaced (0 = no heartbeat)")
	fs.IntVar(&s.MaxQueue, "max-queue", s.MaxQueue, "requests that may wait for a free worker slot, per worker; more get 503")
	fs.IntVar(&s.MaxRequests, "max-requests", s.MaxRequests, "recycle a worker after this many requests: its successor starts first, then it drains and exits (0 = never)")
	fs.IntVar(&s.MaxRequestsJitter, "max-requests-jitter", s.MaxRequestsJitter, "add a random 0..N to each worker's --max-requests so workers do not recycle together")
	fs.IntVar(&s.MaxRSSMiB, "max-rss", s.MaxRSSMiB, "recycle a worker whose resident memory exceeds this many MiB, sampled (0 = never)")
	fs.Var(seconds{&s.MaxLifetime}, "max-lifetime", "recycle a worker after it ran this long, in seconds or a duration like 1h (0 = never)")
	var reloadInclude stringList
	fs.BoolVar(&s.Reload, "reload", false, "development: reload the workers when a *.py file under --chdir or --pythonpath changes; a change that fails to import keeps the old workers serving")
	fs.Var(&reloadInclude, "reload-include", "with --reload, also reload when a file matching this glob (e.g. '*.html') changes; repeatable")
	fs.StringVar(&s.AccessLog, "access-logfile", s.AccessLog, "access log file, '-' for stdout (default: none)")
	fs.StringVar(&s.ErrorLog, "error-logfile", s.ErrorLog, "error log file, '-' for stderr")
	fs.StringVar(&logLevel, "log-level", logLevel, "error log level: debug, info, warning, error")
	fs.IntVar(&s.LimitRequestLine, "limit-request-line", s.LimitRequestLine, "maximum request line size in bytes (414 beyond)")
	fs.IntVar(&s.LimitRequestFields, "limit-request-fields", s.LimitRequestFields, "maximum number of request header fields (431 beyond)")
	fs.IntVar(&s.LimitRequestFieldSize, "limit-request-field_size", s.LimitRequestFieldSize, "maximum size of one request header line in bytes (431 beyond)")
	fs.Var(seconds{&s.KeepAlive}, "keep-alive", "seconds an idle keep-alive connection is kept open")
	fs.Var(seconds{&s.HeaderTimeout}, "header-timeout", "seconds a client may take to send a request's headers")
	fs.Var(seconds{&s.BodyTimeout}, "body-timeout", "seconds a request body read may wait for the client's next bytes (408 beyond; default: --header-timeout)")
	fs.Int64Var(&s.MaxBodySize, "max-body-size", s.MaxBodySize, "largest request body in bytes; larger ones get 413 without reaching a worker (0 = no limit)")
	fs.IntVar(&s.MaxConnections, "max-connections", s.MaxConnections, "client connections open at once; at the bound new ones wait in the listen backlog until one closes (0 = no bound)")
	fs.Int64Var(&s.BufferBody, "buffer-body", s.BufferBody, "request bodies up to this many bytes are received and checked whole before a worker is taken (0 = stream every body)")
	fs.Var(&statics, "static", "URL_PREFIX=DIR: serve the files of DIR under URL_PREFIX from Go, without the app; repeatable")
	fs.BoolVar(&s.ServeMedia, "serve-media", false, "also serve a Django project's MEDIA_URL from MEDIA_ROOT from Go, as STATIC_URL is from STATIC_ROOT")
	fs.Var(seconds{&s.StaticMaxAge}, "static-max-age", "Cache-Control max-age in seconds of static files without a content hash in their name (0 = no-cache)")
	fs.StringVar(&metricsBind, "metrics-bind", "", "address (HOST:PORT or unix:/path.sock) serving Prometheus /metrics, /healthz and /readyz (default: none)")
	validateTLS := tlsFlags(fs, &s.TLS)
	validateFront := frontFlags(fs, s, getenv)
	fs.Var(seconds{&s.ShutdownDelay}, "shutdown-delay", "seconds a stop keeps serving with /readyz answering 503 before the listeners close")
	fs.StringVar(&s.PIDFile, "pid", "", "file to write krait's pid to after binding; removed at exit (default: none)")
	fs.StringVar(&s.User, "user", "", "user (name or uid) to switch to after binding, before starting the workers (krait must start as root)")
	fs.StringVar(&s.Group, "group", "", "group (name or gid) to switch to after binding (default: the --user's primary group)")
	var udsMode string
	fs.StringVar(&udsMode, "uds-mode", "", "octal permissions of the unix sockets krait binds, e.g. 0660 (default: 0777 minus the umask)")
	fs.Int64Var(&s.BufferResponse, "buffer-response", s.BufferResponse, "once a client falls behind, its response is read from the worker at once and held in memory up to this many bytes, then in a temporary file, so a slow client never holds a worker (0 = off)")
	fs.StringVar(&s.BufferDir, "buffer-dir", "", "directory of the temporary files of spooled responses (default: $TMPDIR or /tmp)")
	fs.Int64Var(&s.MaxTempFileSize, "max-temp-file-size", s.MaxTempFileSize, "largest temporary file of one spooled response; past it the worker waits for the client (0 = spool in memory only)")
	fs.Int64Var(&s.BufferResponseMemory, "buffer-response-memory", s.BufferResponseMemory, "memory all spooled responses together may hold; beyond it they spool to temporary files")

	// name gives a flag (by its long name) as the user spelled it, for
	// messages; occurrence i of a repeatable flag has its own spelling.
	spelled := flagSpellings(fs, args)
	name := func(long string) string { return spelled.last(long) }

	var positional []string
	rest := args
	for {
		if err := fs.Parse(rest); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(out, ServeUsage)
				printFlags(out, fs)
				return nil, ErrHelp
			}
			// The flag package has consumed the offending token(s):
			// find the flag there to name it as the user wrote it.
			return nil, flagError(err, rest[:len(rest)-len(fs.Args())])
		}
		rest = fs.Args()
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		rest = rest[1:]
	}

	switch len(positional) {
	case 0:
		return nil, &UsageError{Flag: "MODULE:CALLABLE", Reason: "missing: name the application to serve, e.g. krait serve mysite.wsgi:application"}
	case 1:
		s.App = positional[0]
	default:
		return nil, &UsageError{Flag: positional[1], Reason: "unexpected argument: krait serve takes one application"}
	}
	if err := validateApp(s.App); err != nil {
		return nil, err
	}

	defaultBinds := len(binds) == 0
	if len(binds) == 0 {
		binds = stringList{DefaultBind}
	}
	for i, b := range binds {
		bind, err := ParseBind(b)
		if err != nil {
			return nil, &UsageError{Flag: spelled.nth("bind", i), Reason: err.Error()}
		}
		s.Binds = append(s.Binds, bind)
	}

	if err := validateScale(name); err != nil {
		return nil, err
	}
	if s.Threads < 1 || s.Threads > 10000 {
		return nil, &UsageError{Flag: name("threads"), Reason: fmt.Sprintf("%d is out of range: must be between 1 and 10000", s.Threads)}
	}
	if s.Prefetch < 0 || s.Prefetch > 1000 {
		return nil, &UsageError{Flag: name("prefetch"), Reason: fmt.Sprintf("%d is out of range: must be between 0 and 1000", s.Prefetch)}
	}
	if s.MaxRequests < 0 || s.MaxRequestsJitter < 0 || s.MaxRSSMiB < 0 {
		return nil, &UsageError{Flag: name("max-requests"), Reason: "--max-requests, --max-requests-jitter and --max-rss must not be negative"}
	}
	if s.MaxQueue < 0 {
		return nil, &UsageError{Flag: name("max-queue"), Reason: fmt.Sprintf("%d is negative: use 0 to answer 503 whenever every worker is busy", s.MaxQueue)}
	}
	switch s.Interface {
	case "auto", "wsgi", "asgi":
	default:
		return nil, &UsageError{Flag: name("interface"), Reason: fmt.Sprintf("%q is not one of auto, wsgi, asgi", s.Interface)}
	}
	switch s.Loop {
	case "auto", "asyncio", "uvloop":
	default:
		return nil, &UsageError{Flag: name("loop"), Reason: fmt.Sprintf("%q is not one of auto, asyncio, uvloop", s.Loop)}
	}
	switch s.Lifespan {
	case "auto", "on", "off":
	default:
		return nil, &UsageError{Flag: name("lifespan"), Reason: fmt.Sprintf("%q is not one of auto, on, off", s.Lifespan)}
	}
	if s.LimitConcurrency < 0 {
		return nil, &UsageError{Flag: name("limit-concurrency"), Reason: fmt.Sprintf("%d is negative: use 0 for no limit", s.LimitConcurrency)}
	}
	if s.WSMaxSize < 1 {
		return nil, &UsageError{Flag: name("ws-max-size"), Reason: fmt.Sprintf("%d is not a positive number of bytes", s.WSMaxSize)}
	}
	lvl, err := ParseLevel(logLevel)
	if err != nil {
		return nil, &UsageError{Flag: name("log-level"), Reason: err.Error()}
	}
	s.LogLevel = lvl
	for _, lim := range []struct {
		name     string
		v, lo, h int
	}{
		{"limit-request-line", s.LimitRequestLine, 64, 1 << 20},
		{"limit-request-fields", s.LimitRequestFields, 1, 32768},
		{"limit-request-field_size", s.LimitRequestFieldSize, 64, 1 << 20},
	} {
		if lim.v < lim.lo || lim.v > lim.h {
			return nil, &UsageError{Flag: name(lim.name), Reason: fmt.Sprintf("%d is out of range: must be between %d and %d", lim.v, lim.lo, lim.h)}
		}
	}
	if s.BootTimeout <= 0 {
		return nil, &UsageError{Flag: name("boot-timeout"), Reason: "must be greater than 0"}
	}
	if s.HeaderTimeout <= 0 {
		return nil, &UsageError{Flag: name("header-timeout"), Reason: "must be greater than 0"}
	}
	if s.KeepAlive <= 0 {
		return nil, &UsageError{Flag: name("keep-alive"), Reason: "must be greater than 0"}
	}
	bodyTimeoutGiven := false
	fs.Visit(func(f *flag.Flag) { bodyTimeoutGiven = bodyTimeoutGiven || f.Name == "body-timeout" })
	if !bodyTimeoutGiven {
		s.BodyTimeout = s.HeaderTimeout
	} else if s.BodyTimeout <= 0 {
		return nil, &UsageError{Flag: name("body-timeout"), Reason: "must be greater than 0"}
	}
	if s.MaxConnections < 0 {
		return nil, &UsageError{Flag: name("max-connections"), Reason: "must be >= 0 (0 = no bound)"}
	}
	if s.MaxBodySize < 0 {
		return nil, &UsageError{Flag: name("max-body-size"), Reason: "must be >= 0 (0 = no limit)"}
	}
	if s.BufferBody < 0 || s.BufferBody > 1<<30 {
		return nil, &UsageError{Flag: name("buffer-body"), Reason: "must be between 0 and 1073741824"}
	}
	if s.BufferResponse < 0 || s.BufferResponse > 1<<30 {
		return nil, &UsageError{Flag: name("buffer-response"), Reason: "must be between 0 and 1073741824 (0 = off)"}
	}
	if s.MaxTempFileSize < 0 {
		return nil, &UsageError{Flag: name("max-temp-file-size"), Reason: "must be >= 0 (0 = no temporary file)"}
	}
	if s.BufferResponseMemory < 1 {
		return nil, &UsageError{Flag: name("buffer-response-memory"), Reason: "must be a positive number of bytes"}
	}
	if s.BufferDir != "" {
		abs, err := filepath.Abs(s.BufferDir)
		if err != nil {
			return nil, &UsageError{Flag: name("buffer-dir"), Reason: err.Error()}
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return nil, &UsageError{Flag: name("buffer-dir"), Reason: fmt.Sprintf("%s is not a directory", s.BufferDir)}
		}
		s.BufferDir = abs
	}
	for i, kv := range env {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, "\x00") {
			return nil, &UsageError{Flag: spelled.nth("env", i), Reason: fmt.Sprintf("%q is not KEY=VALUE", kv)}
		}
	}
	s.Env = env

	if s.Chdir != "" {
		abs, err := filepath.Abs(s.Chdir)
		if err != nil {
			return nil, &UsageError{Flag: name("chdir"), Reason: err.Error()}
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return nil, &UsageError{Flag: name("chdir"), Reason: fmt.Sprintf("%s is not a directory", s.Chdir)}
		}
		s.Chdir = abs
	}
	for i, p := range pythonPath {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, &UsageError{Flag: spelled.nth("pythonpath", i), Reason: err.Error()}
		}
		s.PythonPath = append(s.PythonPath, abs)
	}

	for i, p := range reloadInclude {
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, &UsageError{Flag: spelled.nth("reload-include", i), Reason: fmt.Sprintf("bad glob %q: %v", p, err)}
		}
	}
	if len(reloadInclude) > 0 && !s.Reload {
		return nil, &UsageError{Flag: spelled.nth("reload-include", 0), Reason: "needs --reload"}
	}
	s.ReloadInclude = reloadInclude
	if s.Reload {
		// Python's bytecode cache trusts the source's mtime in whole
		// seconds and its size: a same-size edit within the second of
		// the last import would reload stale code. First, so that --env
		// can still override it.
		s.Env = append([]string{"PYTHONDONTWRITEBYTECODE=1"}, s.Env...)
	}

	for i, v := range statics {
		m, err := parseStatic(v)
		if err != nil {
			return nil, &UsageError{Flag: spelled.nth("static", i), Reason: err.Error()}
		}
		for _, prev := range s.Static {
			if prev.Prefix == m.Prefix {
				return nil, &UsageError{Flag: spelled.nth("static", i), Reason: fmt.Sprintf("prefix %s is already served from %s", m.Prefix, prev.Dir)}
			}
		}
		s.Static = append(s.Static, m)
	}

	if metricsBind != "" {
		b, err := ParseBind(metricsBind)
		if err != nil {
			return nil, &UsageError{Flag: name("metrics-bind"), Reason: err.Error()}
		}
		s.MetricsBind = &b
	}

	if err := validateTLS(name); err != nil {
		return nil, err
	}
	if err := validateFront(name); err != nil {
		return nil, err
	}

	if err := validateOS(s, udsMode, !defaultBinds, name); err != nil {
		return nil, err
	}

	py, err := resolvePython(s.Python, getenv, lookPath)
	if err != nil {
		return nil, &UsageError{Flag: name("python"), Reason: err.Error()}
	}
	s.Python = py
	return s, nil
}

// flagError turns the flag package's message into a UsageError in the
// same "flag: reason" shape as our own checks. consumed are the arguments
// the failed Parse call used up; the flag at fault is among them, spelled
// as the user wrote it ("-c" stays "-c", "--workers=x" is "--workers").
func flagError(err error, consumed []string) error {
	msg := err.Error()
	// asWritten finds the token that named flag n (as the flag package
	// reports it, without dashes), searching from the end.
	asWritten := func(n string) string {
		for i := len(consumed) - 1; i >= 0; i-- {
			if dashes, name, _, ok := splitFlag(consumed[i]); ok && name == n {
				return dashes + name
			}
		}
		return "--" + n // not found: cannot happen with the flag package's messages
	}
	// "invalid value "x" for flag -workers: parse error"
	if i := strings.Index(msg, " for flag -"); i >= 0 && strings.HasPrefix(msg, "invalid value ") {
		n, reason, _ := strings.Cut(msg[i+len(" for flag -"):], ": ")
		switch reason {
		case "parse error":
			reason = "is not a whole number"
		case "value out of range":
			reason = "is out of range"
		}
		return &UsageError{Flag: asWritten(n), Reason: msg[len("invalid value "):i] + " " + reason}
	}
	// "invalid boolean value "x" for -ws-per-message-deflate: parse error"
	if i := strings.Index(msg, " for -"); i >= 0 && strings.HasPrefix(msg, "invalid boolean value ") {
		n, _, _ := strings.Cut(msg[i+len(" for -"):], ": ")
		return &UsageError{Flag: asWritten(n), Reason: msg[len("invalid boolean value "):i] + " is not true or false"}
	}
	if n, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return &UsageError{Flag: asWritten(n), Reason: "unknown flag"}
	}
	if n, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return &UsageError{Flag: asWritten(n), Reason: "needs a value"}
	}
	if bad, ok := strings.CutPrefix(msg, "bad flag syntax: "); ok {
		return &UsageError{Flag: bad, Reason: "is not a flag (see krait serve --help)"}
	}
	return &UsageError{Reason: msg}
}

// splitFlag splits a command-line token "-name", "--name" or
// "--name=value" into its dashes and name; ok is false for anything else.
func splitFlag(tok string) (dashes, name string, hasValue, ok bool) {
	if len(tok) < 2 || tok[0] != '-' {
		return "", "", false, false
	}
	dashes, name = "-", tok[1:]
	if name[0] == '-' {
		dashes, name = "--", name[1:]
	}
	name, _, hasValue = strings.Cut(name, "=")
	if name == "" || name[0] == '-' || name[0] == '=' {
		return "", "", false, false
	}
	return dashes, name, hasValue, true
}

// spellings records how the user wrote each flag, by long name, in order
// of occurrence: "-w", "--workers" or "-workers".
type spellings map[string][]string

// flagSpellings scans args the way the flag package parses them (a
// non-boolean flag without "=" takes the next argument as its value).
func flagSpellings(fs *flag.FlagSet, args []string) spellings {
	sp := spellings{}
	for i := 0; i < len(args); i++ {
		if args[i] == "--" {
			i++ // the next argument is positional, then parsing resumes
			continue
		}
		dashes, name, hasValue, ok := splitFlag(args[i])
		if !ok {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue
		}
		long := name
		if l, isShort := shorthands[name]; isShort {
			long = l
		}
		sp[long] = append(sp[long], dashes+name)
		if b, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool && b.IsBoolFlag() {
			continue
		}
		if !hasValue {
			i++
		}
	}
	return sp
}

// last is the spelling of the flag's last occurrence (the one whose value
// counts), "--long" when the flag was not given.
func (sp spellings) last(long string) string {
	if s := sp[long]; len(s) > 0 {
		return s[len(s)-1]
	}
	return "--" + long
}

// nth is the spelling of the flag's i-th occurrence.
func (sp spellings) nth(long string, i int) string {
	if s := sp[long]; i < len(s) {
		return s[i]
	}
	return "--" + long
}

// printFlags lists the flags gunicorn-style ("-b, --bind"), long names
// with two dashes, shorthand entries folded into their long flag.
func printFlags(out io.Writer, fs *flag.FlagSet) {
	short := map[string]string{}
	for s, l := range shorthands {
		short[l] = s
	}
	fs.VisitAll(func(f *flag.Flag) {
		if _, isShort := shorthands[f.Name]; isShort {
			return
		}
		name := "    --" + f.Name
		if s, ok := short[f.Name]; ok {
			name = "-" + s + ", --" + f.Name
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "[]" && f.DefValue != "0" || f.Name == "max-queue" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(out, "  %s\n        %s%s\n", name, f.Usage, def)
	})
}

// shorthands maps one-letter flags to the long name used in messages.
var shorthands = map[string]string{"b": "bind", "w": "workers"}

func validateApp(app string) error {
	mod, attr, hasColon := strings.Cut(app, ":")
	if mod == "" || (hasColon && attr == "") || strings.ContainsAny(app, " \t/") {
		return &UsageError{Flag: "MODULE:CALLABLE", Reason: fmt.Sprintf("%q is not of the form module.path:callable", app)}
	}
	return nil
}

// ParseBind parses a --bind value.
func ParseBind(v string) (Bind, error) {
	if path, ok := strings.CutPrefix(v, "unix:"); ok {
		if path == "" {
			return Bind{}, fmt.Errorf("%q: unix: needs a socket path", v)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return Bind{}, fmt.Errorf("%q: %w", v, err)
		}
		return Bind{Network: "unix", Address: abs}, nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return Bind{}, fmt.Errorf("%q is not HOST:PORT, [IPv6]:PORT or unix:PATH", v)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return Bind{}, fmt.Errorf("%q: port %q is not a number from 0 to 65535", v, port)
	}
	if strings.ContainsAny(host, " /") {
		return Bind{}, fmt.Errorf("%q: %q is not a host name or IP address", v, host)
	}
	return Bind{Network: tcpNetwork(host), Address: net.JoinHostPort(host, port)}, nil
}

// tcpNetwork picks the address family a --bind host asks for. Go's "tcp"
// listens dual-stack on a wildcard address, so 0.0.0.0 would also take
// [::]:PORT: an IPv4 literal gets "tcp4" and an IPv6 literal "tcp6", as
// gunicorn binds them. [::] alone keeps "tcp", both families, as
// gunicorn's [::] does on Linux; names resolve at listen time.
func tcpNetwork(host string) string {
	addr, err := netip.ParseAddr(host)
	switch {
	case err != nil:
		return "tcp"
	case addr.Is4():
		return "tcp4"
	case addr.IsUnspecified(), addr.Is4In6():
		return "tcp"
	default:
		return "tcp6"
	}
}

// ParseLevel maps a --log-level name to a slog level.
func ParseLevel(v string) (slog.Level, error) {
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error", "critical":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q is not one of debug, info, warning, error", v)
}

func resolvePython(explicit string, getenv func(string) string, lookPath func(string) (string, error)) (string, error) {
	if explicit != "" {
		p, err := lookPath(explicit)
		if err != nil {
			return "", fmt.Errorf("%s is not an executable interpreter: %w", explicit, err)
		}
		// Workers run in --chdir, so a relative interpreter path must not
		// depend on krait's own working directory. Symlinks stay as they
		// are: a venv's bin/python is a symlink whose path selects the venv.
		return filepath.Abs(p)
	}
	if venv := getenv("VIRTUAL_ENV"); venv != "" {
		p := filepath.Join(venv, "bin", "python")
		if _, err := lookPath(p); err == nil {
			return p, nil
		}
		return "", fmt.Errorf("VIRTUAL_ENV is %s but %s is not executable; pass --python", venv, p)
	}
	p, err := lookPath("python3")
	if err != nil {
		return "", errors.New("python3 is not on PATH; pass --python /path/to/python")
	}
	return p, nil
}

// parseStatic parses a --static value, URL_PREFIX=DIR. The prefix is
// matched against raw request paths, so it must have exactly one
// spelling: it starts with '/', is not "/" (that would hide the app),
// and has no '%', '?', '#', whitespace, control bytes, or empty, "." or
// ".." segments. A trailing '/' is dropped ("/static/" is "/static").
// DIR must exist and be a directory; it is made absolute.
func parseStatic(v string) (StaticMount, error) {
	prefix, dir, ok := strings.Cut(v, "=")
	if !ok || prefix == "" || dir == "" {
		return StaticMount{}, fmt.Errorf("%q is not URL_PREFIX=DIR (e.g. /static=./staticfiles)", v)
	}
	return NewStaticMount(prefix, dir)
}

// NewStaticMount checks a URL prefix and a directory as --static does
// (the prefix in its one spelling, the directory made absolute and
// required to exist); internal/server uses it for Django's STATIC_URL.
func NewStaticMount(prefix, dir string) (StaticMount, error) {
	if prefix == "" || dir == "" {
		return StaticMount{}, errors.New("empty URL prefix or directory")
	}
	if prefix[0] != '/' {
		return StaticMount{}, fmt.Errorf("prefix %q must start with '/'", prefix)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return StaticMount{}, errors.New("prefix \"/\" would hide the app: serve static files under a prefix such as /static")
	}
	for _, c := range []byte(prefix) {
		switch {
		case c <= ' ' || c >= 0x7f:
			return StaticMount{}, fmt.Errorf("prefix %q contains whitespace, a control or a non-ASCII byte", prefix)
		case c == '%' || c == '?' || c == '#':
			return StaticMount{}, fmt.Errorf("prefix %q contains %q: write the path unencoded, without query or fragment", prefix, c)
		}
	}
	for _, seg := range strings.Split(prefix[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return StaticMount{}, fmt.Errorf("prefix %q has an empty, \".\" or \"..\" segment", prefix)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return StaticMount{}, fmt.Errorf("directory %s: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case err != nil:
		return StaticMount{}, fmt.Errorf("directory %s: %w", dir, err)
	case !fi.IsDir():
		return StaticMount{}, fmt.Errorf("%s is not a directory", dir)
	}
	return StaticMount{Prefix: prefix, Dir: abs}, nil
}

// validateOS checks the operating-system integration flags: --pid made
// absolute (krait's working directory is not the workers'), --group only
// with --user, --uds-mode an octal permission set.
func validateOS(s *Serve, udsMode string, bindGiven bool, name func(string) string) error {
	s.BindGiven = bindGiven
	if s.PIDFile != "" {
		abs, err := filepath.Abs(s.PIDFile)
		if err != nil {
			return &UsageError{Flag: name("pid"), Reason: err.Error()}
		}
		s.PIDFile = abs
	}
	if s.Group != "" && s.User == "" {
		return &UsageError{Flag: name("group"), Reason: "needs --user (krait changes group and user together, after binding)"}
	}
	if udsMode != "" {
		m, err := strconv.ParseUint(udsMode, 8, 32)
		if err != nil || m > 0o777 {
			return &UsageError{Flag: name("uds-mode"), Reason: fmt.Sprintf("%q is not octal permissions from 0000 to 0777, e.g. 0660", udsMode)}
		}
		mode := os.FileMode(m)
		s.UDSMode = &mode
	}
	return nil
}
