"""End-to-end tests of the worker adapter: a fake K drives a real
`python -m krait_worker` process over a socketpair on fd 3."""

import hashlib
import json
import os
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakek import (  # noqa: E402
    APPS_DIR,
    DATA,
    END_STREAM,
    HEADER,
    INITIAL_WINDOW,
    REQUEST,
    RESET,
    RESPONSE,
    SENDFILE,
    SHUTDOWN,
    U32,
    WINDOW,
    FakeK,
    environ,
)


# How long a threaded worker may take to call close() after it ended the
# stream: it does so right after, so seconds are ample even on a busy machine.
CLOSE_WAIT = 5


class WorkerCase(unittest.TestCase):
    threads = None

    def setUp(self):
        self.k = FakeK(threads=self.threads)
        hello = self.k.hello()
        self.assertEqual(hello[4], "ready", hello)

    def tearDown(self):
        self.k.close()

    def closes(self, *want):
        """The names of closed iterables, once all of want are among them;
        fails within seconds, naming what is missing, if close() never came.

        The worker ends a stream before it calls close(), so with threads a
        later request may run before close() did: ask again for a few
        seconds. Without threads the next request runs only after close(),
        so the first answer is final.
        """
        deadline = time.monotonic() + (CLOSE_WAIT if self.threads else 0)
        while True:
            got = json.loads(self.k.get("/closes").body)
            missing = [w for w in want if w not in got]
            if not missing:
                return got
            if time.monotonic() >= deadline:
                self.fail("close() was not called on the app's iterable for %s (threads=%s; "
                          "closed so far: %s)" % (missing, self.threads, got))
            time.sleep(0.01)


class HelloTest(unittest.TestCase):
    def boot(self, app, *, threads=None, interface=None, extra_args=()):
        k = FakeK(app=app, threads=threads, interface=interface, extra_args=extra_args)
        try:
            hello = k.hello()
        finally:
            pass
        return k, hello

    def test_ready(self):
        k, hello = self.boot("routes:application", threads=4)
        self.assertEqual(hello, (3, hello[1], k.proc.pid, "wsgi", "ready", "", 4))
        self.assertIsInstance(hello[1], str)
        status, _, _ = k.stop()
        self.assertEqual(status, 0)

    def check_error(self, app, needles, interface=None, iface="wsgi"):
        k, hello = self.boot(app, interface=interface)
        self.assertEqual(hello[0], 3)
        self.assertEqual(hello[3], iface)
        self.assertEqual(hello[4], "error")
        for needle in needles:
            self.assertIn(needle, hello[5])
        status, _, _ = k.wait()
        self.assertEqual(status, 3)

    def test_errors(self):
        cases = [
            ("broken_syntax:application", ["Traceback", "SyntaxError"]),
            ("no_such_module:app", ["Traceback", "ModuleNotFoundError", "no_such_module"]),
            ("routes:missing", ["cannot find 'missing'", "AppNotFound"]),
            ("routes:CLOSES", ["not callable"]),
            ("raises_on_import", ["Traceback", "RuntimeError: import-time failure"]),
            ("routes:make_app(name)", ["literal"]),
            ("routes:", ["malformed"]),
        ]
        for app, needles in cases:
            with self.subTest(app=app):
                self.check_error(app, needles)

    def test_asgi(self):
        # ASGI itself is tested in test_asgi.py; here only that such apps
        # boot as "asgi" (capacity: unlimited without --limit-concurrency).
        for app, interface in [
            ("asgi_app:app", None),
            ("asgi_app:instance", "auto"),
        ]:
            with self.subTest(app=app):
                k, hello = self.boot(app, interface=interface)
                self.assertEqual(hello[3:], ("asgi", "ready", "", 1000000))
                status, _, _ = k.stop()
                self.assertEqual(status, 0)

    def test_app_specs(self):
        cases = [
            ("routes", "/hello", b"Hello world!"),
            ("routes:application", "/hello", b"Hello world!"),
            ("routes:make_app()", "/", b"factory"),
            ("routes:make_app('hi there')", "/", b"hi there"),
            ("routes:make_app(greeting='kw')", "/", b"kw"),
            ("elsewhere:application", "/", b"from pythonpath"),
        ]
        for app, path, body in cases:
            with self.subTest(app=app):
                k, hello = self.boot(app, extra_args=["--pythonpath", os.path.join(APPS_DIR, "extra")])
                try:
                    self.assertEqual(hello[4], "ready", hello[5])
                    self.assertEqual(k.get(path).body, body)
                finally:
                    k.close()

    def test_bad_arguments(self):
        k = FakeK(extra_args=["--threads", "0"])
        status, _, err = k.wait()
        self.assertEqual(status, 2)
        self.assertIn("--threads", err)


