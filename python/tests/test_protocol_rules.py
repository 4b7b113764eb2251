"""The protocol's rules for K's frames (docs/protocol.md: stream ids, the end
of a request body, flow-control windows, late frames, SHUTDOWN) hold alike
for every worker kind: each case runs against the inline WSGI worker, the
threaded WSGI worker and the ASGI worker, real processes driven by a fake K
over a socketpair. The rules live once, in protocol.Dispatcher and
protocol.StreamBase; these tests keep the interfaces from drifting apart.
"""

import marshal
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakek import FakeK, environ  # noqa: E402
from fakek import DATA, END_STREAM, INITIAL_WINDOW, REQUEST, RESET, RESPONSE  # noqa: E402
from fakek import SHUTDOWN, U32, WINDOW  # noqa: E402
from test_asgi import WS_CLOSE, WS_MESSAGE, scope  # noqa: E402

# The two streams every violation case opens first: A's app waits for its
# body (an inline worker pumps frames meanwhile), B's app holds without
# reading its body, so B returns no window credit.
A, B = 1, 2

# Seconds a worker may take to exit after a protocol error: it exits at
# once, so this is ample on a busy machine and keeps a failure quick.
EXIT_WAIT = 10


class Rules:
    """The cases; subclasses say which worker runs them."""

    app = None
    threads = None

    def payload(self, path):
        return marshal.dumps(environ("POST", path))

    def start(self):
        k = FakeK(app=self.app, threads=self.threads)
        self.addCleanup(k.close)
        hello = k.hello()
        self.assertEqual(hello[4], "ready", hello)
        return k

    def open_two(self, k):
        k.send(REQUEST, 0, A, self.payload("/read"))
        k.send(REQUEST, 0, B, self.payload("/hold"))

    def wait_exit(self, k, want):
        """The worker's (status, stderr) once it exited, which it must do
        within EXIT_WAIT seconds; want says why it should."""
        try:
            k.proc.wait(EXIT_WAIT)
        except subprocess.TimeoutExpired:
            self.fail("the worker did not exit within %d s; want %s" % (EXIT_WAIT, want))
        status, _, err = k.wait()
        return status, err

    def assert_protocol_error(self, k, message):
        # The worker exits as soon as it decodes the frame: a worker still
        # running after EXIT_WAIT seconds accepted it.
        status, err = self.wait_exit(k, "a protocol error %r" % message)
        self.assertEqual(status, 70, err)
        self.assertIn("protocol error: " + message, err)

    def test_violations_exit_70(self):
        # (case, frames after A and B are open, what the worker must say)
        cases = [
            ("DATA on a stream K never opened", [(DATA, 0, 3, b"x")],
             "frame type 3 on unknown stream 3"),
            ("WINDOW on stream 0", [(WINDOW, 0, 0, U32.pack(1))],
             "frame type 5 on unknown stream 0"),
            ("RESET on a stream K never opened", [(RESET, 0, 9, b"")],
             "frame type 6 on unknown stream 9"),
            ("WS_CLOSE on a stream K never opened", [(WS_CLOSE, 0, 9, marshal.dumps((1000, "")))],
             "frame type 13 on unknown stream 9"),
            ("REQUEST on an open stream", [(REQUEST, END_STREAM, B, self.payload("/hello"))],
             "REQUEST on stream 2, which is already open"),
            ("REQUEST on stream 0", [(REQUEST, END_STREAM, 0, self.payload("/hello"))],
             "REQUEST on stream 0, which is already open"),
            ("undecodable REQUEST", [(REQUEST, END_STREAM, 3, b"\xff\xff")],
             "undecodable REQUEST on stream 3"),
            ("REQUEST that is not a dict", [(REQUEST, END_STREAM, 3, marshal.dumps([1]))],
             "REQUEST payload on stream 3 is not a dict"),
            ("DATA after END_STREAM", [(DATA, END_STREAM, B, b""), (DATA, 0, B, b"x")],
             "DATA after END_STREAM on stream 2"),
            ("DATA beyond the window", [(DATA, 0, B, b"x" * INITIAL_WINDOW), (DATA, 0, B, b"y")],
             "DATA beyond the flow-control window on stream 2"),
            ("short WINDOW", [(WINDOW, 0, B, b"ab")], "WINDOW payload must be 4 bytes"),
            ("SHUTDOWN on a stream", [(SHUTDOWN, 0, B, b"")], "unexpected frame type 8 on stream 2"),
            ("RESPONSE from K", [(RESPONSE, 0, B, marshal.dumps((200, [])))],
             "unexpected frame type 4 on stream 2"),
            ("WS_MESSAGE on an HTTP stream", [(WS_MESSAGE, 0, B, b"x")],
             "WS_MESSAGE on stream 2, which is not a WebSocket"),
        ]
        for name, frames, message in cases:
            with self.subTest(name):
                k = self.start()
                self.open_two(k)
                for f in frames:
                    k.send(*f)
                self.assert_protocol_error(k, message)

    def test_late_frames_are_ignored(self):
        k = self.start()
        k.send(REQUEST, 0, A, self.payload("/hello"))
        r = k.response(A)
        self.assertEqual(r.body, b"Hello world!")
        # A ended on W's side; K's frames racing that end are harmless.
        k.send(DATA, 0, A, b"late")
        k.send(DATA, END_STREAM, A, b"")
        k.send(WINDOW, 0, A, U32.pack(100))
        k.send(RESET, 0, A)
        k.send(WS_MESSAGE, 0, A, b"late")
        k.send(WS_CLOSE, 0, A, marshal.dumps((1000, "")))
        # REQUESTs may arrive out of id order: 3 before 2.
        for sid in (3, 2):
            k.send(REQUEST, END_STREAM, sid, self.payload("/hello"))
            self.assertEqual(k.response(sid).body, b"Hello world!")
        k.send(SHUTDOWN, 0, 0)
        status, err = self.wait_exit(k, "exit 0 after SHUTDOWN")
        self.assertEqual(status, 0, err)
        self.assertNotIn("protocol error", err)

    def test_shutdown_when_idle_exits_0(self):
        k = self.start()
        k.send(REQUEST, END_STREAM, A, self.payload("/hello"))
        self.assertEqual(k.response(A).body, b"Hello world!")
        k.send(SHUTDOWN, 0, 0)
        status, err = self.wait_exit(k, "exit 0 after SHUTDOWN")
        self.assertEqual(status, 0, err)

    def test_shutdown_refuses_new_requests_and_drains(self):
        k = self.start()
        k.send(REQUEST, 0, A, self.payload("/read"))
        k.send(SHUTDOWN, 0, 0)
        k.send(REQUEST, END_STREAM, B, self.payload("/hello"))
        refused = k.response(B)
        self.assertEqual(refused.reset, "worker is shutting down")
        self.assertIsNone(refused.status)
        k.send(DATA, END_STREAM, A, b"abc")
        self.assertEqual(k.response(A).body, b"3")
        status, err = self.wait_exit(k, "exit 0 after SHUTDOWN")
        self.assertEqual(status, 0, err)


