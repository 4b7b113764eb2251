"""The ASGI 3 side of the worker (docs/protocol.md, section "ASGI").

One asyncio event loop per worker (uvloop when asked for or, with --loop
auto, when importable). The socket to krait is an asyncio BufferedProtocol
that decodes frames straight into a FrameBuffer; every stream runs the app in
its own task with receive/send bound to a Stream object. Frames written
during one loop iteration are collected and written with one
transport.write() from a callback scheduled with call_soon, so a burst of
requests and their responses cost one syscall each way. Worker is a
protocol.Dispatcher and the streams are protocol.StreamBase subclasses: the
stream table and the checks of K's frames (stream ids, end of body, windows)
are the ones the WSGI worker uses; this module adds scopes, receive/send and
the WebSocket frames. A WebSocket stream returns credit for K's messages in
batches of half the window (CREDIT_BATCH), not per message.

send() after the client is gone: the ASGI HTTP/WebSocket spec, version 2.4
(the spec_version this worker announces), says "If send() is called on a
closed connection the server should raise a server-specific subclass of
OSError". uvicorn raises its ClientDisconnected(OSError) for WebSockets;
for HTTP it ignores such a send() but, consistently, only announces
spec_version 2.3 there. Since krait announces 2.4 for both (Starlette's
StreamingResponse, for one, relies on that OSError instead of listening for
http.disconnect when spec_version >= 2.4), send() on a stream krait reset
(HTTP) or closed (WebSocket) raises ClientDisconnected, an OSError; receive()
still delivers http.disconnect / websocket.disconnect. An app that lets the
exception escape is not logged as an error.
"""

import asyncio
import inspect
import marshal
import os
import sys
import traceback
from collections import deque

from .protocol import (
    BODY_500,
    DATA,
    EARLY_HINT,
    END_STREAM,
    EXIT_BOOT_ERROR,
    EXIT_OK,
    HEADER,
    INITIAL_WINDOW,
    MAX_HEAD,
    MAX_PAYLOAD,
    RESPONSE,
    SENDFILE,
    TRAILERS,
    WS_ACCEPT,
    WS_BINARY,
    WS_CLOSE,
    WS_MESSAGE,
    WS_MORE,
    Dispatcher,
    ProtocolError,
    StreamBase,
    exit_now,
    frames_500,
    head_too_large,
    loads,
    log,
    log_exception,
    protocol_error,
    reset_frame,
)

_dumps = marshal.dumps
_pack = HEADER.pack


ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_VERSION = {"version": "3.0", "spec_version": "2.0"}
# Seconds lifespan shutdown may take once krait's graceful timeout ran out
# (K waits 10 s, worker.HurryGrace, before it kills the worker).
LIFESPAN_HURRY = 5.0

_HEAD_500 = _dumps(
    (
        500,
        [(b"content-type", b"text/plain; charset=utf-8"),
         (b"content-length", str(len(BODY_500)).encode())],
        False,
    ),
    2,
)

_DISCONNECT = "http.disconnect"

# Text decoded straight from the receive buffer (a memoryview), without a
# bytes copy; an interpreter whose str() wants bytes copies first.
_utf8 = str
try:
    _utf8(memoryview(b"ok"), "utf-8")
except TypeError:
    def _utf8(data, encoding):
        return bytes(data).decode(encoding)

# A WebSocket stream returns credit for K's WS_MESSAGE bytes once this many
# were consumed (docs/protocol.md, ASGI, "WebSocket"); less than the window.
CREDIT_BATCH = INITIAL_WINDOW // 2

# Stream response states.
_IDLE = 0        # nothing sent yet (WebSocket: not accepted, not denied)
_STARTED = 1     # HTTP: RESPONSE sent; WebSocket: denial response started
_TRAILING = 2    # HTTP: body done, trailers announced and still to come
_ACCEPTED = 3    # WebSocket: WS_ACCEPT sent
_DONE = 4        # END_STREAM (or RESET) sent: W's side of the stream ended


class ClientDisconnected(OSError):
    """send() on a stream whose client went away (ASGI spec 2.4)."""


class ASGIError(RuntimeError):
    """The app sent a message that is not allowed here (wrong type or order)."""


def _bad(msg):
    raise ASGIError(msg)


def _check_head(payload, headers, status_size=0, what="response head"):
    """Refuse a head over MAX_HEAD (docs/protocol.md): the app's error."""
    msg = head_too_large(payload, headers, status_size, what)
    if msg is not None:
        _bad(msg)


