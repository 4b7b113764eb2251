"""The WSGI (PEP 3333) side of the worker.

One Stream per request: it is the request's wsgi.input, its start_response
(a bound method) and its response sender. Two workers drive streams:

- InlineWorker (--threads 1, the default): the main thread runs the app
  itself. While the app waits for request body bytes or for response window
  credit, the same thread reads frames from the socket and dispatches them.
- ThreadedWorker (--threads N > 1): the main thread reads frames and hands
  requests to N threads; socket writes are serialized by a lock and stream
  state is guarded by one worker-wide lock.

Both are protocol.Dispatcher subclasses and Stream is a protocol.StreamBase:
the stream table and the checks of K's frames are the ones the ASGI worker
uses; this module adds wsgi.input, start_response and running the app.

The hot path (hello world: a body list that fits the initial window) is one
recv, one marshal.loads, one app call, one marshal.dumps and one sendall.
"""

import io
import marshal
import os
import queue
import select
import socket
import stat
import sys
import threading
import time
from collections import deque

from .protocol import (
    BODY_500,
    DATA,
    END_STREAM,
    EXIT_OK,
    HEADER,
    INITIAL_WINDOW,
    MAX_HEAD,
    MAX_PAYLOAD,
    RESPONSE,
    SENDFILE,
    WINDOW,
    WS_CLOSE,
    WS_MESSAGE,
    Dispatcher,
    ProtocolError,
    StreamBase,
    exit_now,
    frames_500,
    head_too_large,
    kept_frame,
    log_exception,
    protocol_error,
    reset_frame,
    returned_frame,
)

_dumps = marshal.dumps
_pack = HEADER.pack

# Return request-body credit in batches of this many consumed bytes (and
# always before blocking for more), so K keeps streaming without a WINDOW
# frame per read.
CREDIT_BATCH = INITIAL_WINDOW // 4

# Largest offset/count the protocol's marshal subset can carry (int32).
_MAX_I32 = 0x7FFFFFFF

# Stream.buf before any body bytes came: most requests have none, so they
# need no bytearray of their own.
_NO_BODY = b""

_HEAD_500 = _dumps(
    (
        "500 Internal Server Error",
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(BODY_500))),
        ],
    ),
    2,
)


class StreamReset(ConnectionResetError):
    """krait reset the stream: the client is gone or krait gave up on it."""


class ErrorStream:
    """wsgi.errors: a text stream into sys.stderr, which krait logs.

    Looks sys.stderr up on every call so an app that swaps it is honored.
    """

    __slots__ = ()

    def write(self, s):
        return sys.stderr.write(s)

    def writelines(self, lines):
        sys.stderr.writelines(lines)

    def flush(self):
        sys.stderr.flush()


class FileWrapper:
    """wsgi.file_wrapper: iterates a file-like object in blocks.

    When the wrapped object is a regular file with a real path, the adapter
    does not iterate it but sends a SENDFILE frame and krait sends the bytes
    itself (sendfile(2) on the Go side).
    """

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class _NullLock:
    """Stands in for the worker lock when only one thread touches streams."""

    __slots__ = ()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL_LOCK = _NullLock()


def _as_bytes(chunk):
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(
        "WSGI response body items must be bytes, got %s" % type(chunk).__name__
    )


def _bad(msg):
    # PEP 3333 type errors are programming errors in the app: AssertionError
    # like wsgiref's, which the adapter turns into a 500.
    return AssertionError(msg)


def _clean_headers(headers):
    """Validate response headers; return (headers, content_length or None).

    headers must be a list (or tuple) of 2-tuples (or 2-lists) of str.
    """
    htype = type(headers)
    if htype is not list and htype is not tuple:
        raise _bad("response headers must be a list, got %s" % htype.__name__)
    cl = None
    for item in headers:
        if type(item) is not tuple or len(item) != 2:
            return _clean_headers_slow(headers)
        name, value = item
        if type(name) is not str or type(value) is not str:
            return _clean_headers_slow(headers)
        if len(name) == 14 and name.lower() == "content-length":
            v = value.strip()
            cl = int(v) if v.isdigit() else None
    return headers, cl