class BasicTest(WorkerCase):
    def test_hello(self):
        r = self.k.get("/hello")
        self.assertEqual(r.status, "200 OK")
        self.assertEqual(r.headers, [("Content-Type", "text/plain"), ("Content-Length", "12")])
        self.assertEqual(r.body, b"Hello world!")
        # Hot path: RESPONSE then one DATA carrying END_STREAM.
        self.assertEqual([(f.type, f.flags) for f in r.frames], [(RESPONSE, 0), (DATA, END_STREAM)])

    def test_many_sequential(self):
        for i in range(50):
            self.assertEqual(self.k.get("/hello").body, b"Hello world!")

    def test_pipelined_batch(self):
        # Several REQUEST frames in one write: all are served, in order.
        ids = list(range(1, 6))
        import marshal
        blob = b"".join(
            HEADER.pack(len(p), REQUEST, END_STREAM, 0, i) + p
            for i in ids
            for p in [marshal.dumps(environ(path="/hello"))]
        )
        self.k.send_raw(blob)
        self.k.next_id = 6
        for i in ids:
            self.assertEqual(self.k.response(i).body, b"Hello world!")

    def test_empty_body(self):
        r = self.k.get("/empty")
        self.assertEqual(r.status, "204 No Content")
        self.assertEqual([(f.type, f.flags) for f in r.frames], [(RESPONSE, END_STREAM)])

    def test_environ(self):
        r = self.k.get("/environ", query="a=1&b=%20", headers={"HTTP_X_THING": "caf\u00e9"})
        env = json.loads(r.body)
        self.assertEqual(env["wsgi.version"], [1, 0])
        self.assertIs(env["wsgi.multithread"], False)
        self.assertIs(env["wsgi.multiprocess"], True)
        self.assertIs(env["wsgi.run_once"], False)
        self.assertIs(env["wsgi.input_terminated"], True)
        self.assertTrue(env["input.read"])
        self.assertTrue(env["file_wrapper"])
        self.assertEqual(env["wsgi.url_scheme"], "http")
        self.assertEqual(env["QUERY_STRING"], "a=1&b=%20")
        self.assertEqual(env["HTTP_X_THING"], "caf\u00e9")
        self.assertEqual(env["REQUEST_METHOD"], "GET")
        _, _, err = self.k.stop()
        self.assertIn("errors-marker\n", err)

    def test_not_found(self):
        self.assertEqual(self.k.get("/nope").status, "404 Not Found")

    def test_latin1_header(self):
        r = self.k.get("/latin1")
        self.assertEqual(r.status, "200 OK")
        self.assertEqual(r.header_dict["x-latin"], "caf\u00e9")


class InputTest(WorkerCase):
    def post(self, query, body, chunk=16384, content_length=True):
        env = environ("POST", "/input", query, content_length=len(body) if content_length else None)
        sid = self.k.request(env, body=body, chunk=chunk)
        if len(body) > INITIAL_WINDOW:
            # The rest needs credit from the worker, which it gives as the app reads.
            self.k.send_body(sid, body, chunk)
        r = self.k.response(sid)
        self.assertEqual(r.status, "200 OK", r.body)
        return r.body.decode()

    def test_modes(self):
        lines = b"".join(b"line %d %s\n" % (i, b"z" * (i % 300)) for i in range(6000))
        body = lines + b"no newline at the end"
        self.assertGreater(len(body), 3 * INITIAL_WINDOW)
        want = "%d %s" % (len(body), hashlib.sha256(body).hexdigest())
        for query in ["mode=read", "mode=read-1", "mode=readn&n=1", "mode=readn&n=777",
                      "mode=readn&n=300000", "mode=readline", "mode=readline-limit&n=50",
                      "mode=iter", "mode=readlines"]:
            if query == "mode=readn&n=1":
                data = body[:20000]
                self.assertEqual(self.post(query, data, chunk=999),
                                 "%d %s" % (len(data), hashlib.sha256(data).hexdigest()))
                continue
            with self.subTest(query=query):
                self.assertEqual(self.post(query, body, chunk=7000), want)

    def test_small_and_empty(self):
        for body in [b"", b"x", b"a\nb\n"]:
            with self.subTest(body=body):
                want = "%d %s" % (len(body), hashlib.sha256(body).hexdigest())
                self.assertEqual(self.post("mode=read", body), want)
                self.assertEqual(self.post("mode=readline", body), want)

    def test_chunked_body_without_content_length(self):
        body = os.urandom(INITIAL_WINDOW * 2 + 5)
        want = "%d %s" % (len(body), hashlib.sha256(body).hexdigest())
        self.assertEqual(self.post("mode=readn&n=4096", body, content_length=False), want)

    def test_no_body_request(self):
        # END_STREAM on REQUEST: wsgi.input is empty.
        r = self.k.get("/input", query="mode=read")
        self.assertEqual(r.body.decode(), "0 " + hashlib.sha256(b"").hexdigest())