def _headers(headers, what="headers"):
    """Validate an ASGI header iterable; return a list marshal can encode."""
    if type(headers) is not list:
        try:
            headers = list(headers)
        except TypeError:
            _bad("%s must be an iterable of [name, value] pairs, got %s" % (what, type(headers).__name__))
    for h in headers:
        th = type(h)
        if (th is not tuple and th is not list) or len(h) != 2:
            _bad("each of %s must be a [name, value] pair of bytes, got %r" % (what, h))
        n, v = h
        if type(n) is not bytes or type(v) is not bytes:
            if isinstance(n, (bytes, bytearray)) and isinstance(v, (bytes, bytearray)):
                return _headers_copy(headers, what)
            _bad("header names and values must be bytes, got %r" % (h,))
    return headers


def _headers_copy(headers, what):
    out = []
    for h in headers:
        if type(h) not in (tuple, list) or len(h) != 2:
            _bad("each of %s must be a [name, value] pair of bytes, got %r" % (what, h))
        n, v = h
        if not isinstance(n, (bytes, bytearray)) or not isinstance(v, (bytes, bytearray)):
            _bad("header names and values must be bytes, got %r" % (h,))
        out.append((bytes(n), bytes(v)))
    return out


def _body(body):
    t = type(body)
    if t is bytes:
        return body
    if t is bytearray or t is memoryview:
        return bytes(body)
    _bad("body must be bytes, got %s" % t.__name__)


class Stream(StreamBase):
    """What HTTP and WebSocket streams share: waiting, sending, ending.

    StreamBase's gone: K reset the stream (HTTP) / the client closed (WS).
    """

    __slots__ = ("w", "scope", "waiter", "state", "failed", "task", "__weakref__")

    def __init__(self, w, sid, scope, eof):
        StreamBase.__init__(self, sid, eof)
        self.w = w
        self.scope = scope
        self.waiter = None
        self.state = _IDLE
        self.failed = False   # an error was already logged and answered
        self.task = None

    # ---- waking and waiting ----

    def wake(self):
        waiters = self.waiter
        if waiters:
            self.waiter = None
            for f in waiters:
                if not f.done():
                    f.set_result(None)

    async def _wait(self):
        # One future per waiter, not a shared one: an app that cancels a
        # pending receive() (anyio task groups do) must not cancel a send()
        # waiting for window credit on the same stream.
        f = self.w.loop.create_future()
        waiters = self.waiter
        if waiters is None:
            self.waiter = [f]
        else:
            waiters.append(f)
        try:
            await f
        finally:
            waiters = self.waiter
            if waiters is not None and f in waiters:
                waiters.remove(f)

    async def _take_window(self, want):
        """Wait for send credit; return how many bytes (<= want) may go now."""
        while self.send_window <= 0:
            if self.gone:
                raise ClientDisconnected("the client went away")
            await self._wait()
        if self.gone:
            raise ClientDisconnected("the client went away")
        n = self.send_window
        return want if want < n else n

    def on_cancel(self, reason):
        """K gave up on the stream (--timeout): cancel the app's task. run()
        then ends the stream with a RESET, which frees K's slot."""
        StreamBase.on_reset(self)
        task = self.task
        if task is not None and not task.done():
            log("cancelling the application task (%s): %s" % (self.describe(), reason))
            task.cancel()

    # ---- ending the stream ----

    def end_reset(self, reason):
        if self.state != _DONE:
            self.state = _DONE
            self.w.write(reset_frame(self.id, reason))

    def end_500(self):
        self.state = _DONE
        self.w.write(frames_500(self.id, _HEAD_500))

    def fail(self):
        """Answer a failed app: 500 when nothing was sent (WebSocket: before
        the handshake), else abort (WebSocket: close 1011)."""
        if self.state == _IDLE:
            if self.gone:
                self.end_reset("stream reset by krait")
            else:
                self.end_500()
        else:
            self.end_reset("application error after the response started")

    def describe(self):
        s = self.scope
        path = s.get("path", "?")
        if s.get("type") == "websocket":
            return "stream %d, websocket %s" % (self.id, path)
        return "stream %d, %s %s" % (self.id, s.get("method", "?"), path)

    def violation(self, msg):
        """The app broke the ASGI message rules: log it, answer, raise."""
        self.failed = True
        log("ASGI protocol error (%s): %s" % (self.describe(), msg))
        self.fail()
        raise ASGIError(msg)

    def message_type(self, message):
        """The 'type' of a message the app sent, else a violation."""
        try:
            return message["type"]
        except (KeyError, TypeError):
            self.violation("message without a 'type': %r" % (message,))

    def refuse(self, mtype, e):
        """send() found e in a message of type mtype: a violation (raised)."""
        if isinstance(e, ASGIError):
            if self.failed:
                raise e
            self.violation(str(e))
        self.violation("malformed %r message: %s: %s" % (mtype, type(e).__name__, e))

    async def _send_chunks(self, ftype, flags, data, end, more_flag=0):
        """Send data as frames of ftype within the window; END_STREAM on the
        last frame when end. more_flag marks every frame but the last."""
        sid = self.id
        write = self.w.write
        total = len(data)
        if total <= self.send_window and total <= MAX_PAYLOAD and not self.gone:
            self.send_window -= total
            if end:
                self.state = _DONE
            write(_pack(total, ftype, flags | (END_STREAM if end else 0), 0, sid) + data)
            return
        view = memoryview(data)
        off = 0
        while True:
            n = await self._take_window(min(total - off, MAX_PAYLOAD)) if off < total else 0
            last = off + n >= total
            f = flags
            if last:
                if end:
                    f |= END_STREAM
                    self.state = _DONE
            else:
                f |= more_flag
            self.send_window -= n
            write(_pack(n, ftype, f, 0, sid) + view[off:off + n].tobytes())
            off += n
            if last:
                return