def _clean_headers_slow(headers):
    # Lists as items, str subclasses (marshal writes only exact str), or errors.
    fixed = []
    cl = None
    for item in headers:
        itype = type(item)
        if (itype is not tuple and itype is not list) or len(item) != 2:
            raise _bad("response header %r must be a (name, value) tuple" % (item,))
        name, value = item
        if not isinstance(name, str) or not isinstance(value, str):
            raise _bad("response header name and value must be str, got %r" % (item,))
        name, value = str(name), str(value)
        fixed.append((name, value))
        if len(name) == 14 and name.lower() == "content-length":
            v = value.strip()
            cl = int(v) if v.isdigit() else None
    return fixed, cl


# Status lines _check_status accepted (exact str): a repeated one is
# checked with one set lookup. Apps use a handful; the bound keeps an app
# that makes up reason phrases from growing it.
_GOOD_STATUS = set()
_GOOD_STATUS_MAX = 256


def _check_status(status):
    if type(status) is not str:
        if not isinstance(status, str):
            raise _bad("status must be a str like '200 OK', got %r" % (status,))
        status = str(status)
    if len(status) < 3 or not status[:3].isdigit() or (len(status) > 3 and status[3] != " "):
        raise _bad("status must look like '200 OK', got %r" % (status,))
    if len(_GOOD_STATUS) < _GOOD_STATUS_MAX:
        _GOOD_STATUS.add(status)
    return status


def _check_latin1(status, headers):
    try:
        status.encode("latin-1")
        for name, value in headers:
            name.encode("latin-1")
            value.encode("latin-1")
    except UnicodeEncodeError:
        raise _bad(
            "response status and headers must be latin-1 text (PEP 3333); "
            "encode other characters first"
        ) from None


