"""The krait worker protocol, worker side (see docs/protocol.md).

Frames are a 12-byte little-endian header (length, type, flags, reserved,
stream) followed by the payload. This module is the one implementation of
the protocol rules both interfaces share:

- the constants, the frame encoder and FrameBuffer, the read buffer that
  decodes every complete frame of one recv at once (the WSGI worker drives
  it with blocking sockets, the ASGI worker from an asyncio
  BufferedProtocol: get_buffer -> tail(), buffer_updated -> received());
- Dispatcher, the stream table: which frame K may send on which stream
  (REQUEST opens an id that is not open, DATA/WINDOW/RESET/WS_* need an open
  stream or are late frames for one K opened before, SHUTDOWN and PING
  only on stream 0; PING is answered with PONG at once, by whoever reads
  the socket, which is what the heartbeat checks; a RESET with a reason
  is on_cancel: --timeout), REQUEST decoding, refusing requests after SHUTDOWN,
  noticing when a shutting-down worker has drained, and RECALL (version 3:
  recall()/unqueue(), which a WSGI worker that queues requests overrides:
  a request still queued goes back with RETURNED, or ends with RESET when
  K resets it; a started one is KEPT);
- StreamBase, the per-stream state K's frames change: the end of the
  request body, both flow-control windows and the reset flag.

wsgi.py and asgi.py subclass Dispatcher and StreamBase with what differs:
how a stream starts (a thread or a task), how a waiter is woken and how
frames are written. Locking: Dispatcher and StreamBase take no lock; a
subclass that serves streams from several threads (wsgi.ThreadedWorker)
holds its lock across dispatch() and close_stream() and around credit().
"""

import marshal
import os
import struct
import sys
import traceback

PROTOCOL_VERSION = 3

HEADER = struct.Struct("<IBBHI")
HEADER_SIZE = HEADER.size  # 12
U32 = struct.Struct("<I")

MAX_PAYLOAD = 1 << 20
INITIAL_WINDOW = 262144

# Largest response head an app may send (docs/protocol.md, "Response head
# limit"): the status (WSGI: the string; ASGI: 3) plus len(name) +
# len(value) + 4 per header. Also the limit for trailers, early hints and a
# WebSocket accept's headers. Encoded, such a head stays far below
# MAX_PAYLOAD; K enforces the same limit (dispatch.MaxResponseHead).
MAX_HEAD = 65536

# Frame types.
HELLO = 0x01
REQUEST = 0x02
DATA = 0x03
RESPONSE = 0x04
WINDOW = 0x05
RESET = 0x06
SENDFILE = 0x07
SHUTDOWN = 0x08
# ASGI additions (docs/protocol.md, section ASGI).
TRAILERS = 0x09
EARLY_HINT = 0x0A
WS_ACCEPT = 0x0B
WS_MESSAGE = 0x0C
WS_CLOSE = 0x0D
# Liveness (version 2): K pings on stream 0, W echoes the payload.
PING = 0x0E
PONG = 0x0F
MAX_PING_PAYLOAD = 8
# Prefetch and recall (version 3): K asks for a queued request back; W
# answers RETURNED (END_STREAM: never started, the app never saw it) or
# KEPT (it had started; payload: uint32 LE milliseconds it has run).
RECALL = 0x10
RETURNED = 0x11
KEPT = 0x12

END_STREAM = 0x01
# WS_MESSAGE flags: binary message; the message continues in the next frame.
WS_BINARY = 0x02
WS_MORE = 0x04

# Exit statuses.
EXIT_OK = 0
EXIT_BOOT_ERROR = 3
EXIT_PROTOCOL_ERROR = 70

# Receive buffer: room for one maximal frame plus a full 64 KiB read, so a
# partial frame at the front never shrinks a read below 64 KiB.
BUFFER_SIZE = HEADER_SIZE + MAX_PAYLOAD + 65536
MIN_READ = 65536

_pack = HEADER.pack
_u32 = U32.unpack

# marshal.loads straight from the receive buffer (a memoryview); an
# interpreter whose marshal.loads wants bytes (PyPy) copies first.
loads = marshal.loads
try:
    loads(memoryview(marshal.dumps({})))
except TypeError:
    def loads(data, _loads=marshal.loads):
        return _loads(bytes(data))