class HTTPStream(Stream):
    """One HTTP request/response exchange."""

    __slots__ = ("chunks", "request_done", "trailers", "trailer_list", "head")

    def __init__(self, w, sid, scope, eof):
        Stream.__init__(self, w, sid, scope, eof)
        self.chunks = deque()
        self.request_done = False   # the last http.request went to the app
        self.trailers = False
        self.trailer_list = None
        # The RESPONSE frame of http.response.start, held until the first
        # body frame or the end of the loop iteration (Worker.flush): an app
        # that fails right after start (or starts twice) still gets a 500.
        self.head = None

    def _emit_head(self):
        head = self.head
        if head is not None:
            self.head = None
            self.w.write(head)

    def buffer_body(self, payload):
        self.chunks.append(bytes(payload))

    async def receive(self):
        while True:
            if self.gone:
                return {"type": _DISCONNECT}
            chunks = self.chunks
            if chunks:
                body = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                more = not self.eof
                if more:
                    # Credit before the app can block on the next receive().
                    self.w.write(self.credit(len(body)))
                else:
                    self.request_done = True
                return {"type": "http.request", "body": body, "more_body": more}
            if self.eof and not self.request_done:
                self.request_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.state == _DONE:
                # As uvicorn: once the response is complete, the exchange is over.
                return {"type": _DISCONNECT}
            await self._wait()

    async def send(self, message):
        try:
            mtype = message["type"]
        except (KeyError, TypeError):
            mtype = self.message_type(message)  # raises the violation
        state = self.state
        if self.gone:
            raise ClientDisconnected("the client went away (stream %d)" % self.id)
        try:
            if mtype == "http.response.body" and state == _STARTED and not self.trailers:
                # The usual last message: checked and sent here, with the
                # held RESPONSE in the same batch, without a coroutine for
                # _send_chunks when the body fits the window and one frame.
                body = message.get("body", b"")
                if type(body) is not bytes:
                    body = _body(body)
                if not message.get("more_body", False):
                    n = len(body)
                    if n <= self.send_window and n <= MAX_PAYLOAD:
                        self.send_window -= n
                        self.state = _DONE
                        head = self.head
                        w = self.w
                        if head is not None:
                            self.head = None
                            w.write(head)
                        w.write2(_pack(n, DATA, END_STREAM, 0, self.id), body)
                        if self.waiter:
                            self.wake()
                        return
                if self.head is not None:
                    self._emit_head()
                if message.get("more_body", False):
                    if body:
                        await self._send_chunks(DATA, 0, body, False)
                else:
                    await self._send_chunks(DATA, 0, body, True)
                    self.wake()
            elif mtype == "http.response.start":
                if state != _IDLE:
                    _bad("'http.response.start' sent after the response started")
                status = message["status"]
                if type(status) is not int or not 100 <= status <= 999:
                    _bad("status must be an int from 100 to 999, got %r" % (status,))
                headers = message.get("headers")
                headers = [] if headers is None else _headers(headers)
                trailers = bool(message.get("trailers", False))
                self.trailers = trailers
                payload = _dumps((status, headers, trailers), 2)
                if len(payload) > MAX_HEAD:
                    _check_head(payload, headers, 3)
                self.state = _STARTED
                self.head = _pack(len(payload), RESPONSE, 0, 0, self.id) + payload
                self.w.hold_head(self)
            elif mtype == "http.response.body":
                if state != _STARTED:
                    _bad("'http.response.body' sent %s" % _where(state))
                body = message.get("body", b"")
                if type(body) is not bytes:
                    body = _body(body)
                if self.head is not None:
                    self._emit_head()
                if message.get("more_body", False):
                    if body:
                        await self._send_chunks(DATA, 0, body, False)
                elif self.trailers:
                    if body:
                        await self._send_chunks(DATA, 0, body, False)
                    self.state = _TRAILING
                else:
                    await self._send_chunks(DATA, 0, body, True)
                    self.wake()
            elif mtype == "http.response.trailers":
                if state != _TRAILING:
                    _bad("'http.response.trailers' sent %s" % (
                        "without 'trailers': True in http.response.start" if not self.trailers
                        else _where(state)))
                headers = message.get("headers")
                headers = [] if headers is None else _headers(headers, "trailers")
                if self.trailer_list is None:
                    self.trailer_list = list(headers)
                else:
                    self.trailer_list.extend(headers)
                if not message.get("more_trailers", False):
                    payload = _dumps(self.trailer_list, 2)
                    _check_head(payload, self.trailer_list, 0, "trailer section")
                    self.state = _DONE
                    self.w.write(_pack(len(payload), TRAILERS, END_STREAM, 0, self.id) + payload)
                    self.wake()
            elif mtype == "http.response.pathsend":
                if state != _STARTED:
                    _bad("'http.response.pathsend' sent %s" % _where(state))
                path = message.get("path")
                if type(path) is not str or not os.path.isabs(path):
                    _bad("pathsend 'path' must be an absolute path str, got %r" % (path,))
                payload = _dumps((path, 0, -1), 2)
                if len(payload) > MAX_PAYLOAD:
                    _bad("pathsend 'path' is %d characters long" % len(path))
                self._emit_head()
                if self.trailers:
                    self.state = _TRAILING
                    self.w.write(_pack(len(payload), SENDFILE, 0, 0, self.id) + payload)
                else:
                    self.state = _DONE
                    self.w.write(_pack(len(payload), SENDFILE, END_STREAM, 0, self.id) + payload)
                    self.wake()
            elif mtype == "http.response.early_hint":
                if state != _IDLE:
                    _bad("'http.response.early_hint' sent after the response started")
                links = message.get("links", ())
                if isinstance(links, (bytes, str)):
                    _bad("early_hint 'links' must be a list of bytes")
                headers = []
                for link in links:
                    if type(link) is not bytes:
                        _bad("early_hint links must be bytes, got %r" % (link,))
                    headers.append((b"link", link))
                if headers:
                    payload = _dumps(headers, 2)
                    _check_head(payload, headers, 0, "early hint")
                    self.w.write(_pack(len(payload), EARLY_HINT, 0, 0, self.id) + payload)
            else:
                _bad("unexpected ASGI message type %r for an HTTP stream" % (mtype,))
        except (ASGIError, KeyError, TypeError, ValueError) as e:
            self.refuse(mtype, e)

    def fail(self):
        if self.state == _STARTED and self.head is not None:
            self.head = None  # never sent: a 500 can still replace it
            self.state = _IDLE
        Stream.fail(self)