class Stream(StreamBase):
    """One request/response exchange; also the request's wsgi.input.

    StreamBase's fields (eof, gone, the windows) and buf are guarded by
    lock, the worker's lock: its dispatch() holds it while K's frames
    change them.

    env["wsgi.input"] is the stream and the stream holds env: Worker.run
    drops st.env when the request ends, so reference counting frees both
    at once and the cyclic garbage collector never has per-request work.
    """

    __slots__ = (
        "worker",
        "env",
        "lock",
        "cond",
        # request body (K -> W)
        "buf",
        "unacked",
        # response (W -> K)
        "status",
        "headers",
        "cl",
        "sent",
        "started",
        "ended",
    )

    def __init__(self, worker, sid, env, eof):
        # StreamBase.__init__ inlined (one call less per request): the
        # same fields (test_adapter_fast checks every slot is set).
        self.id = sid
        self.eof = eof
        self.recv_room = INITIAL_WINDOW
        self.send_window = INITIAL_WINDOW
        self.gone = False
        self.worker = worker
        self.env = env
        self.lock = worker.lock
        self.cond = None
        self.buf = _NO_BODY  # a bytearray once body bytes arrive
        self.unacked = 0  # body bytes read by the app, not yet credited
        self.status = None
        self.headers = None
        self.cl = None
        self.sent = 0
        self.started = False
        self.ended = False

    # ---- frames from K (StreamBase.on_*, under the worker's lock) ----

    def on_message(self, payload, flags):
        # A threaded worker writes a stream's last frame before its thread
        # takes the stream out of the table: a frame K sent after seeing
        # that end is late, not a violation (as for a closed stream).
        if not self.ended:
            StreamBase.on_message(self, payload, flags)

    def on_close(self, payload):
        if not self.ended:
            StreamBase.on_close(self, payload)

    def buffer_body(self, payload):
        if self.buf:
            self.buf += payload
        else:
            self.buf = bytearray(payload)

    def wake(self):
        cond = self.cond
        if cond is not None:
            cond.notify_all()

    # ---- wsgi.input ----

    def _wait_data(self):
        """Block until body bytes, the end of the body, or a reset arrive.

        Returns request-body credit first (the spec requires it before
        blocking). The caller has taken every buffered byte.
        """
        if self.unacked and not self.eof and not self.gone:
            c = self.unacked
            self.unacked = 0
            self._send_credit(c)
        w = self.worker
        if w.threaded:
            with self.lock:
                while not self.buf and not self.eof and not self.gone:
                    self._cond_wait()
        else:
            while not self.buf and not self.eof and not self.gone:
                w.pump()

    def _cond_wait(self):
        cond = self.cond
        if cond is None:
            cond = self.cond = threading.Condition(self.lock)
        cond.wait()

    def _send_credit(self, c):
        with self.lock:
            frame = self.credit(c)
        self.worker.write(frame)

    def _consumed(self, n):
        if self.eof:
            return
        c = self.unacked + n
        if c >= CREDIT_BATCH:
            self.unacked = 0
            self._send_credit(c)
        else:
            self.unacked = c

    def read(self, size=-1):
        need = -1 if size is None or size < 0 else size
        if need == 0:
            if self.gone:
                raise StreamReset("the request was reset by krait")
            return b""
        return self._collect(need, False)

    def readline(self, size=-1):
        need = -1 if size is None or size < 0 else size
        if need == 0:
            return b""
        return self._collect(need, True)

    def _collect(self, need, to_newline):
        """Take up to need bytes (-1: all) from the body, stopping after the
        first newline when to_newline, waiting for DATA as needed."""
        parts = []
        while True:
            with self.lock:
                if self.gone:
                    raise StreamReset("the request was reset by krait")
                buf = self.buf
                end = len(buf)
                nl = buf.find(b"\n") if to_newline else -1
                if nl >= 0:
                    end = nl + 1
                if 0 <= need < end:
                    end = need
                    nl = -1
                if end == len(buf):
                    chunk = bytes(buf)
                    self.buf = _NO_BODY
                else:
                    chunk = bytes(buf[:end])
                    del buf[:end]
                done = nl >= 0 or (self.eof and not buf)
            if end:
                parts.append(chunk)
                self._consumed(end)
                if need > 0:
                    need -= end
                    if not need:
                        break
            if done:
                break
            self._wait_data()
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                break
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                break
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if line:
            return line
        raise StopIteration

    # ---- start_response / write ----

    def start_response(self, status, headers, exc_info=None):
        if exc_info is not None:
            try:
                if self.started:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise _bad("start_response() called a second time without exc_info")
        # A status line checked before costs one set lookup.
        if type(status) is not str or status not in _GOOD_STATUS:
            status = _check_status(status)
        # _clean_headers inlined for the usual list of (str, str) tuples;
        # anything else takes the general function.
        cl = None
        if type(headers) is list:
            for item in headers:
                if type(item) is not tuple or len(item) != 2:
                    headers, cl = _clean_headers_slow(headers)
                    break
                name, value = item
                if type(name) is not str or type(value) is not str:
                    headers, cl = _clean_headers_slow(headers)
                    break
                if len(name) == 14 and (name == "Content-Length" or name.lower() == "content-length"):
                    v = value.strip()
                    cl = int(v) if v.isdigit() else None
        else:
            headers, cl = _clean_headers(headers)
        self.status = status
        self.headers = headers
        self.cl = cl
        return self.write

    def write(self, data):
        if self.status is None:
            raise _bad("write() called before start_response()")
        if type(data) is not bytes:
            data = _as_bytes(data)
        if self.gone:
            raise StreamReset("the request was reset by krait")
        if data and not self.ended:
            self._send_body(data)

    # ---- response sending ----

    def _response_frame(self, flags):
        payload = _dumps((self.status, self.headers), 2)
        if not payload.isascii():
            _check_latin1(self.status, self.headers)
        if len(payload) > MAX_HEAD:
            self._check_head(payload)
        return _pack(len(payload), RESPONSE, flags, 0, self.id) + payload

    def _check_head(self, payload):
        # The app's error, before anything was sent: a 500 and this message
        # in the log, never a frame over the protocol's limit.
        msg = head_too_large(payload, self.headers, len(self.status))
        if msg is not None:
            raise _bad(msg)

    def _take_window(self, n):
        """Wait for send credit; reserve and return up to n bytes of it."""
        w = self.worker
        if w.threaded:
            with self.lock:
                while self.send_window <= 0 and not self.gone:
                    self._cond_wait()
                return self._reserve(n)
        while self.send_window <= 0 and not self.gone:
            w.pump()
        return self._reserve(n)

    def _reserve(self, n):
        if self.gone:
            raise StreamReset("the request was reset by krait")
        k = min(n, self.send_window, MAX_PAYLOAD)
        self.send_window -= k
        return k

    def _send_body(self, data):
        """Send non-empty body bytes now: RESPONSE first if not yet sent,
        END_STREAM when a declared Content-Length is reached."""
        end = 0
        cl = self.cl
        if cl is not None:
            room = cl - self.sent
            if room <= 0:
                return
            if len(data) >= room:
                data = data[:room]
                end = END_STREAM
        self.sent += len(data)
        if self.started:
            prefix = b""
        else:
            prefix = self._response_frame(0)
            self.started = True
        write = self.worker.write
        sid = self.id
        view = memoryview(data)
        left = len(data)
        off = 0
        while left:
            k = self._take_window(left)
            left -= k
            flags = end if not left else 0
            write(b"".join((prefix, _pack(k, DATA, flags, 0, sid), view[off:off + k])))
            prefix = b""
            off += k
        if end:
            self.ended = True

    def _finish(self):
        """End the stream after the body: RESPONSE or an empty DATA with
        END_STREAM."""
        if self.ended:
            return
        if not self.started:
            if self.status is None:
                raise _bad("the application returned without calling start_response()")
            frame = self._response_frame(END_STREAM)
        else:
            frame = _pack(0, DATA, END_STREAM, 0, self.id)
        self.started = self.ended = True
        self.worker.write(frame)

    def send_list(self, result):
        """Hot path: the whole body is known. One write when it fits."""
        if len(result) == 1:
            body = result[0]
            if type(body) is not bytes:
                body = _as_bytes(body)
        elif result:
            body = b"".join(result)
        else:
            body = b""
        status = self.status
        if status is None:
            raise _bad("the application returned without calling start_response()")
        if self.started:
            # write() was used first (every end sets started too): take
            # the general path.
            if body and not self.ended:
                self._send_body(body)
            self._finish()
            return
        size = len(body)
        cl = self.cl
        if cl is not None and size > cl:
            body = body[:cl]
            size = cl
        if size > INITIAL_WINDOW:
            self._send_body(body)
            self._finish()
            return
        # _response_frame inlined: RESPONSE and DATA in one write.
        headers = self.headers
        head = _dumps((status, headers), 2)
        if not head.isascii():
            _check_latin1(status, headers)
        if len(head) > MAX_HEAD:
            self._check_head(head)
        sid = self.id
        if size:
            frame = b"".join(
                (_pack(len(head), RESPONSE, 0, 0, sid), head,
                 _pack(size, DATA, END_STREAM, 0, sid), body)
            )
        else:
            frame = _pack(len(head), RESPONSE, END_STREAM, 0, sid) + head
        self.sent = size
        self.started = self.ended = True
        self.worker.write(frame)

    def send_iter(self, result):
        """Stream each chunk as the app yields it."""
        poll = None if self.worker.threaded else self.worker.poll
        for chunk in result:
            if type(chunk) is not bytes:
                chunk = _as_bytes(chunk)
            if chunk and not self.ended:
                if self.status is None:
                    raise _bad("the application yielded body bytes before start_response()")
                self._send_body(chunk)
            if poll is not None and not self.ended:
                # Notice a RESET (or window credit) before the next chunk.
                poll()
            if self.gone:
                raise StreamReset("the request was reset by krait")
        self._finish()

    def try_sendfile(self, wrapper):
        """Answer with a SENDFILE frame when wrapper holds a regular file with
        a real path; return False to fall back to iterating it."""
        if self.status is None or self.ended:
            return False
        f = wrapper.filelike
        try:
            if isinstance(f, io.TextIOBase):
                return False
            name = f.name
            if type(name) is not str:
                return False
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return False
            st2 = os.stat(name)
            if st2.st_ino != st.st_ino or st2.st_dev != st.st_dev:
                return False
            offset = f.tell()
            path = os.path.abspath(name)
        except (AttributeError, OSError, ValueError, TypeError):
            return False
        count = st.st_size - offset
        if self.cl is not None:
            count = min(count, self.cl - self.sent)
        if count <= 0:
            self._finish()
            return True
        if offset + count > _MAX_I32:
            # The protocol's int is 32-bit: stream large files as DATA.
            return False
        payload = _dumps((path, offset, count), 2)
        frame = _pack(len(payload), SENDFILE, END_STREAM, 0, self.id) + payload
        if not self.started:
            frame = self._response_frame(0) + frame
        self.sent += count
        self.started = self.ended = True
        self.worker.write(frame)
        return True

    def end_with_reset(self, reason):
        if not self.ended:
            self.started = self.ended = True
            self.worker.write(reset_frame(self.id, reason))

    def end_with_500(self):
        self.started = self.ended = True
        self.worker.write(frames_500(self.id, _HEAD_500))


