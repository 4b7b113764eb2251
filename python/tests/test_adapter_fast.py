"""The lean WSGI hot path (wsgi.Stream, Worker.run) keeps every check and
frees each request's objects at once.

In-process tests drive an InlineWorker with REQUEST frames from a fake
socket; GarbageTest runs a real worker process (fake K, socketpair).
"""

import gc
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from fakek import DATA, END_STREAM, RESPONSE, FakeK, environ  # noqa: E402
from krait_worker import wsgi  # noqa: E402
from krait_worker.protocol import (  # noqa: E402
    HEADER,
    REQUEST,
    WS_MESSAGE,
    FrameBuffer,
    ProtocolError,
    StreamBase,
)

from bench_adapter import ENV, go_environ  # noqa: E402


class RecordingSocket:
    """Collects what the worker writes."""

    def __init__(self):
        self.out = bytearray()

    def sendall(self, data):
        self.out += data

    def recv_into(self, buf, nbytes=0, flags=0):
        if flags:
            raise BlockingIOError()  # poll(): nothing new from K
        raise AssertionError("the worker blocked for more frames")

    def frames(self):
        out, frames, i = bytes(self.out), [], 0
        while i < len(out):
            length, ftype, flags, _, sid = HEADER.unpack_from(out, i)
            frames.append((ftype, flags, sid, out[i + 12:i + 12 + length]))
            i += 12 + length
        return frames


def serve_requests(app, count, env=ENV):
    """Hand an InlineWorker count REQUESTs (no body) in one read, run them
    and return the frames it wrote."""
    sock = RecordingSocket()
    w = wsgi.InlineWorker(sock, app)
    payload = go_environ(env)
    blob = b"".join(HEADER.pack(len(payload), REQUEST, END_STREAM, 0, sid) + payload
                    for sid in range(1, count + 1))
    view = w.fb.tail()
    view[:len(blob)] = blob
    w.received(len(blob))
    while w.pending:
        w.run(w.pending.popleft())
    assert not w.streams, w.streams
    return sock.frames()


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello world!"]


def new_stream():
    return wsgi.Stream(wsgi.InlineWorker(RecordingSocket(), hello), 1, {}, True)


# Only CPython frees by reference counting and counts what gc.collect() found.
CPYTHON = sys.implementation.name == "cpython"


@unittest.skipUnless(CPYTHON, "reference counting is CPython's")
class GarbageInProcessTest(unittest.TestCase):
    """env["wsgi.input"] is the Stream and the Stream holds env: the
    adapter breaks that cycle when the request ends, so the collector has
    nothing to do (it used to find 3 objects per request)."""

    def count_garbage(self, app, count):
        gc.collect()
        gc.disable()
        try:
            frames = serve_requests(app, count)
            return frames, gc.collect()
        finally:
            gc.enable()

    def test_hello_leaves_no_cycles(self):
        frames, garbage = self.count_garbage(hello, 50)
        want = []
        for sid in range(1, 51):
            want += [(RESPONSE, 0, sid), (DATA, END_STREAM, sid)]
        self.assertEqual([f[:3] for f in frames], want)
        self.assertTrue(all(f[3] == b"Hello world!" for f in frames if f[0] == DATA))
        self.assertEqual(garbage, 0)

    def test_write_and_iterable_leave_no_cycles(self):
        def app(environ, start_response):
            write = start_response("200 OK", [("Content-Type", "text/plain")])
            write(b"a")
            return iter([b"b", b"c"])

        frames, garbage = self.count_garbage(app, 20)
        want = []
        for sid in range(1, 21):
            want += [(RESPONSE, 0, sid, None), (DATA, 0, sid, b"a"), (DATA, 0, sid, b"b"),
                     (DATA, 0, sid, b"c"), (DATA, END_STREAM, sid, b"")]
        self.assertEqual([f[:3] + (None if f[0] == RESPONSE else f[3],) for f in frames], want)
        self.assertEqual(garbage, 0)


class FrameFlagsTest(unittest.TestCase):
    """FrameBuffer.decode tests the usual flags (0, END_STREAM) first: every
    other bit is still refused, except BINARY/MORE on WS_MESSAGE."""

    def decode(self, ftype, flags, reserved=0):
        fb = FrameBuffer()
        blob = HEADER.pack(0, ftype, flags, reserved, 1)
        fb.tail()[:12] = blob
        fb.filled(12)
        got = []
        fb.decode(lambda *a: got.append(a[:3]))
        return got

    def test_flags(self):
        for ftype in range(1, 0x13):
            allowed = 0x07 if ftype == WS_MESSAGE else 0x01
            for flags in range(256):
                with self.subTest(ftype=ftype, flags=flags):
                    if flags & ~allowed:
                        with self.assertRaises(ProtocolError):
                            self.decode(ftype, flags)
                    else:
                        self.assertEqual(self.decode(ftype, flags), [(ftype, flags, 1)])
            for reserved in (1, 0x100, 0xFFFF):
                for flags in (0, 1):
                    with self.subTest(ftype=ftype, flags=flags, reserved=reserved):
                        with self.assertRaises(ProtocolError):
                            self.decode(ftype, flags, reserved)