def _where(state):
    if state == _IDLE:
        return "before 'http.response.start'"
    if state == _DONE:
        return "after the response was complete"
    if state == _TRAILING:
        return "after the last body message"
    return "here"


class WebSocketStream(Stream):
    """One WebSocket connection; K does the framing, we see whole messages."""

    __slots__ = ("connected", "inbox", "parts", "parts_binary", "close_code",
                 "close_reason", "sent_close", "dropping", "owed")

    def __init__(self, w, sid, scope, eof):
        Stream.__init__(self, w, sid, scope, eof)
        self.connected = False    # websocket.connect delivered
        self.inbox = deque()      # (message, credit)
        self.parts = None
        self.parts_binary = False
        self.close_code = None    # from K's WS_CLOSE (or 1006 on RESET)
        self.close_reason = ""
        self.sent_close = None    # code W sent in WS_CLOSE
        self.dropping = False     # failed here (bad input from K): drop the rest
        self.owed = 0             # consumed WS_MESSAGE bytes not yet credited

    def on_data(self, payload, end):
        raise ProtocolError("DATA on WebSocket stream %d" % self.id)

    def _consumed(self, n):
        """n more bytes of K's messages were consumed: return the credit in
        batches of CREDIT_BATCH (docs/protocol.md, ASGI, "WebSocket").
        What is held back stays under CREDIT_BATCH, less than the window, so
        K, which waits only with a whole window outstanding, always has the
        rest of it on its way here and gets the credit when it arrives."""
        owed = self.owed + n
        if owed >= CREDIT_BATCH:
            self.owed = 0
            self.w.write(self.credit(owed))
        else:
            self.owed = owed

    def on_message(self, payload, flags):
        n = len(payload)
        room = self.recv_room - n
        if room < 0:
            raise ProtocolError("WS_MESSAGE beyond the flow-control window on stream %d" % self.id)
        self.recv_room = room
        if self.dropping:
            return
        if self.close_code is not None:
            raise ProtocolError("WS_MESSAGE on stream %d after WS_CLOSE" % self.id)
        if flags & WS_MORE:
            data = bytes(payload)
            if self.parts is None:
                self.parts = [data]
                self.parts_binary = bool(flags & WS_BINARY)
            else:
                self.parts.append(data)
            # A partial message is buffered here, not by the app: it counts
            # as consumed now so K can send the rest of a message larger
            # than the window. The last frame's bytes count as the app reads.
            if n:
                self._consumed(n)
            return
        parts = self.parts
        if parts is not None:
            parts.append(bytes(payload))
            payload = b"".join(parts)
            binary = self.parts_binary
            self.parts = None
        else:
            binary = flags & WS_BINARY
        if binary:
            msg = {"type": "websocket.receive", "bytes": bytes(payload)}
        else:
            try:
                # Decoded straight from the receive buffer: no bytes copy.
                msg = {"type": "websocket.receive", "text": _utf8(payload, "utf-8")}
            except UnicodeDecodeError:
                # krait validates text (1007), so this is a bug there; it
                # costs this connection only, not the worker's other streams.
                log("WS_MESSAGE text on stream %d is not UTF-8; closing it with 1007" % self.id)
                self._fail_input(1007, "invalid UTF-8 in a text message")
                return
        self.inbox.append((msg, n))
        if self.waiter:
            self.wake()

    def on_close(self, payload):
        try:
            code, reason = loads(payload)
            if type(code) is not int or type(reason) is not str:
                raise TypeError
        except (ValueError, EOFError, TypeError):
            raise ProtocolError("undecodable WS_CLOSE on stream %d" % self.id) from None
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.parts = None  # a message K never completed is never delivered
        self.gone = True
        self.wake()

    def _fail_input(self, code, reason):
        """Fail this connection for bad input from K: the app sees
        websocket.disconnect with code, K gets WS_CLOSE code at once, and
        later WS_MESSAGEs on the stream are dropped."""
        self.dropping = True
        self.parts = None
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
        self.gone = True
        if self.state == _ACCEPTED:
            self._close(code, reason)
        self.wake()

    def on_reset(self):
        if self.close_code is None:
            self.close_code = 1006
        StreamBase.on_reset(self)

    async def receive(self):
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while True:
            inbox = self.inbox
            if inbox:
                msg, credit = inbox.popleft()
                if credit and self.close_code is None:
                    self._consumed(credit)
                return msg
            if self.close_code is not None:
                return {"type": "websocket.disconnect", "code": self.close_code,
                        "reason": self.close_reason}
            if self.sent_close is not None or self.state == _DONE:
                # We closed (or denied) and krait ends the connection: do not
                # wait for a close from the client that may never come.
                return {"type": "websocket.disconnect",
                        "code": self.sent_close if self.sent_close is not None else 1000,
                        "reason": ""}
            await self._wait()

    async def send(self, message):
        mtype = self.message_type(message)
        state = self.state
        if self.dropping:
            # We closed the connection under the app (_fail_input): a send
            # finds the client gone, a close has nothing left to do.
            if mtype == "websocket.send":
                raise ClientDisconnected("the WebSocket connection failed (stream %d)" % self.id)
            if mtype == "websocket.close":
                return
        try:
            if mtype == "websocket.send":
                if state != _ACCEPTED:
                    _bad("'websocket.send' sent %s" % _ws_where(state))
                if self.gone:
                    raise ClientDisconnected("the WebSocket client closed (stream %d)" % self.id)
                b = message.get("bytes")
                t = message.get("text")
                if b is not None and t is None:
                    data = b if type(b) is bytes else _body(b)
                    flags = WS_BINARY
                elif t is not None and b is None:
                    if type(t) is not str:
                        _bad("websocket.send 'text' must be str, got %s" % type(t).__name__)
                    data = t.encode("utf-8")
                    flags = 0
                else:
                    _bad("websocket.send needs exactly one of 'bytes' and 'text'")
                n = len(data)
                if n <= self.send_window and n <= MAX_PAYLOAD:
                    # The usual case, without _send_chunks' coroutine: the
                    # whole message fits the window and one frame.
                    self.send_window -= n
                    self.w.write2(_pack(n, WS_MESSAGE, flags, 0, self.id), data)
                else:
                    await self._send_chunks(WS_MESSAGE, flags, data, False, WS_MORE)
            elif mtype == "websocket.accept":
                if state != _IDLE:
                    _bad("'websocket.accept' sent %s" % _ws_where(state))
                if self.gone:
                    raise ClientDisconnected("the WebSocket client went away (stream %d)" % self.id)
                sub = message.get("subprotocol")
                if sub is not None and type(sub) is not str:
                    _bad("websocket.accept 'subprotocol' must be str or None")
                headers = message.get("headers")
                headers = [] if headers is None else _headers(headers)
                payload = _dumps((sub, headers), 2)
                _check_head(payload, headers, len(sub or ""), "WebSocket accept")
                self.state = _ACCEPTED
                self.w.write(_pack(len(payload), WS_ACCEPT, 0, 0, self.id) + payload)
            elif mtype == "websocket.close":
                if state != _IDLE and state != _ACCEPTED:
                    _bad("'websocket.close' sent %s" % _ws_where(state))
                code = message.get("code")
                code = 1000 if code is None else code
                reason = message.get("reason")
                reason = "" if reason is None else reason
                if type(code) is not int or type(reason) is not str:
                    _bad("websocket.close needs an int 'code' and a str 'reason'")
                reason = reason[:123]  # K sends at most 123 bytes of it; keeps WS_CLOSE small
                self.sent_close = code
                self._close(code, reason)
            elif mtype == "websocket.http.response.start":
                if state != _IDLE:
                    _bad("'websocket.http.response.start' sent %s" % _ws_where(state))
                status = message["status"]
                if type(status) is not int or not 100 <= status <= 999:
                    _bad("status must be an int from 100 to 999, got %r" % (status,))
                headers = message.get("headers")
                headers = [] if headers is None else _headers(headers)
                payload = _dumps((status, headers, False), 2)
                _check_head(payload, headers, 3)
                self.state = _STARTED
                self.w.write(_pack(len(payload), RESPONSE, 0, 0, self.id) + payload)
            elif mtype == "websocket.http.response.body":
                if state != _STARTED:
                    _bad("'websocket.http.response.body' sent %s" % _ws_where(state))
                body = message.get("body", b"")
                if type(body) is not bytes:
                    body = _body(body)
                more = message.get("more_body", False)
                if more:
                    if body:
                        await self._send_chunks(DATA, 0, body, False)
                else:
                    await self._send_chunks(DATA, 0, body, True)
                    self.wake()
            else:
                _bad("unexpected ASGI message type %r for a WebSocket stream" % (mtype,))
        except (ASGIError, KeyError, TypeError, ValueError) as e:
            self.refuse(mtype, e)

    def _close(self, code, reason):
        if self.state != _DONE:
            self.state = _DONE
            payload = _dumps((code, reason), 2)
            self.w.write(_pack(len(payload), WS_CLOSE, END_STREAM, 0, self.id) + payload)
            self.wake()

    def fail(self):
        if self.state == _ACCEPTED:
            self._close(1011, "")
        else:
            Stream.fail(self)