class Worker(Dispatcher):
    """What both worker kinds share: the stream table (Dispatcher) and
    running the app for one stream."""

    threaded = False

    def __init__(self, sock, app, threads):
        Dispatcher.__init__(self)
        self.sock = sock
        self.app = app
        self.threads = threads
        self.base = {
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.input_terminated": True,
        }

    def run(self, st):
        """Call the app for one stream and send its response."""
        if st.gone:
            # K gave up on it before it started: do not run the app at all.
            st.end_with_reset("stream reset by krait")
            self._done(st)
            return
        env = st.env
        env.update(self.base)
        env["wsgi.input"] = st
        result = None
        try:
            result = self.app(env, st.start_response)
            rtype = type(result)
            if rtype is list or rtype is tuple:
                st.send_list(result)
                result = None  # an exact list or tuple has no close()
            elif rtype is FileWrapper and st.try_sendfile(result):
                pass
            else:
                st.send_iter(result)
        except StreamReset:
            if not st.gone:
                self._app_error(st)
        except Exception:
            self._app_error(st)
        finally:
            if result is not None:
                close = getattr(result, "close", None)
                if close is not None:
                    try:
                        close()
                    except StreamReset:
                        pass
                    except Exception:
                        self._app_error(st, "close() of the response iterable failed")
            if not st.ended:
                st.end_with_reset("stream reset by krait" if st.gone else "response not finished")
            self._done(st)
            # env["wsgi.input"] is st: break the cycle so both are freed
            # now, not by the garbage collector.
            st.env = None

    def _app_error(self, st, what="error in the application"):
        env = st.env
        log_exception(what, "stream %d, %s %s" % (
            st.id, env.get("REQUEST_METHOD", "?"), env.get("RAW_URI") or env.get("PATH_INFO", "?")))
        if st.ended:
            return
        if st.gone:
            st.end_with_reset("stream reset by krait")
        elif st.started:
            exc = sys.exc_info()[1]
            st.end_with_reset("application error after the response started: %s" % type(exc).__name__)
        else:
            st.end_with_500()