class ResponseTest(WorkerCase):
    def test_streaming_chunk_arrives_before_next_is_produced(self):
        sid = self.k.request(environ("POST", "/stream"), body=b"", end=False)
        f = self.k.recv()
        self.assertEqual((f.type, f.stream), (RESPONSE, sid))
        f = self.k.recv()
        self.assertEqual((f.type, f.payload, f.end), (DATA, b"first", False))
        # Only now does the app get what it waits for before its next chunk.
        self.k.send(DATA, END_STREAM, sid, b"go")
        r = self.k.response(sid, started=True)
        self.assertEqual(r.body, b"second:go")
        self.assertIn("stream", self.closes("stream"))

    def test_write_callable(self):
        r = self.k.get("/write")
        self.assertEqual(r.body, b"abcd")
        datas = [f.payload for f in r.frames if f.type == DATA]
        self.assertEqual(datas[:3], [b"a", b"bc", b"d"])
        self.assertIn("write", self.closes("write"))

    def test_exc_info_before_headers_replaces_status(self):
        r = self.k.get("/exc-before")
        self.assertEqual(r.status, "500 Oops")
        self.assertEqual(r.body, b"oops")

    def test_exc_info_after_headers_reraises(self):
        r = self.k.get("/exc-after")
        self.assertEqual(r.status, "200 OK")
        self.assertEqual(r.body, b"partial")
        self.assertIsNotNone(r.reset)
        self.assertEqual(self.k.get("/hello").body, b"Hello world!")
        _, _, err = self.k.stop()
        self.assertIn("ValueError: boom after headers", err)

    def test_app_errors_give_500_and_worker_keeps_serving(self):
        for path, needle in [
            ("/error", "RuntimeError: kaboom"),
            ("/twice", "start_response() called a second time"),
            ("/error-before", "fails before the first chunk"),
            ("/str-body", "must be bytes"),
            ("/bad-status", "status must be a str"),
            ("/bad-header", "must be str"),
            ("/non-latin1", "latin-1"),
            ("/no-start", "without calling start_response"),
        ]:
            with self.subTest(path=path):
                r = self.k.get(path)
                self.assertEqual(r.status, "500 Internal Server Error")
                self.assertEqual(r.body, b"Internal Server Error\n")
                self.assertIsNone(r.reset)
                self.assertNotIn(needle.encode(), r.body)
                self.assertEqual(self.k.get("/hello").body, b"Hello world!")
        self.assertIn("error-before", self.closes("error-before"))
        _, _, err = self.k.stop()
        self.assertIn("RuntimeError: kaboom", err)
        self.assertIn("Traceback", err)

    def test_error_after_first_chunk_resets(self):
        r = self.k.get("/error-after")
        self.assertEqual(r.body, b"chunk")
        self.assertIn("RuntimeError", r.reset)
        self.assertIn("error-after", self.closes("error-after"))

    def test_content_length_truncates_and_ends_early(self):
        r = self.k.get("/content-length")
        self.assertEqual(r.body, b"hello")
        # END_STREAM rides on the DATA that completes Content-Length.
        self.assertEqual([(f.type, f.flags) for f in r.frames], [(RESPONSE, 0), (DATA, END_STREAM)])
        self.assertIn("content-length", self.closes("content-length"))

    def test_response_flow_control(self):
        for path in ["/big", "/big-stream"]:
            with self.subTest(path=path):
                size = 5 * INITIAL_WINDOW + 1024 if path == "/big" else 4 << 20
                sid = self.k.request(environ(path=path, query=str(size)))
                # Grant credit only after the whole window arrived; the fake
                # K asserts the worker never goes beyond what was granted.
                granted = INITIAL_WINDOW
                got = 0
                body = []
                while True:
                    f = self.k.recv()
                    self.assertEqual(f.stream, sid)
                    if f.type == DATA:
                        got += len(f.payload)
                        body.append(f.payload)
                        self.assertLessEqual(got, granted)
                        if got == granted:
                            self.k.send(WINDOW, 0, sid, U32.pack(INITIAL_WINDOW))
                            granted += INITIAL_WINDOW
                    if f.end:
                        break
                self.assertEqual(got, size // 65536 * 65536 if path == "/big-stream" else size // 256 * 256)

    def test_stale_frames_are_ignored(self):
        # The app answers without reading the body K is still sending.
        sid = self.k.request(environ("POST", "/hello"), body=b"early", end=False)
        r = self.k.response(sid)
        self.assertEqual(r.body, b"Hello world!")
        # Body, credit and reset racing the worker's END_STREAM are harmless.
        self.k.send(DATA, END_STREAM, sid, b"late")
        self.k.send(WINDOW, 0, sid, U32.pack(100))
        self.k.send(RESET, 0, sid)
        self.assertEqual(self.k.get("/hello").body, b"Hello world!")


class FileWrapperTest(WorkerCase):
    def setUp(self):
        super().setUp()
        fd, self.path = tempfile.mkstemp()
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(range(256)) * 100)
        self.addCleanup(os.unlink, self.path)

    def test_sendfile_for_real_file(self):
        r = self.k.get("/file", query=self.path)
        self.assertEqual(r.status, "200 OK")
        self.assertEqual(r.sendfile, (os.path.abspath(self.path), 10, 25600 - 10))
        self.assertEqual([(f.type, f.flags) for f in r.frames], [(RESPONSE, 0), (SENDFILE, END_STREAM)])

    def test_sendfile_respects_content_length(self):
        r = self.k.get("/file-cl", query=self.path)
        self.assertEqual(r.sendfile, (os.path.abspath(self.path), 0, 7))

    def test_bytesio_falls_back_to_data(self):
        r = self.k.get("/bytesio")
        self.assertIsNone(r.sendfile)
        self.assertEqual(r.body, b"bytes io body" * 1000)
        self.assertEqual(len([f for f in r.frames if f.type == DATA and f.payload]), 3)