def _ws_where(state):
    if state == _IDLE:
        return "before 'websocket.accept'"
    if state == _ACCEPTED:
        return "after 'websocket.accept'"
    if state == _STARTED:
        return "after 'websocket.http.response.start'"
    return "after the connection was closed"


class Connection(asyncio.BufferedProtocol):
    """The socket to krait: reads straight into the frame buffer."""

    def __init__(self, worker):
        self.worker = worker
        self.fb = worker.fb

    def connection_made(self, transport):
        self.worker.transport = transport

    def get_buffer(self, sizehint):
        return self.fb.tail()

    def buffer_updated(self, nbytes):
        self.worker.received(nbytes)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        if not self.worker.closing:
            # krait is gone: leave at once.
            exit_now(EXIT_OK)


class Lifespan:
    """Runs the app's lifespan scope in a task of its own."""

    def __init__(self, w, app, state):
        self.w = w
        self.app = app
        self.state = state
        self.inbox = asyncio.Queue()
        loop = w.loop
        self.startup = loop.create_future()    # ("complete"|"failed"|"error"|"returned", text)
        self.shutdown = loop.create_future()
        self.task = None

    def start(self):
        self.inbox.put_nowait({"type": "lifespan.startup"})
        self.task = self.w.loop.create_task(self.run())

    async def run(self):
        scope = {"type": "lifespan", "asgi": dict(LIFESPAN_VERSION), "state": self.state}
        try:
            await self.app(scope, self.receive, self.send)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            tb = traceback.format_exc()
            for f in (self.startup, self.shutdown):
                if not f.done():
                    f.set_result(("error", tb))
                    break
        finally:
            for f in (self.startup, self.shutdown):
                if not f.done():
                    f.set_result(("returned", ""))

    async def receive(self):
        return await self.inbox.get()

    async def send(self, message):
        mtype = message.get("type")
        text = message.get("message", "") or ""
        if mtype in ("lifespan.startup.complete", "lifespan.startup.failed"):
            if self.startup.done():
                raise ASGIError("%r sent twice or out of order" % mtype)
            self.startup.set_result(("complete" if mtype.endswith("complete") else "failed", text))
        elif mtype in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            if not self.startup.done() or self.shutdown.done():
                raise ASGIError("%r sent out of order" % mtype)
            self.shutdown.set_result(("complete" if mtype.endswith("complete") else "failed", text))
        else:
            raise ASGIError("unexpected lifespan message type %r" % (mtype,))