def log(msg):
    """Write one message to stderr, which krait copies into its log."""
    try:
        sys.stderr.write("krait_worker: %s\n" % msg)
    except Exception:
        pass


def log_exception(what, where):
    """Log what happened where, with the traceback being handled."""
    log("%s (%s):\n%s" % (what, where, traceback.format_exc().rstrip("\n")))


def exit_now(status=EXIT_OK):
    """Leave at once (socket EOF, protocol error): no atexit, no thread joins
    or task cleanup."""
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except Exception:
            pass
    os._exit(status)


def protocol_error(msg):
    log("protocol error: %s" % msg)
    exit_now(EXIT_PROTOCOL_ERROR)


class ProtocolError(Exception):
    """The peer broke the protocol; the worker must exit with status 70."""


def head_size(headers, status_size=0):
    """The size of a response head as MAX_HEAD counts it."""
    n = status_size
    for name, value in headers:
        n += len(name) + len(value) + 4
    return n


def head_too_large(payload, headers, status_size=0, what="response head"):
    """The error message when a head over MAX_HEAD was encoded as payload,
    else None. Free for usual heads: the encoding is never shorter than
    the size counted, so only a payload over MAX_HEAD is counted."""
    if len(payload) <= MAX_HEAD:
        return None
    n = head_size(headers, status_size)
    if n <= MAX_HEAD:
        return None
    return (
        "the %s is %d bytes (counting the status and len(name) + len(value) + 4 "
        "per header), over krait's limit of %d bytes" % (what, n, MAX_HEAD)
    )


def frame(ftype, flags, stream, payload=b""):
    """Encode one frame as bytes."""
    return _pack(len(payload), ftype, flags, 0, stream) + payload


def header(length, ftype, flags, stream):
    """Encode a frame header alone (the payload is sent next to it)."""
    return _pack(length, ftype, flags, 0, stream)


def reset_frame(stream, reason):
    """W -> K RESET: ends the stream on W's side, saying why."""
    msg = reason.encode("utf-8", "replace")
    return _pack(len(msg), RESET, 0, 0, stream) + msg


def returned_frame(stream):
    """W -> K RETURNED: the recalled request never started; ends the stream."""
    return _pack(0, RETURNED, END_STREAM, 0, stream)


def kept_frame(stream, ms):
    """W -> K KEPT: the recalled request had started ms milliseconds ago."""
    return _pack(4, KEPT, 0, 0, stream) + U32.pack(min(max(int(ms), 0), 0xFFFFFFFF))


BODY_500 = b"Internal Server Error\n"


def frames_500(stream, head):
    """The plain 500 for an app that failed before its response started:
    RESPONSE (head: the interface's encoded 500 head) and the body, ending
    the stream."""
    return b"".join((
        _pack(len(head), RESPONSE, 0, 0, stream), head,
        _pack(len(BODY_500), DATA, END_STREAM, 0, stream), BODY_500,
    ))


class FrameBuffer:
    """A fixed receive buffer that decodes frames in place.

    Usage: recv_into(fb.tail()), then fb.filled(n), then fb.decode(dispatch).
    dispatch(type, flags, stream, payload) receives the payload as a
    memoryview into the buffer, valid only during the call: copy what you
    keep (bytes(payload)); marshal.loads reads it directly.
    """

    __slots__ = ("buf", "view", "start", "end")

    def __init__(self, size=BUFFER_SIZE):
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)
        self.start = 0
        self.end = 0

    def tail(self):
        """The free space after the buffered bytes, to read into."""
        if len(self.buf) - self.end < MIN_READ and self.start:
            self._compact()
        return self.view[self.end:]

    def filled(self, n):
        self.end += n

    def pending(self):
        """Bytes buffered but not yet decoded."""
        return self.end - self.start

    def _compact(self):
        start, end = self.start, self.end
        n = end - start
        if n:
            # bytes() copy: the source and destination may overlap.
            self.buf[0:n] = bytes(self.view[start:end])
        self.start = 0
        self.end = n

    def decode(self, dispatch):
        """Dispatch every complete frame in the buffer, in order."""
        buf = self.buf
        view = self.view
        unpack = HEADER.unpack_from
        start = self.start
        end = self.end
        max_payload = MAX_PAYLOAD
        while end - start >= 12:
            length, ftype, flags, reserved, stream = unpack(buf, start)
            if length > max_payload:
                raise ProtocolError("frame length %d exceeds the maximum" % length)
            # END_STREAM on any frame; BINARY/MORE only on WS_MESSAGE. The
            # outer test is the usual frame's (flags 0 or END_STREAM).
            if (flags > 1 or reserved) and (
                reserved or flags & (0xF8 if ftype == WS_MESSAGE else 0xFE)
            ):
                raise ProtocolError(
                    "frame type %d has reserved bits set (flags 0x%02x, reserved 0x%04x)"
                    % (ftype, flags, reserved)
                )
            stop = start + 12 + length
            if stop > end:
                break
            # Commit the position first: dispatch may read more frames.
            self.start = stop
            dispatch(ftype, flags, stream, view[start + 12:stop])
            start = self.start
            end = self.end
        if start == end:
            self.start = self.end = 0
        elif len(buf) - end < MIN_READ:
            self._compact()