class ResetTest(WorkerCase):
    def test_reset_during_streaming(self):
        sid = self.k.request(environ(path="/infinite"))
        f = self.k.recv()
        self.assertEqual(f.type, RESPONSE)
        self.k.send(RESET, 0, sid)
        while True:
            f = self.k.recv()
            self.assertEqual(f.stream, sid)
            if f.type == RESET:
                break
            self.assertEqual(f.type, DATA)
            self.assertFalse(f.end)
        self.assertIn("infinite", self.closes("infinite"))
        self.assertEqual(self.k.get("/hello").body, b"Hello world!")

    def test_reset_while_reading_input(self):
        # The app reads 64 KiB, returns credit for it (so K knows it is
        # inside read()) and blocks for more; then K resets the stream.
        sid = self.k.request(environ("POST", "/wait-input"), body=b"x" * 65536, end=False)
        f = self.k.recv()
        self.assertEqual((f.type, f.stream), (WINDOW, sid))
        self.k.send(RESET, 0, sid)
        r = self.k.response(sid)
        self.assertIsNotNone(r.reset)
        self.assertIsNone(r.status)
        closes = self.closes("input-error:StreamReset", "wait-input")
        self.assertIn("input-error:StreamReset", closes)
        self.assertIn("wait-input", closes)


    def test_reset_before_the_app_ran(self):
        # A request queued behind a busy one and reset meanwhile never runs.
        a = self.k.request(environ("POST", "/wait-input"), body=b"a", end=False)
        b = self.k.request(environ(path="/record", query="queued"))
        self.k.send(RESET, 0, b)
        self.k.send(DATA, END_STREAM, a, b"")
        # The queued one ends at once (protocol version 3: a RESET takes a
        # request that has not started out of the queue), maybe before a's.
        others = []
        self.assertEqual(self.k.response(a, other=others).body, b"a")
        if others:
            self.assertEqual([(f.type, f.stream) for f in others], [(RESET, b)])
        else:
            self.assertIsNotNone(self.k.response(b).reset)
        self.assertNotIn("ran:queued", self.closes())