class Worker(Dispatcher):
    """Stream tasks and the write batch of one worker; the stream table and
    the checks of K's frames are Dispatcher's."""

    def __init__(self, loop, app):
        Dispatcher.__init__(self)
        self.loop = loop
        self.app = app
        self.new_task = _task_starter(loop)
        self.transport = None
        self.out = []
        self.heads = []
        self.flush_pending = False
        self.closing = False
        self.state = {}
        self.idle = None
        self.lifespan = None
        # Set by the second SHUTDOWN; from then on lifespan shutdown has
        # LIFESPAN_HURRY seconds.
        self.hurry = loop.create_future()

    # ---- writing ----

    def write(self, data):
        self.out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def write2(self, head, data):
        """write(head + data) without copying data into a new bytes."""
        out = self.out
        out.append(head)
        out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def hold_head(self, st):
        """Write st's held RESPONSE at the latest with this iteration's batch."""
        self.heads.append(st)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def flush(self):
        self.flush_pending = False
        heads = self.heads
        if heads:
            for st in heads:
                if st.state != _DONE:  # else it ended with a RESET or a 500
                    st._emit_head()
            heads.clear()
        out = self.out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self.transport.write(data)

    # ---- reading ----

    def open_stream(self, sid, end, scope):
        kind = scope.get("type")
        scope["asgi"] = ASGI_VERSION
        scope["state"] = self.state.copy()
        if kind == "http":
            scope["extensions"] = {
                "http.response.trailers": {},
                "http.response.pathsend": {},
                "http.response.early_hint": {},
            }
            st = HTTPStream(self, sid, scope, end)
        elif kind == "websocket":
            scope["extensions"] = {"websocket.http.response": {}}
            st = WebSocketStream(self, sid, scope, end)
        else:
            raise ProtocolError("REQUEST on stream %d has scope type %r" % (sid, kind))
        self.streams[sid] = st
        st.task = self.new_task(self.run(st))

    # ---- running the app ----

    async def run(self, st):
        if st.gone and type(st) is HTTPStream:
            # krait gave up on it before it started: do not run the app.
            st.end_reset("stream reset by krait")
            st.task = None
            self.close_stream(st)
            return
        try:
            await self.app(st.scope, st.receive, st.send)
        except BaseException as e:
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            if st.failed:
                pass  # already logged and answered
            elif st.gone:
                # The client left: the app noticed (ClientDisconnected,
                # cancellation), or failed after, which is not worth a traceback.
                pass
            else:
                log_exception("error in the application", st.describe())
                if st.state != _DONE:
                    st.fail()
        else:
            if st.state != _DONE and not st.gone:
                if type(st) is WebSocketStream:
                    if st.state == _ACCEPTED:
                        st._close(1000, "")
                    elif st.state == _IDLE:
                        log("ASGI app returned without accepting or closing the WebSocket (%s)"
                            % st.describe())
                        st.end_500()
                    else:
                        log("ASGI app returned before the denial response was complete (%s)"
                            % st.describe())
                        st.end_reset("response not finished")
                elif st.state == _IDLE:
                    log("ASGI app returned without starting a response (%s)" % st.describe())
                    st.end_500()
                else:
                    log("ASGI app returned before the response was complete (%s)" % st.describe())
                    st.fail()
        finally:
            if st.state != _DONE:
                if type(st) is WebSocketStream and st.state == _ACCEPTED:
                    code = st.close_code
                    st._close(code if code is not None and code not in (1005, 1006) else 1000, "")
                else:
                    st.end_reset("stream reset by krait" if st.gone else "response not finished")
            st.task = None
            self.close_stream(st)

    def drained(self):
        idle = self.idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    def shutdown_now(self):
        """K's graceful timeout ran out (a second SHUTDOWN): cancel every
        stream's task, as uvicorn does; run() ends each stream and the last
        one sets idle, then lifespan shutdown runs, bounded."""
        if self.hurry.done():
            return
        self.hurry.set_result(None)
        for st in list(self.streams.values()):
            st.on_cancel("krait's graceful timeout ran out")

    async def drain(self):
        """Write what is batched and wait until the transport took it all."""
        self.flush()
        t = self.transport
        while t is not None and t.get_write_buffer_size():
            await asyncio.sleep(0.005)

    async def main(self, sock, hello, capacity, lifespan_mode):
        """Lifespan startup, HELLO, serve until SHUTDOWN, lifespan shutdown."""
        ls = None
        if lifespan_mode != "off":
            ls = Lifespan(self, self.app, self.state)
            ls.start()
            outcome, text = await ls.startup
            if outcome == "failed":
                msg = "ASGI lifespan startup failed: %s\n" % (text or "(no message)")
                hello("error", msg, capacity)
                return EXIT_BOOT_ERROR
            if outcome == "error":
                if lifespan_mode == "on":
                    hello("error", "ASGI lifespan startup raised an exception:\n" + text, capacity)
                    return EXIT_BOOT_ERROR
                log("ASGI 'lifespan' protocol appears unsupported (the app raised on it); "
                     "going on without it")
                ls = None
            elif outcome == "returned":
                if lifespan_mode == "on":
                    log("ASGI app returned from lifespan without completing startup")
                ls = None
        if not hello("ready", "", capacity):
            return EXIT_BOOT_ERROR
        self.idle = self.loop.create_future()
        sock.setblocking(False)
        await self.loop.connect_accepted_socket(lambda: Connection(self), sock)
        await self.idle
        if ls is not None and not ls.task.done():
            ls.inbox.put_nowait({"type": "lifespan.shutdown"})
            # Unbounded while K waits gracefully; LIFESPAN_HURRY once its
            # graceful timeout ran out (K kills the worker a little later).
            await asyncio.wait([ls.shutdown, self.hurry], return_when=asyncio.FIRST_COMPLETED)
            if not ls.shutdown.done():
                await asyncio.wait([ls.shutdown], timeout=LIFESPAN_HURRY)
            if not ls.shutdown.done():
                log("ASGI lifespan shutdown did not finish within %g s after krait's "
                    "graceful timeout; exiting without it" % LIFESPAN_HURRY)
                outcome, text = "timeout", ""
            else:
                outcome, text = ls.shutdown.result()
            if outcome == "failed":
                log("ASGI lifespan shutdown failed: %s" % (text or "(no message)"))
            elif outcome == "error":
                log("ASGI lifespan shutdown raised an exception:\n" + text.rstrip("\n"))
        await self.drain()
        self.closing = True
        return EXIT_OK