class StreamTest(unittest.TestCase):
    def test_every_slot_is_set_and_base_fields_match(self):
        # Stream.__init__ inlines StreamBase.__init__: same values, and no
        # slot (a new StreamBase field included) is left unset.
        st = new_stream()
        ref = object.__new__(wsgi.Stream)
        StreamBase.__init__(ref, 1, True)
        for name in StreamBase.__slots__:
            with self.subTest(slot=name):
                self.assertEqual(getattr(st, name), getattr(ref, name))
        for name in wsgi.Stream.__slots__:
            with self.subTest(slot=name):
                getattr(st, name)


class StartResponseTest(unittest.TestCase):
    """start_response inlines _clean_headers for lists: it must accept and
    reject exactly what _clean_headers does, and return the same length."""

    class S(str):
        pass

    GOOD = [
        [],
        [("A", "1")],
        [("Content-Length", " 12 ")],
        [("content-length", "5")],
        [("CONTENT-LENGTH", "7"), ("X", "y")],
        [("X", "y"), ("Content-Length", "0")],
        [("Content-Length", "x1")],
        [["content-length", "5"]],
        [(S("X"), S("y"))],
        [("A", "b"), (S("Content-Length"), "3")],
        (("A", "b"), ("Content-Length", "4")),
    ]
    BAD = [
        {"A": "b"},
        [("A",)],
        [("A", 1)],
        [(b"A", "b")],
        [None],
        [("A", "b"), None],
        [("Content-Length", "5"), ("X", 1)],
        [("A", "b", "c")],
        "A: b",
        None,
    ]

    def test_headers_as_clean_headers(self):
        for headers in self.GOOD:
            with self.subTest(headers=headers):
                want, want_cl = wsgi._clean_headers(headers)
                st = new_stream()
                st.start_response("200 OK", headers)
                self.assertEqual(list(st.headers), list(want))
                self.assertEqual(st.cl, want_cl)
                for name, value in st.headers:
                    self.assertIs(type(name), str)
                    self.assertIs(type(value), str)
        for headers in self.BAD:
            with self.subTest(headers=headers):
                with self.assertRaises(AssertionError):
                    wsgi._clean_headers(headers)
                st = new_stream()
                with self.assertRaises(AssertionError):
                    st.start_response("200 OK", headers)
                self.assertIsNone(st.status)

    def test_content_length_any_case(self):
        for name in ["Content-Length", "content-length", "CONTENT-LENGTH", "Content-length"]:
            with self.subTest(name=name):
                st = new_stream()
                st.start_response("200 OK", [(name, "5")])
                self.assertEqual(st.cl, 5)
                st.send_list([b"hello world"])
                frames = st.worker.sock.frames()
                self.assertEqual([(f[0], f[1]) for f in frames], [(RESPONSE, 0), (DATA, END_STREAM)])
                self.assertEqual(frames[1][3], b"hello")

    def test_status_checks_survive_the_cache(self):
        bad = [200, b"200 OK", None, "", "20", "2OO OK", "200OK", "abc def", "20 OK"]
        good = ["200 OK", "404 Not Found", "599 Custom", "200"]
        self.keep_status_cache()
        wsgi._GOOD_STATUS.clear()
        for round in range(2):  # the second round: good ones are cached
            for status in good:
                with self.subTest(status=status, round=round):
                    st = new_stream()
                    st.start_response(status, [])
                    self.assertEqual(st.status, status)
            for status in bad:
                with self.subTest(status=status, round=round):
                    st = new_stream()
                    with self.assertRaises(AssertionError):
                        st.start_response(status, [])
                    self.assertIsNone(st.status)
            self.assertEqual(wsgi._GOOD_STATUS, set(good))
        # A str subclass equal to a cached status still becomes an exact str.
        st = new_stream()
        st.start_response(self.S("200 OK"), [])
        self.assertIs(type(st.status), str)

    def keep_status_cache(self):
        saved = set(wsgi._GOOD_STATUS)

        def restore():
            wsgi._GOOD_STATUS.clear()
            wsgi._GOOD_STATUS.update(saved)

        self.addCleanup(restore)

    def test_status_cache_is_bounded(self):
        self.keep_status_cache()
        for i in range(3 * wsgi._GOOD_STATUS_MAX):
            st = new_stream()
            st.start_response("200 Reason %d" % i, [])
            self.assertEqual(st.status, "200 Reason %d" % i)
        self.assertLessEqual(len(wsgi._GOOD_STATUS), wsgi._GOOD_STATUS_MAX)


@unittest.skipUnless(CPYTHON, "reference counting is CPython's")
class GarbageTest(unittest.TestCase):
    """Through a real worker process: the app turns the collector off and
    /collect reports what piled up since the previous /collect."""

    threads = None

    def setUp(self):
        self.k = FakeK(app="adapter_gc:application", threads=self.threads)
        hello = self.k.hello()
        self.assertEqual(hello[4], "ready", hello)

    def tearDown(self):
        self.k.close()

    def test_no_garbage_per_request(self):
        self.k.get("/collect")  # whatever start-up left
        for _ in range(20):
            self.assertEqual(self.k.get("/").body, b"Hello world!")
        for i in range(5):
            body = b"x" * (1000 * i)
            sid = self.k.request(environ("POST", "/read", content_length=len(body)), body=body)
            self.assertEqual(self.k.response(sid).body, body)
        for _ in range(5):
            self.assertEqual(self.k.get("/write").body, b"written and yielded")
        self.assertEqual(self.k.get("/collect").body, b"0")


class ThreadedGarbageTest(GarbageTest):
    threads = 2


if __name__ == "__main__":
    unittest.main()