class ShutdownTest(WorkerCase):
    def test_shutdown_drains_in_flight_then_exits_0(self):
        sid = self.k.request(environ("POST", "/wait-input"), body=b"part1 ", end=False)
        self.k.send(SHUTDOWN, 0, 0)
        self.k.send(DATA, END_STREAM, sid, b"part2")
        r = self.k.response(sid)
        self.assertEqual(r.body, b"part1 part2")
        status, _, _ = self.k.wait()
        self.assertEqual(status, 0)

    def test_shutdown_idle(self):
        self.k.send(SHUTDOWN, 0, 0)
        status, _, _ = self.k.wait()
        self.assertEqual(status, 0)

    def test_socket_eof_exits(self):
        status, _, _ = self.k.stop()
        self.assertEqual(status, 0)

    def test_protocol_errors_exit_70(self):
        cases = [
            HEADER.pack(0, 0x42, 0, 0, 1),  # unknown type
            HEADER.pack(0, REQUEST, 0x02, 0, 1),  # unknown flag
            HEADER.pack(0, SHUTDOWN, 0, 7, 0),  # reserved bits
            HEADER.pack(2 << 20, DATA, 0, 0, 1),  # too long
            HEADER.pack(3, REQUEST, 1, 0, 1) + b"\xff\xff\xff",  # bad marshal
            HEADER.pack(4, DATA, 0, 0, 99) + b"abcd",  # unknown stream
            HEADER.pack(2, WINDOW, 0, 0, 1) + b"ab",
        ]
        for blob in cases:
            with self.subTest(blob=blob):
                k = FakeK()
                try:
                    k.hello()
                    k.send_raw(blob)
                    status, _, err = k.wait()
                    self.assertEqual(status, 70, err)
                    self.assertIn("protocol error", err)
                finally:
                    k.close()

    def test_window_overrun_is_protocol_error(self):
        # Threads, so the main thread reads frames while the app (which never
        # reads its body, so returns no credit) waits.
        k = FakeK(threads=2)
        try:
            k.hello()
            sid = k.request(environ("POST", "/wait-event", "never"), body=b"", end=False)
            k.send(DATA, 0, sid, b"x" * INITIAL_WINDOW)
            k.send(DATA, 0, sid, b"y")
            status, _, err = k.wait()
            self.assertEqual(status, 70)
            self.assertIn("window", err)
        finally:
            k.close()


class ValidatorTest(WorkerCase):
    """wsgiref.validate checks the adapter's environ and calls."""

    def test_validated_app(self):
        r = self.k.get("/validate")
        self.assertEqual((r.status, r.body), ("200 OK", b"ok:"))
        body = b"validated body" * 100
        sid = self.k.request(environ("POST", "/validate", content_length=len(body)), body=body)
        r = self.k.response(sid)
        self.assertEqual((r.status, r.body), ("200 OK", b"ok:" + body))
        self.assertEqual(self.closes().count("validate"), 2)  # inline: no race
        _, _, err = self.k.stop()
        self.assertNotIn("Traceback", err)
        self.assertIn("validated", err)


MAX_HEAD = 65536  # docs/protocol.md, "Response head limit"
MAX_PAYLOAD = 1 << 20


class HeadLimitTest(unittest.TestCase):
    """A response head over MAX_HEAD is the app's error: a 500, a log line
    naming the limit, no frame over MAX_PAYLOAD, and the worker lives on."""

    threads = None

    def setUp(self):
        self.k = FakeK(app="resp_wsgi:application", threads=self.threads)
        hello = self.k.hello()
        self.assertEqual(hello[4], "ready", hello)

    def tearDown(self):
        self.k.close()

    def test_limit(self):
        r = self.k.get("/head", query=str(MAX_HEAD))
        self.assertEqual((r.status, r.body), ("200 OK", b"ok"))
        self.assertEqual(len(r.status) + sum(len(n) + len(v) + 4 for n, v in r.headers), MAX_HEAD)
        cases = [("/head", str(MAX_HEAD + 1)), ("/huge", ""), ("/many", ""),
                 ("/huge-stream", str(MAX_HEAD + 1))]
        for path, query in cases:
            with self.subTest(path=path):
                r = self.k.get(path, query=query)
                self.assertEqual(r.status, "500 Internal Server Error")
                self.assertEqual(r.body, b"Internal Server Error\n")
                self.assertIsNone(r.reset)
                self.assertTrue(all(len(f.payload) <= MAX_PAYLOAD for f in r.frames))
        self.assertEqual(self.k.get("/pid").body, str(self.k.proc.pid).encode())
        status, _, err = self.k.stop()
        self.assertEqual(status, 0)
        self.assertEqual(err.count("over krait's limit of 65536 bytes"), len(cases), err)