# How long one request must run before a one-thread worker with prefetch
# starts reading the socket beside it (to answer RECALL and PING), and the
# slices in which that reader then holds the socket.
WATCH_TICK = 0.02
WATCH_SLICE = 0.005

# K's frames the watcher leaves to the main thread: they change the state
# of a stream the app may be using.
_DEFERRED = frozenset((DATA, WINDOW, WS_MESSAGE, WS_CLOSE))


class InlineWorker(Worker):
    """--threads 1: the app runs on the thread that reads the socket.

    Requests K sends while one runs wait in self.pending and run in arrival
    order. With prefetch (K may queue requests here, docs/protocol.md,
    "Prefetch and recall"), a watcher thread reads the socket while one
    request has run longer than WATCH_TICK, so that RECALL is answered (a
    queued request goes back to K and runs elsewhere) and PING too while
    the app blocks. Then: the socket and the frame buffer belong to whoever
    holds rlock; the watcher dispatches REQUEST, RECALL, RESET, PING and
    SHUTDOWN itself and queues DATA, WINDOW and WS_* (which change a stream
    the app may be using) in self.deferred for the main thread, which runs
    them under rlock before it reads or starts a request; writes are
    serialized by send_lock. Taking a stream from pending (deque.popleft,
    main thread) and giving it back (deque.remove, RECALL) are each atomic,
    so a stream is either started or returned, never both.
    """

    def __init__(self, sock, app, threads=1, prefetch=0):
        super().__init__(sock, app, threads)
        self.lock = _NULL_LOCK
        self.pending = deque()
        self.running = None   # the stream the app runs now (main thread)
        self.run_t0 = 0.0     # when it started (monotonic)
        self.run_seq = 0      # requests started so far
        self.watching = prefetch > 0
        if self.watching:
            self.rlock = threading.Lock()
            self.send_lock = threading.Lock()
            self.deferred = deque()
            self.foreign = 0  # reads the watcher did
            self.seen = 0     # ... that the main thread has accounted for
            self.parked = False  # the watcher waits for wake (idle worker)
            self.wake = threading.Event()
            self.write = self._write_locked

    def write(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            exit_now()

    def _write_locked(self, data):
        try:
            with self.send_lock:
                self.sock.sendall(data)
        except OSError:
            exit_now()

    def pump(self):
        """Block for the next bytes from K and dispatch every complete frame."""
        self._read(0)

    def poll(self):
        """Dispatch whatever K has sent, without blocking."""
        self._read(socket.MSG_DONTWAIT)

    def _read(self, flags):
        if self.watching:
            return self._read_shared(flags)
        self._recv(flags)

    def _recv(self, flags):
        """One recv into the frame buffer and dispatch what it completed;
        K closing the socket ends the worker."""
        try:
            n = self.sock.recv_into(self.fb.tail(), 0, flags)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            n = 0
        if not n:
            exit_now()
        self.received(n)

    def _read_shared(self, flags):
        # The caller re-checks what it waits for after every return, so
        # returning without reading (the watcher read meanwhile) is fine;
        # reading when the watcher already took the bytes it waits for
        # would block for good.
        rlock = self.rlock
        if flags:
            if not rlock.acquire(False):
                return
        else:
            rlock.acquire()
        try:
            if self.deferred or self.foreign != self.seen:
                self.seen = self.foreign
                self._run_deferred()
                return
            self._recv(flags)
        finally:
            rlock.release()

    def _run_deferred(self):
        """Dispatch the frames the watcher left (main thread, under rlock)."""
        d = self.deferred
        dispatch = self.dispatch
        while d:
            ftype, flags, sid, payload = d.popleft()
            try:
                dispatch(ftype, flags, sid, payload)
            except ProtocolError as e:
                protocol_error(e)

    def _watch_dispatch(self, ftype, flags, sid, payload):
        if ftype in _DEFERRED:
            self.deferred.append((ftype, flags, sid, bytes(payload)))
        else:
            self.dispatch(ftype, flags, sid, payload)

    def _watch(self):
        """The watcher thread: see the class doc. It ticks only while
        requests run: after a tick in which none started or ran it parks
        until the main thread starts one (an idle worker never wakes)."""
        while True:
            seq = self.run_seq
            time.sleep(WATCH_TICK)
            if self.running is not None:
                if self.run_seq == seq:
                    self._watch_run(seq)
                continue
            if self.run_seq != seq:
                continue
            # Idle for a tick: park. parked is set before run_seq is read
            # again and the main thread bumps run_seq before it reads
            # parked, so one of us sees the other (no lost wake-up).
            self.wake.clear()
            self.parked = True
            if self.run_seq == seq and self.running is None:
                self.wake.wait()
            self.parked = False

    def _watch_run(self, seq):
        sock = self.sock
        fb = self.fb
        rlock = self.rlock
        while self.run_seq == seq and self.running is not None:
            with rlock:
                if self.run_seq != seq or self.running is None:
                    return
                try:
                    ready = select.select((sock,), (), (), WATCH_SLICE)[0]
                except (OSError, ValueError):
                    return
                if not ready:
                    continue
                try:
                    n = sock.recv_into(fb.tail(), 0, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    n = 0
                if not n:
                    exit_now()
                fb.filled(n)
                self.foreign += 1
                try:
                    fb.decode(self._watch_dispatch)
                except ProtocolError as e:
                    protocol_error(e)

    def open_stream(self, sid, end, env):
        st = self.streams[sid] = Stream(self, sid, env, end)
        self.pending.append(st)

    def unqueue(self, st):
        try:
            self.pending.remove(st)
        except ValueError:
            return False
        return True

    def recall(self, st):
        if not self.unqueue(st):
            # Started (or done: K's RECALL crossed its end, which K ignores).
            ms = (time.monotonic() - self.run_t0) * 1000 if st is self.running else 0
            self.write(kept_frame(st.id, ms))
            return
        self.write(returned_frame(st.id))
        self.close_stream(st)

    _done = Dispatcher.close_stream

    def serve(self):
        pending = self.pending
        run = self.run
        if not self.watching:
            while True:
                while pending:
                    run(pending.popleft())
                if self.shutting_down:
                    return EXIT_OK
                self.pump()
        threading.Thread(target=self._watch, name="krait-watch", daemon=True).start()
        mono = time.monotonic
        while True:
            while True:
                if self.deferred:
                    with self.rlock:
                        self._run_deferred()
                try:
                    st = pending.popleft()
                except IndexError:
                    break
                self.run_t0 = mono()
                self.running = st
                self.run_seq += 1
                if self.parked:
                    self.wake.set()
                run(st)
                self.running = None
            if self.shutting_down:
                return EXIT_OK
            self.pump()


class ThreadedWorker(Worker):
    """--threads N > 1: the main thread reads frames, N threads run the app.

    Stream state and the stream table are guarded by self.lock, held
    across dispatch() and _done(); socket writes are serialized by
    send_lock. Lock order: self.lock, then send_lock (dispatch() refusing a
    request after SHUTDOWN writes under self.lock); nothing takes self.lock
    while holding send_lock.

    Requests wait in self.queue in arrival order; self.queued holds those
    no thread took yet. A thread takes a stream off it under self.lock
    before it runs it; RECALL (under self.lock too) gives back one still
    there, and the thread that later gets it from the queue skips it.
    """

    threaded = True

    def __init__(self, sock, app, threads, prefetch=0):
        super().__init__(sock, app, threads)
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.queue = queue.SimpleQueue()
        self.queued = set()
        self.started_at = {}  # sid -> monotonic start, for KEPT

    def write(self, data):
        try:
            with self.send_lock:
                self.sock.sendall(data)
        except OSError:
            exit_now()

    def dispatch(self, ftype, flags, sid, payload):
        with self.lock:
            Dispatcher.dispatch(self, ftype, flags, sid, payload)

    def open_stream(self, sid, end, env):
        st = self.streams[sid] = Stream(self, sid, env, end)
        self.queued.add(st)
        self.queue.put(st)

    def unqueue(self, st):
        # Under self.lock (dispatch).
        if st in self.queued:
            self.queued.discard(st)
            return True
        return False

    def recall(self, st):
        # Under self.lock (dispatch).
        if self.unqueue(st):
            self.write(returned_frame(st.id))
            self.close_stream(st)
            return
        t0 = self.started_at.get(st.id)
        self.write(kept_frame(st.id, (time.monotonic() - t0) * 1000 if t0 is not None else 0))

    def _done(self, st):
        with self.lock:
            self.started_at.pop(st.id, None)
            self.close_stream(st)

    def drained(self):
        # Wake the main thread's recv: the worker drained after SHUTDOWN.
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _thread_main(self):
        get = self.queue.get
        run = self.run
        lock = self.lock
        queued = self.queued
        started_at = self.started_at
        mono = time.monotonic
        while True:
            st = get()
            with lock:
                if st not in queued:
                    continue  # given back to K (RECALL)
                queued.discard(st)
                started_at[st.id] = mono()
            run(st)

    def serve(self):
        for i in range(self.threads):
            t = threading.Thread(
                target=self._thread_main, name="krait-wsgi-%d" % (i + 1), daemon=True
            )
            t.start()
        sock = self.sock
        tail = self.fb.tail
        received = self.received
        while True:
            try:
                n = sock.recv_into(tail())
            except OSError:
                n = 0
            if not n:
                if self._finished():
                    return EXIT_OK
                exit_now()
            received(n)
            if self._finished():
                return EXIT_OK

    def _finished(self):
        with self.lock:
            return self.shutting_down and not self.streams


def serve(sock, app, threads, prefetch=0):
    """Serve WSGI requests from K on sock until SHUTDOWN; return the exit status."""
    if threads > 1:
        return ThreadedWorker(sock, app, threads, prefetch).serve()
    return InlineWorker(sock, app, 1, prefetch).serve()


__all__ = ["serve", "FileWrapper", "ErrorStream", "Stream", "StreamReset"]