class StreamBase:
    """What K's frames change on one stream, for either interface.

    Dispatcher.dispatch checks the stream id and calls the on_* methods;
    they check the rest (the end of the body, the window, whether this kind
    of stream takes the frame) and raise ProtocolError. Subclasses say how
    a waiter is woken (wake) and where body bytes go (buffer_body), and
    override on_message/on_close (WebSocket) or on_data (no body).
    """

    __slots__ = ("id", "eof", "recv_room", "send_window", "gone")

    def __init__(self, sid, eof):
        self.id = sid
        self.eof = eof                    # K sent END_STREAM: no more body
        self.recv_room = INITIAL_WINDOW   # body bytes K may send before credit
        self.send_window = INITIAL_WINDOW  # bytes W may send before K's credit
        self.gone = False                 # K reset the stream (or the client closed)

    def wake(self):
        """Wake whoever waits for this stream's body, credit or reset."""

    def buffer_body(self, payload):
        """Keep request body bytes (a memoryview: copy them) for the app."""
        raise NotImplementedError

    def charge(self, n, what="DATA"):
        """Count n bytes K sent (in a what frame) against the receive window."""
        room = self.recv_room - n
        if room < 0:
            raise ProtocolError("%s beyond the flow-control window on stream %d" % (what, self.id))
        self.recv_room = room

    def credit(self, n):
        """Give K n bytes of window back; return the WINDOW frame to write."""
        self.recv_room += n
        return _pack(4, WINDOW, 0, 0, self.id) + U32.pack(n)

    # ---- frames from K ----

    def on_data(self, payload, end):
        if self.eof:
            raise ProtocolError("DATA after END_STREAM on stream %d" % self.id)
        if payload:
            self.charge(len(payload))
            self.buffer_body(payload)
        if end:
            self.eof = True
        self.wake()

    def on_window(self, n):
        self.send_window += n
        self.wake()

    def on_reset(self):
        self.gone = True
        self.wake()

    def on_cancel(self, reason):
        """K gave up on the stream (a RESET with a reason: --timeout) and
        wants the app stopped; an interface that can stop it overrides."""
        self.on_reset()

    def on_message(self, payload, flags):
        raise ProtocolError("WS_MESSAGE on stream %d, which is not a WebSocket" % self.id)

    def on_close(self, payload):
        raise ProtocolError("WS_CLOSE on stream %d, which is not a WebSocket" % self.id)