def _task_starter(loop):
    """How stream tasks start: eagerly where asyncio can (3.12+, stock loop).

    An eager task runs the app at once, inside the frame dispatch, up to its
    first real suspension: a hello-world app answers without ever being
    scheduled, which saves a loop round per request. Only the worker's own
    stream tasks start eagerly; tasks the app creates behave as usual.
    """
    if sys.version_info >= (3, 12) and type(loop).__module__.startswith("asyncio"):
        Task = asyncio.Task

        def start(coro):
            return Task(coro, loop=loop, eager_start=True)

        return start
    return loop.create_task


def as_asgi3(app):
    """Wrap an ASGI 2 (double-callable) app as ASGI 3, as uvicorn decides it."""
    if inspect.isclass(app):
        asgi3 = hasattr(app, "__await__")
    elif inspect.isfunction(app) or inspect.ismethod(app):
        asgi3 = inspect.iscoroutinefunction(app)
    else:
        call = getattr(app, "__call__", None)
        asgi3 = inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call)
    if asgi3:
        return app

    async def asgi2(scope, receive, send):
        instance = app(scope)
        await instance(receive, send)

    return asgi2


def new_loop(kind):
    """An event loop of the kind --loop asks for; raises RuntimeError."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise RuntimeError("--loop uvloop: uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def serve(sock, app, hello, capacity, loop="auto", lifespan="auto"):
    """Serve ASGI on sock until SHUTDOWN; return the exit status.

    hello(status, error, capacity) sends HELLO and returns False when it
    could not. Lifespan startup runs before HELLO.
    """
    try:
        ev = new_loop(loop)
    except Exception as e:
        hello("error", "%s\n" % e, capacity)
        return EXIT_BOOT_ERROR
    asyncio.set_event_loop(ev)
    w = Worker(ev, as_asgi3(app))
    try:
        status = ev.run_until_complete(w.main(sock, hello, capacity, lifespan))
    except ProtocolError as e:
        protocol_error(e)
    # Tasks the app left behind (background work) are not waited for: leave
    # now, as krait expects once it got every stream's end.
    exit_now(status)