class InlineWSGIRules(Rules, unittest.TestCase):
    app = "rules_app:application"


class ThreadedWSGIRules(Rules, unittest.TestCase):
    app = "rules_app:application"
    threads = 2


class ASGIRules(Rules, unittest.TestCase):
    app = "rules_app:asgi_app"

    def payload(self, path):
        return marshal.dumps(scope(path, method="POST"))

    def test_websocket_frames(self):
        def ws(k):
            k.send(REQUEST, END_STREAM, A, marshal.dumps(scope("/hold", kind="websocket")))

        cases = [
            ("WS_MESSAGE beyond the window",
             [(WS_MESSAGE, 0, A, b"x" * INITIAL_WINDOW), (WS_MESSAGE, 0, A, b"y")],
             "WS_MESSAGE beyond the flow-control window on stream 1"),
            ("DATA on a WebSocket stream", [(DATA, 0, A, b"x")], "DATA on WebSocket stream 1"),
            ("WS_MESSAGE after WS_CLOSE",
             [(WS_CLOSE, 0, A, marshal.dumps((1000, ""))), (WS_MESSAGE, 0, A, b"x")],
             "WS_MESSAGE on stream 1 after WS_CLOSE"),
        ]
        for name, frames, message in cases:
            with self.subTest(name):
                k = self.start()
                ws(k)
                for f in frames:
                    k.send(*f)
                self.assert_protocol_error(k, message)


if __name__ == "__main__":
    unittest.main()