class Dispatcher:
    """The worker's table of open streams and the rules for K's frames.

    Subclasses provide write(data) (queue or send bytes to K) and
    open_stream(sid, end, request) (make the stream for a checked REQUEST
    whose payload decoded to the dict request, put it in self.streams and
    start it), may override drained() (called once SHUTDOWN came and no
    stream is open) and call close_stream(st) when W's side of st ended.

    A stream id is open from its REQUEST until close_stream. K never reuses
    an id, but concurrent REQUESTs may arrive out of order, so a REQUEST
    only has to name an id that is not open. A frame for an id that is not
    open is late (K raced W's end of the stream) and ignored when the id is
    at most the highest K opened, else a protocol error.
    """

    def __init__(self):
        self.fb = FrameBuffer()
        # id -> stream for every stream W has not ended: its length is the
        # number of requests in flight, which K keeps within capacity.
        self.streams = {}
        self.last_id = 0  # highest id K opened: ids above it are unknown
        self.shutting_down = False

    def write(self, data):
        raise NotImplementedError

    def open_stream(self, sid, end, request):
        raise NotImplementedError

    def drained(self):
        """SHUTDOWN came and every stream has ended."""

    def unqueue(self, st):
        """Take st out of the worker's queue if it has not started; True if
        it was there. A worker that queues requests (WSGI) overrides."""
        return False

    def recall(self, st):
        """K asks for st back (RECALL). A worker that queues requests
        (WSGI) overrides: if st has not started it leaves the queue and W
        answers RETURNED; else, and here, W answers KEPT."""
        self.write(kept_frame(st.id, 0))

    def shutdown_now(self):
        """A second SHUTDOWN came: K's graceful timeout ran out. An interface
        that can stop its requests (ASGI: cancel their tasks) overrides;
        WSGI threads cannot be stopped, and K kills a WSGI worker instead."""

    def received(self, n):
        """Dispatch every complete frame after n more bytes were read into
        fb.tail(); exit with status 70 on a protocol error."""
        fb = self.fb
        fb.filled(n)
        try:
            fb.decode(self.dispatch)
        except ProtocolError as e:
            protocol_error(e)

    def close_stream(self, st):
        self.streams.pop(st.id, None)
        if self.shutting_down and not self.streams:
            self.drained()

    def dispatch(self, ftype, flags, sid, payload):
        if ftype == REQUEST:
            if sid == 0 or sid in self.streams:
                raise ProtocolError("REQUEST on stream %d, which is already open" % sid)
            if sid > self.last_id:
                self.last_id = sid
            try:
                request = loads(payload)
            except (ValueError, EOFError, TypeError) as e:
                raise ProtocolError("undecodable REQUEST on stream %d: %s" % (sid, e)) from None
            if type(request) is not dict:
                raise ProtocolError("REQUEST payload on stream %d is not a dict" % sid)
            if self.shutting_down:
                # End it at once so K frees the slot.
                self.write(reset_frame(sid, "worker is shutting down"))
            else:
                self.open_stream(sid, flags & END_STREAM == END_STREAM, request)
            return
        st = self.streams.get(sid)
        if ftype == DATA:
            if st is not None:
                return st.on_data(payload, flags & END_STREAM)
        elif ftype == WINDOW:
            if len(payload) != 4:
                raise ProtocolError("WINDOW payload must be 4 bytes")
            if st is not None:
                return st.on_window(_u32(payload)[0])
        elif ftype == RESET:
            if st is not None:
                if self.unqueue(st):
                    # Never started (it waited in this worker's queue): the
                    # app never sees it, and K gets its slot back now.
                    self.write(reset_frame(sid, "stream reset by krait before it started"))
                    return self.close_stream(st)
                if len(payload):
                    return st.on_cancel(bytes(payload).decode("utf-8", "replace"))
                return st.on_reset()
        elif ftype == RECALL:
            if len(payload):
                raise ProtocolError("RECALL with a payload on stream %d" % sid)
            if st is not None:
                return self.recall(st)
        elif ftype == WS_MESSAGE:
            if st is not None:
                return st.on_message(payload, flags)
        elif ftype == WS_CLOSE:
            if st is not None:
                return st.on_close(payload)
        elif ftype == PING and sid == 0:
            # Answered by whatever reads the socket (the ASGI event loop,
            # the WSGI main thread): a blocked loop misses it.
            if len(payload) > MAX_PING_PAYLOAD:
                raise ProtocolError("PING payload of %d bytes" % len(payload))
            self.write(_pack(len(payload), PONG, 0, 0, 0) + bytes(payload))
            return
        elif ftype == SHUTDOWN and sid == 0:
            if self.shutting_down:
                # The second one: K's graceful timeout ran out.
                return self.shutdown_now()
            self.shutting_down = True
            if not self.streams:
                self.drained()
            return
        else:
            raise ProtocolError("unexpected frame type %d on stream %d" % (ftype, sid))
        if sid == 0 or sid > self.last_id:
            raise ProtocolError("frame type %d on unknown stream %d" % (ftype, sid))