class ThreadedHeadLimitTest(HeadLimitTest):
    threads = 4


class ThreadedTest(WorkerCase):
    threads = 4

    def test_environ_multithread(self):
        self.assertIs(json.loads(self.k.get("/environ").body)["wsgi.multithread"], True)

    def test_two_slow_requests_at_once(self):
        # /wait-event blocks its thread until /set-event runs: only possible
        # when both run concurrently.
        a = self.k.request(environ(path="/wait-event", query="pair"))
        b = self.k.request(environ(path="/set-event", query="pair"))
        other = []
        rb = self.k.response(b, other=other)
        self.assertEqual(rb.body, b"set")
        ra = self.k.response(a)
        self.assertEqual(ra.body, b"ok")

    def test_streaming_with_event(self):
        a = self.k.request(environ(path="/stream-event"))
        f = self.k.recv()
        self.assertEqual((f.type, f.stream), (RESPONSE, a))
        f = self.k.recv()
        self.assertEqual((f.payload, f.end), (b"first", False))
        b = self.k.request(environ(path="/set-event", query="stream"))
        frames = self.collect({a, b})
        self.assertEqual(b"".join(f.payload for f in frames[b] if f.type == DATA), b"set")
        self.assertEqual(b"".join(f.payload for f in frames[a] if f.type == DATA), b"second")

    def collect(self, pending, frames=None):
        """Read frames until every stream in pending ended; by stream."""
        frames = {} if frames is None else frames
        pending = set(pending)
        while pending:
            f = self.k.recv()
            if f.type == WINDOW:
                self.k.windows[f.stream] = self.k.windows.get(f.stream, 0) + U32.unpack(f.payload)[0]
                continue
            frames.setdefault(f.stream, []).append(f)
            if f.end or f.type == RESET:
                pending.discard(f.stream)
        return frames

    def test_concurrent_bodies_and_errors(self):
        body = os.urandom(INITIAL_WINDOW + 12345)
        want = ("%d %s" % (len(body), hashlib.sha256(body).hexdigest())).encode()
        sids = [self.k.request(environ("POST", "/input", "mode=readn&n=5000", content_length=len(body)),
                               body=body[:INITIAL_WINDOW], end=False) for _ in range(3)]
        e = self.k.request(environ(path="/error"))
        results = {}
        for sid in sids:
            for f in self.k.send_body(sid, body[INITIAL_WINDOW:], 5000):
                results.setdefault(f.stream, []).append(f)
        ended = {s for s, fs in results.items() if fs[-1].end or fs[-1].type == RESET}
        self.collect(set(sids + [e]) - ended, results)
        for sid in sids:
            data = b"".join(f.payload for f in results[sid] if f.type == DATA)
            self.assertEqual(data, want)
        self.assertIn(b"Internal Server Error", b"".join(f.payload for f in results[e] if f.type == DATA))

    def test_shutdown_drains_threads(self):
        sid = self.k.request(environ("POST", "/wait-input"), body=b"t1 ", end=False)
        self.k.send(SHUTDOWN, 0, 0)
        self.k.send(DATA, END_STREAM, sid, b"t2")
        r = self.k.response(sid)
        self.assertEqual(r.body, b"t1 t2")
        status, _, _ = self.k.wait()
        self.assertEqual(status, 0)

    def test_request_after_shutdown_is_refused(self):
        sid = self.k.request(environ("POST", "/wait-input"), body=b"", end=False)
        self.k.send(SHUTDOWN, 0, 0)
        late = self.k.request(environ(path="/hello"))
        r = self.k.response(late)
        self.assertIn("shutting down", r.reset)
        self.k.send(DATA, END_STREAM, sid, b"done")
        self.assertEqual(self.k.response(sid).body, b"done")
        status, _, _ = self.k.wait()
        self.assertEqual(status, 0)


class ThreadedResetTest(ResetTest):
    threads = 2

    test_reset_before_the_app_ran = None  # needs requests to queue behind each other


class ThreadedFlowTest(ResponseTest):
    threads = 3

    test_streaming_chunk_arrives_before_next_is_produced = None


if __name__ == "__main__":
    unittest.main()
