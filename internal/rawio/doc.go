// Package rawio reads and writes non-blocking sockets without handing the
// P to the Go runtime for each system call, for per-request I/O: the
// HTTP/1.1 engine (internal/h1) uses it for its client connections, and a
// worker socket can use it by handing a Conn to wire.NewReader and
// wire.NewWriter.
//
// # Why
//
// net.Conn's Read and Write go through syscall.Syscall, whose entersyscall
// and exitsyscall mark the goroutine's P as "in a syscall" for the
// duration of the call. When krait's Go front shares a core with a Python
// worker (one core per worker is the usual deployment, and what the
// benchmarks measure), that costs on every request:
//
//   - a Go thread preempted inside such a call (by the worker it just
//     woke, or by anything else on the core) leaves its P in the syscall
//     state long enough for sysmon to retake it and start another thread
//     to run it: the process's work ends up split over two threads handing
//     the P back and forth, with a futex wake-up and a context switch each
//     time;
//   - once every P has been idle (all connections waiting), sysmon sleeps
//     until the next entersyscall wakes it, and then polls every 20 µs for
//     at least a millisecond: dozens of context switches on the shared core
//     per burst of requests.
//
// Measured on WSGI hello world with the server on one core (December
// 2026): sysmon alone used about 3 µs of CPU per request (a tenth of the
// Go side), and the Go work was spread over two threads. With raw calls on
// both the client and the worker sockets, sysmon used 0.2 µs per request
// and one thread did all the Go work; on the client sockets alone, sysmon
// still wakes for the worker socket's calls.
//
// A raw call (syscall.RawSyscall) keeps its P. That is right for calls
// that cannot block: the sockets are non-blocking (the netpoller made them
// so), EAGAIN means "wait in the netpoller" (syscall.RawConn's Read and
// Write do that, without a P, and honour the deadlines set on the
// connection), and a write copies at most the socket's free send buffer.
// Blocking calls (sendfile of a whole file, the ordinary net.Conn paths
// for anything else) keep the ordinary path.
//
// # Where it applies
//
// Linux builds without the race detector. Elsewhere, and with -race (so
// that the detector sees the kernel's writes into read buffers, which
// syscall.Read annotates and a raw call does not), a Conn uses the
// net.Conn's own Read and Write, and ReadFD is syscall.Read. So does a
// Conn on a connection without a syscall.RawConn (test pipes, wrapped
// connections such as PROXY protocol ones).
//
// # Concurrency
//
// A Conn keeps the state of one read and one write, so that a call
// allocates nothing: one Read may run concurrently with one Write (or
// Writev), but two Reads, or two Writes, must not overlap. An h1
// connection satisfies that (its reads happen on its own goroutine, its
// writes under the response mutex), and so would a worker socket (one
// reading goroutine, and wire.Writer writes from one goroutine at a time).
package rawio
