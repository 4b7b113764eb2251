// Package h1 is krait's HTTP/1.1 server engine for cleartext connections.
//
// It serves an exchange.Handler and exists because net/http costs too much
// per request for krait's budget (about 10 µs of Go CPU per proxied request
// on one core): the engine parses in place, reuses every per-request
// structure and allocates nothing on the keep-alive hot path (a GET with a
// few headers answered with a small body). net/http remains the engine for
// TLS and HTTP/2.
//
// # Design
//
// One goroutine per connection. Read and write buffers (4 KiB) come from
// sync.Pools and are held only while a request is read or served: a
// connection waiting for its next request (or its first) gives both back
// and waits for readability with no buffer at all, taking a read buffer
// from the pool only once bytes can be read (syscall.RawConn; connections
// without one, such as test pipes, read into a pooled buffer). After
// waiting idleGrace (1 s; when IdleTimeout is over 2 s) it continues on a
// fresh goroutine with the rest of its idle timeout, so the stack its
// handler grew is freed too: an idle keep-alive connection costs about
// 7 KiB of RSS (16 KiB before), most of it the minimal goroutine stack and
// the conn struct. The read buffer grows on demand (doubling) up to
// 2×MaxHeaderBytes+8 KiB (a head, plus a trailer section behind it while
// the handler runs); growth beyond the first 4 KiB is reserved from a
// budget shared by all connections (a HeadBudget, which several Servers
// may share: krait gives every listener's engine the same one, of
// config.HTTP.MaxHeadMemory, 64 MiB by default): a connection that would
// exceed it gets 503 and is closed. A grown buffer
// is dropped, and its budget given back, as soon as its connection is idle
// or closed; after a burst of 16 MiB or more of large heads has drained,
// the engine returns the freed memory to the operating system at once
// (debug.FreeOSMemory, at most once per burst), since an idle Go process
// would keep it resident for minutes. A request's Method, Target, Path,
// Query, Headers and Host alias the read buffer, which is never moved or
// reused below the head while the handler runs (and must not be used
// after it returns: the buffer goes back to the pool). Bodies are
// streamed to the handler through Request.Body and never buffered whole;
// large reads go straight from the socket into the caller's slice.
//
// Responses are buffered and written when the engine is about to block on
// a read (so pipelined requests already received are answered in one
// write), when the buffer fills, or when the handler calls Flush. The Date
// header is formatted once per second for the whole process. Read and write
// deadlines are re-armed only when they would move by more than an eighth
// of the timeout, so keep-alive requests rarely touch the timer heap.
//
// The per-request socket I/O (the idle read of a request's first bytes,
// the rest of its head, body reads into the connection's buffer, the
// response writes) goes through internal/rawio: raw system calls on the
// non-blocking socket, inside syscall.RawConn's Read and Write, so that a
// request does not hand its P to the runtime (entersyscall) for each call,
// which on a core shared with a Python worker woke sysmon and moved the
// P between threads on every request. Reads straight into a handler's
// slice (large bodies), sendfile and the watcher's reads keep net.Conn's
// path. Race-detector builds and systems other than Linux use net.Conn's
// Read and Write throughout.
//
// # Strictness
//
// Parsing follows RFC 9112 and RFC 9110 and refuses, with a short
// text/plain error and Connection: close, before the handler sees
// anything: malformed request lines and methods (including lowercase
// methods, as gunicorn and nginx do, and methods over 32 bytes: the
// longest registered one has 17), targets with anything but VCHARs (CTLs,
// DEL, and raw bytes >= 0x80, which must be percent-encoded, as h11 and
// uvicorn require; the VCHARs RFC 3986 leaves out, such as '|' and '{',
// are tolerated as nginx and net/http do) or the wrong form
// for the method (asterisk-form only for OPTIONS, authority-form only and
// always for CONNECT, absolute-form only for http and https), versions
// other than HTTP/1.0 and HTTP/1.1 (505), lines not ended by CRLF (bare LF
// is refused everywhere), invalid field names, whitespace before the colon,
// obs-fold, CTLs (bare CR, NUL, DEL, ...) in values, HTTP/1.1 without Host
// and repeated Host (RFC 9112 §3.2), any repeated Content-Length or a
// non-digit one, repeated Content-Type, Transfer-Encoding together with
// Content-Length, Transfer-Encoding on HTTP/1.0, a Transfer-Encoding whose
// final coding is not chunked (400) or that names an unknown coding (501),
// and expectations other than 100-continue (417). Limits: request line
// (414), field count, field size and the whole head (MaxHeaderBytes, 32
// KiB by default like nginx's large_client_header_buffers: 431, refused
// as soon as that many bytes arrived without the end of the head), head
// timeout (HeaderTimeout, from a head's first byte: 408), head-memory
// budget (503). Body reads have an inactivity limit of their own
// (BodyTimeout, HeaderTimeout unless set; re-armed on every read: a
// steady slow upload is not cut, a stalled one is); a read that times out fails with
// os.ErrDeadlineExceeded and the handler answers it (408 from
// internal/dispatch).
//
// Connection bound: Servers sharing a ConnLimit (Config.ConnLimit, from
// --max-connections) hold at most that many connections open together.
// At the bound Serve stops calling Accept until one closes, so new
// clients wait in the kernel's listen backlog rather than being refused;
// the slot is taken before Accept and given back when the connection is
// untracked (closed, hijacked or not). Shutdown and Close end a wait
// for a slot. Idle keep-alive connections hold their slots until
// KeepAlive (75 s by default) closes them.
//
// Deliberate choices where the RFCs leave room, mostly matching gunicorn's
// test corpus: "identity" in Transfer-Encoding is ignored; known content
// codings before a final chunked (gzip, deflate, compress) are accepted and
// passed to the application undecoded, with the header visible; fields
// whose names contain '_' are dropped (nginx and gunicorn default), since
// CGI-style environments would confuse them with '-'; empty lines before a
// request line are skipped; a fragment in the target is left out of
// Request.Path and Request.Query; in absolute-form the target's authority
// becomes Request.Host.
//
// Errors in a chunked body (bad sizes, missing CRLF, forbidden trailer
// fields such as Content-Length or Host) are found while the handler reads
// the body: its Read fails with the error, and if no response has started
// when the handler returns (whether it wrote nothing or called Abort, as a
// proxying handler pumping the body on another goroutine does) the engine
// answers 400 and closes. The error is recorded under the response lock,
// and the engine writes the 400 only after the handler returned, so it
// never races the handler's own writes. A request is never handed to the
// handler with a body that reads cleanly to io.EOF unless it is valid.
//
// # Responses
//
// The engine adds Date and "Server: krait" unless the handler set them,
// Content-Length when the length is known, chunked framing otherwise
// (close-delimited for HTTP/1.0), and Connection as the protocol needs.
// HEAD, 204 and 304 responses never carry body bytes. A handler that writes
// no header gets 500; one that writes less than its Content-Length gets the
// connection closed after it, and Abort closes without a final chunk.
// Unread request bodies up to 256 KiB are drained for keep-alive, larger
// ones close the connection. Expect: 100-continue is answered on the first
// Body.Read, never before.
//
// The ResponseWriter also implements exchange.TrailerWriter (trailer fields
// after the last chunk of a chunked body; dropped when the body is not
// chunked) and exchange.Hijacker (for WebSocket upgrades: the handler gets
// the connection and the bytes already received, and speaks another
// protocol on it; the connection stays tracked by Shutdown and Close and is
// closed by the engine when the handler returns). A handler may read the
// body on one goroutine while it writes the response on another: the
// response side is serialized with the body reader's flushes by a mutex.
//
// # Request context
//
// Request.Ctx is a context owned by the connection and reused from request
// to request (reqCtx), so it costs no allocation: its Done channel is made
// only when first asked for and kept until it is closed. It is cancelled
// (context.Canceled) when the watcher finds the client gone and, for
// every connection, by Close (and so by a Shutdown whose context ended);
// a graceful Shutdown leaves it live. It is reset when the next request
// on the connection starts, so a handler must not keep it past Serve. It
// implements AfterFunc, so contexts derived with context.WithTimeout or
// WithCancel start no goroutine.
//
// Request.Watch starts a watcher goroutine only when called, once the body
// has been read: it reads from the connection and cancels the request's
// context on EOF or error; bytes it reads ahead (a pipelined request) are
// kept.
//
// Settings: Config embeds config.HTTP, whose defaults are declared once,
// in config.Default; New fills a zero field from there.
//
// Locking: a conn's fields belong to its goroutine except state (atomic),
// gone (goneWatch.mu), ctx (reqCtx.mu; cancelled from the watcher while
// holding goneWatch.mu, and from Close while holding Server.mu: reqCtx.mu
// is always taken last) and the response side (wmu).
package h1
