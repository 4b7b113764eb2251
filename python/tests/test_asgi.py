"""End-to-end tests of the ASGI worker: a fake K drives a real
`python -m krait_worker` process over a socketpair on fd 3."""

import hashlib
import json
import marshal
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakek import (  # noqa: E402
    APPS_DIR,
    PYTHON_DIR,
    DATA,
    END_STREAM,
    INITIAL_WINDOW,
    REQUEST,
    RESET,
    RESPONSE,
    SENDFILE,
    SHUTDOWN,
    U32,
    WINDOW,
    FakeK,
)

TRAILERS, EARLY_HINT, WS_ACCEPT, WS_MESSAGE, WS_CLOSE = 0x09, 0x0A, 0x0B, 0x0C, 0x0D
WS_BINARY, WS_MORE = 0x02, 0x04
MAX_PAYLOAD = 1 << 20


def scope(path="/", method="GET", query=b"", headers=None, kind="http"):
    s = {
        "type": kind,
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers if headers is not None else [(b"host", b"localhost:8000")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    if kind == "http":
        s["method"] = method
    else:
        s["subprotocols"] = []
    return s


class Result:
    def __init__(self):
        self.status = None
        self.headers = None
        self.trailers_flag = None
        self.body = b""
        self.trailers = None
        self.hints = []
        self.sendfile = None
        self.reset = None
        self.frames = []


class AK(FakeK):
    """FakeK plus the ASGI frames."""

    def __init__(self, app="asgi_routes:app", **kw):
        super().__init__(app=app, **kw)

    def open(self, sc, body=None, end=True):
        sid = self.next_id
        self.next_id += 1
        payload = marshal.dumps(sc)
        if body is None:
            self.send(REQUEST, END_STREAM if end else 0, sid, payload)
        else:
            self.send(REQUEST, 0, sid, payload)
            self.windows[sid] = INITIAL_WINDOW
        return sid

    def next_msg(self, sid):
        """Next frame on sid that is not WINDOW."""
        while True:
            f = self.next_on(sid)
            if f.type != WINDOW:
                return f

    def next_on(self, sid):
        """Next frame on sid (WINDOW credit for our body is recorded)."""
        while True:
            f = self.recv()
            if f.type == WINDOW:
                self.windows[f.stream] = self.windows.get(f.stream, 0) + U32.unpack(f.payload)[0]
                if f.stream == sid:
                    return f
                continue
            assert f.stream == sid, "frame %r on another stream" % f
            return f

    def result(self, sid, grant=True, r=None):
        """Collect frames on sid until the worker ends it."""
        r = r or Result()
        while True:
            f = self.next_on(sid)
            r.frames.append(f)
            if f.type == WINDOW:
                continue
            if f.type == RESPONSE:
                assert r.status is None, "second RESPONSE"
                r.status, r.headers, r.trailers_flag = f.value()
            elif f.type == EARLY_HINT:
                assert r.status is None
                r.hints.append(f.value())
            elif f.type == DATA:
                assert r.status is not None
                r.body += f.payload
                if grant and f.payload and not f.end:
                    self.send(WINDOW, 0, sid, U32.pack(len(f.payload)))
            elif f.type == SENDFILE:
                r.sendfile = f.value()
            elif f.type == TRAILERS:
                assert f.end
                r.trailers = f.value()
            elif f.type == RESET:
                r.reset = f.payload.decode()
                return r
            else:
                raise AssertionError("unexpected frame %r" % f)
            if f.end:
                return r

    def http(self, path, **kw):
        return self.result(self.open(scope(path, **kw)))

    def events(self):
        return json.loads(self.http("/events").body)


class ASGICase(unittest.TestCase):
    app = "asgi_routes:app"
    args = ()
    env = None

    def setUp(self):
        self.k = AK(app=self.app, extra_args=self.args, env=self.env)
        self.hello = self.k.hello()
        self.assertEqual(self.hello[3:5], ("asgi", "ready"), self.hello)

    def tearDown(self):
        self.k.close()


class HTTPTest(ASGICase):
    def test_hello(self):
        self.assertEqual(self.hello[6], 1000000)
        r = self.k.http("/hello")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers, [(b"content-type", b"text/plain")])
        self.assertIs(r.trailers_flag, False)
        self.assertEqual(r.body, b"Hello world!")
        self.assertEqual([f.type for f in r.frames], [RESPONSE, DATA])
        self.assertTrue(r.frames[-1].end)

    def test_scope(self):
        hdrs = [(b"host", b"example.com"), (b"x-a", b"1"), (b"x-a", b"2")]
        r = self.k.http("/scope", method="POST", query=b"a=1&b=%20", headers=hdrs)
        s = json.loads(r.body)
        self.assertEqual(s["type"], "http")
        self.assertEqual(s["asgi"], {"version": "3.0", "spec_version": "2.4"})
        self.assertEqual(s["method"], "POST")
        self.assertEqual(s["path"], "/scope")
        self.assertEqual(s["raw_path"], {"bytes": "/scope"})
        self.assertEqual(s["query_string"], {"bytes": "a=1&b=%20"})
        self.assertEqual(s["headers"], [[{"bytes": "host"}, {"bytes": "example.com"}],
                                        [{"bytes": "x-a"}, {"bytes": "1"}],
                                        [{"bytes": "x-a"}, {"bytes": "2"}]])
        self.assertEqual(s["client"], ["127.0.0.1", 50000])
        self.assertEqual(s["server"], ["127.0.0.1", 8000])
        self.assertEqual(s["root_path"], "")
        self.assertEqual(s["http_version"], "1.1")
        self.assertEqual(s["state"], {"started": True, "counter": 0})
        for ext in ("http.response.trailers", "http.response.pathsend", "http.response.early_hint"):
            self.assertEqual(s["extensions"][ext], {})

    def test_state_is_a_copy_per_request(self):
        self.assertEqual(json.loads(self.k.http("/state").body)["counter"], 1)
        self.assertEqual(json.loads(self.k.http("/state").body)["counter"], 1)

    def test_body_streaming_with_flow_control(self):
        body = os.urandom(3 * INITIAL_WINDOW + 12345)
        sid = self.k.open(scope("/echo", method="POST"), body=body)
        other = self.k.send_body(sid, body, chunk=32768)
        self.assertEqual(other, [])
        r = self.k.result(sid)
        info = json.loads(r.body)
        self.assertEqual(info["len"], len(body))
        self.assertEqual(info["sha"], hashlib.sha256(body).hexdigest())
        self.assertGreater(info["messages"], 1)

    def test_empty_body_with_end_on_data(self):
        sid = self.k.open(scope("/echo", method="POST"), body=b"")
        self.k.send(DATA, END_STREAM, sid, b"")
        info = json.loads(self.k.result(sid).body)
        self.assertEqual((info["len"], info["messages"]), (0, 1))

    def test_big_response_respects_window(self):
        n = 3 * MAX_PAYLOAD + 7
        sid = self.k.open(scope("/big", query=str(n).encode()))
        r = self.k.result(sid)
        self.assertEqual(len(r.body), n)
        data = [f for f in r.frames if f.type == DATA]
        self.assertTrue(all(len(f.payload) <= INITIAL_WINDOW for f in data))

    def test_response_waits_for_credit(self):
        sid = self.k.open(scope("/big", query=str(INITIAL_WINDOW + 10).encode()))
        r = Result()
        got = 0
        while got < INITIAL_WINDOW:
            f = self.k.next_on(sid)
            if f.type == DATA:
                got += len(f.payload)
            self.assertFalse(f.end)
        self.assertEqual(got, INITIAL_WINDOW)
        # Nothing more until credit: a request on another stream is served meanwhile.
        self.assertEqual(self.k.http("/hello").body, b"Hello world!")
        self.k.send(WINDOW, 0, sid, U32.pack(100))
        r.status = 200
        r = self.k.result(sid, r=r)
        self.assertEqual(len(r.body), 10)

    def test_chunks(self):
        self.assertEqual(self.k.http("/chunks").body, b"0,1,2,3,4,")

    def test_disconnect_during_long_poll(self):
        sid = self.k.open(scope("/longpoll"))
        self.assertEqual(self.k.http("/hello").status, 200)  # the long poll is waiting
        self.k.send(RESET, 0, sid)
        r = self.k.result(sid)
        self.assertEqual(r.status, None)
        self.assertIsNotNone(r.reset)
        self.assertIn("longpoll got http.disconnect", self.k.events())

    def test_disconnect_while_streaming(self):
        sid = self.k.open(scope("/sse"))
        f = self.k.next_on(sid)
        self.assertEqual(f.type, RESPONSE)
        f = self.k.next_on(sid)
        self.assertEqual(f.payload, b"data: 1\n\n")
        self.k.send(RESET, 0, sid)
        r = self.k.result(sid)
        self.assertIsNotNone(r.reset)
        ev = self.k.events()
        self.assertIn("sse got http.disconnect", ev)
        self.assertIn("sse send after disconnect: ClientDisconnected", ev)
        self.assertEqual(self.k.proc.poll(), None)

    def test_head_goes_out_while_the_app_waits(self):
        # A held RESPONSE is written with the loop iteration's batch, not
        # only with the first body frame.
        sid = self.k.open(scope("/start-then-wait"))
        f = self.k.next_on(sid)
        self.assertEqual((f.type, f.value()[:2]), (RESPONSE, (200, [(b"x-early", b"1")])))
        self.k.send(RESET, 0, sid)
        self.assertIsNotNone(self.k.result(sid).reset)
        self.assertIn("start-then-wait got http.disconnect", self.k.events())

    def test_reset_wakes_sender_blocked_on_window(self):
        sid = self.k.open(scope("/flood"))
        got = 0
        while got < INITIAL_WINDOW:
            f = self.k.next_on(sid)
            if f.type == DATA:
                got += len(f.payload)
        self.k.send(RESET, 0, sid)
        r = self.k.result(sid, grant=False)
        self.assertIsNotNone(r.reset)
        self.assertIn("flood: ClientDisconnected", self.k.events())

    def test_cancelled_receive_does_not_cancel_send(self):
        r = self.k.http("/cancel-receive")
        self.assertIsNone(r.reset)
        self.assertEqual(len(r.body), INITIAL_WINDOW + 10)
        self.assertIn("cancel-receive: listener cancelled True", self.k.events())

    def test_trailers(self):
        r = self.k.http("/trailers")
        self.assertIs(r.trailers_flag, True)
        self.assertEqual(r.body, b"part1part2")
        self.assertEqual(r.trailers, [(b"x-checksum", b"abc"), (b"x-more", b"1")])
        self.assertEqual(r.frames[-1].type, TRAILERS)
        self.assertFalse(any(f.end for f in r.frames[:-1]))

    def test_pathsend(self):
        r = self.k.http("/pathsend")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.sendfile, (os.path.join(APPS_DIR, "asgi_routes.py"), 0, -1))
        self.assertTrue(r.frames[-1].end)

    def test_early_hint(self):
        r = self.k.http("/early")
        self.assertEqual(r.frames[0].type, EARLY_HINT)
        self.assertEqual(r.hints, [[(b"link", b"</style.css>; rel=preload; as=style"),
                                    (b"link", b"</app.js>; rel=preload")]])
        self.assertEqual((r.status, r.body), (200, b"hinted"))

    def test_many_concurrent(self):
        sids = [self.k.open(scope("/sleep")) for _ in range(50)]
        done = {}
        for sid in sids:
            done[sid] = self.k.result(sid)
        self.assertTrue(all(r.body == b"slept" for r in done.values()))


class ErrorTest(ASGICase):
    def check_500(self, path, needle):
        r = self.k.http(path)
        self.assertEqual(r.status, 500)
        self.assertEqual(r.body, b"Internal Server Error\n")
        return needle

    def stderr(self):
        status, out, err = self.k.stop()
        self.assertEqual(status, 0)
        return err

    def test_errors(self):
        cases_500 = [
            ("/error-before", "failed before start"),
            ("/noresponse", "returned without starting a response"),
            ("/body-first", "'http.response.body' sent before 'http.response.start'"),
            ("/bogus", "unexpected ASGI message type 'http.response.bogus'"),
            ("/bad-headers", "header names and values must be bytes"),
            # The RESPONSE is held until the first body frame or the end of
            # the loop iteration, so these can still become a 500.
            ("/start-twice", "'http.response.start' sent after the response started"),
            ("/start-then-raise", "failed right after start"),
            ("/start-only", "returned before the response was complete"),
        ]
        for path, _ in cases_500:
            with self.subTest(path=path):
                self.check_500(path, None)
        for path in ("/error-after", "/incomplete"):
            with self.subTest(path=path):
                r = self.k.http(path)
                self.assertEqual(r.status, 200)
                self.assertIsNotNone(r.reset)
        # A message after the response was complete: logged, the response stands.
        r = self.k.http("/twice")
        self.assertEqual((r.status, r.body, r.reset), (200, b"one", None))
        # The worker is still fine.
        self.assertEqual(self.k.http("/hello").body, b"Hello world!")
        err = self.stderr()
        for _, needle in cases_500:
            self.assertIn(needle, err)
        self.assertIn("failed after start", err)
        self.assertIn("returned before the response was complete", err)
        self.assertIn("'http.response.start' sent after the response started", err)


MAX_HEAD = 65536  # docs/protocol.md, "Response head limit"


class HeadLimitTest(ASGICase):
    """Heads, trailers, early hints and WebSocket accept/denial headers
    over MAX_HEAD are the app's error; no frame goes over MAX_PAYLOAD and
    the worker lives on."""

    app = "resp_asgi:app"

    def q(self, n):
        return str(n).encode()

    def test_http(self):
        r = self.k.http("/head", query=self.q(MAX_HEAD))
        self.assertEqual((r.status, r.body), (200, b"ok"))
        self.assertEqual(3 + sum(len(n) + len(v) + 4 for n, v in r.headers), MAX_HEAD)
        for path, query in [("/head", self.q(MAX_HEAD + 1)), ("/huge", b""), ("/many", b""),
                            ("/early-hint", self.q(MAX_HEAD + 1))]:
            with self.subTest(path=path):
                r = self.k.http(path, query=query)
                self.assertEqual((r.status, r.body, r.hints), (500, b"Internal Server Error\n", []))
                self.assertTrue(all(len(f.payload) <= MAX_PAYLOAD for f in r.frames))
        r = self.k.http("/early-hint", query=self.q(MAX_HEAD))
        self.assertEqual((r.status, len(r.hints)), (200, 1))
        r = self.k.http("/trailers", query=self.q(MAX_HEAD))
        self.assertEqual(sum(len(n) + len(v) + 4 for n, v in r.trailers), MAX_HEAD)
        # Over the limit after the body: the started response is aborted.
        r = self.k.http("/trailers", query=self.q(MAX_HEAD + 1))
        self.assertEqual((r.status, r.body, r.trailers), (200, b"partial", None))
        self.assertIsNotNone(r.reset)
        self.assertEqual(self.k.http("/pid").body, str(self.k.proc.pid).encode())
        status, _, err = self.k.stop()
        self.assertEqual(status, 0)
        self.assertEqual(err.count("over krait's limit of 65536 bytes"), 5, err)

    def ws(self, path, query):
        return self.k.open(scope(path, kind="websocket", query=query))

    def test_websocket(self):
        sid = self.ws("/ws-accept", self.q(MAX_HEAD))
        f = self.k.next_on(sid)
        self.assertEqual(f.type, WS_ACCEPT)
        self.assertEqual(len(f.value()[1][0][1]), MAX_HEAD - len(b"x-huge") - 4)
        self.assertEqual(self.k.next_on(sid).type, WS_CLOSE)
        r = self.k.result(self.ws("/ws-accept", self.q(MAX_HEAD + 1)))
        self.assertEqual(r.status, 500)
        r = self.k.result(self.ws("/ws-deny", self.q(MAX_HEAD)))
        self.assertEqual((r.status, r.body), (403, b"ok"))
        r = self.k.result(self.ws("/ws-deny", self.q(MAX_HEAD + 1)))
        self.assertEqual(r.status, 500)
        # A close reason is cut to what K sends at most (123 bytes).
        sid = self.ws("/ws-close-long", b"")
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        f = self.k.next_on(sid)
        self.assertEqual((f.type, f.value()), (WS_CLOSE, (4000, "r" * 123)))
        self.assertEqual(self.k.http("/pid").body, str(self.k.proc.pid).encode())


class WebSocketTest(ASGICase):
    def ws(self, path, subprotocols=(), query=b""):
        sc = scope(path, kind="websocket", query=query)
        sc["subprotocols"] = list(subprotocols)
        return self.k.open(sc)

    def test_accept_echo_close(self):
        sid = self.ws("/ws/echo", subprotocols=["chat", "other"])
        f = self.k.next_on(sid)
        self.assertEqual(f.type, WS_ACCEPT)
        self.assertEqual(f.value(), ("chat", [(b"x-ws", b"yes")]))
        self.k.send(WS_MESSAGE, 0, sid, "héllo".encode())
        f = self.k.next_msg(sid)
        self.assertEqual((f.type, f.flags, f.payload), (WS_MESSAGE, 0, "echo:héllo".encode()))
        self.k.send(WS_MESSAGE, WS_BINARY, sid, b"\x00\x01")
        f = self.k.next_msg(sid)
        self.assertEqual((f.type, f.flags, f.payload), (WS_MESSAGE, WS_BINARY, b"\x00\x01"))
        # A fragmented binary message is reassembled.
        self.k.send(WS_MESSAGE, WS_BINARY | WS_MORE, sid, b"ab")
        self.k.send(WS_MESSAGE, WS_MORE, sid, b"cd")
        self.k.send(WS_MESSAGE, 0, sid, b"ef")
        f = self.k.next_msg(sid)
        self.assertEqual((f.flags, f.payload), (WS_BINARY, b"abcdef"))
        self.k.send(WS_MESSAGE, 0, sid, b"close")
        f = self.k.next_msg(sid)
        self.assertEqual(f.type, WS_CLOSE)
        self.assertTrue(f.end)
        self.assertEqual(f.value(), (4000, "bye"))
        self.assertIn("after close: websocket.disconnect 4000", self.k.events())

    def test_client_close(self):
        sid = self.ws("/ws/echo")
        self.assertEqual(self.k.next_on(sid).value(), (None, [(b"x-ws", b"yes")]))
        self.k.send(WS_CLOSE, 0, sid, marshal.dumps((1001, "going away")))
        f = self.k.next_msg(sid)
        self.assertEqual(f.type, WS_CLOSE)
        self.assertTrue(f.end)
        ev = self.k.events()
        self.assertIn("ws disconnect 1001 going away", ev)
        self.assertIn("ws send after disconnect: ClientDisconnected", ev)

    def test_reset_is_1006(self):
        sid = self.ws("/ws/echo")
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        self.k.send(RESET, 0, sid)
        f = self.k.next_msg(sid)
        self.assertIn(f.type, (WS_CLOSE, RESET))
        self.assertIn("ws disconnect 1006 ", self.k.events())

    def test_close_before_accept(self):
        sid = self.ws("/ws/deny")
        f = self.k.next_on(sid)
        self.assertEqual((f.type, f.value()), (WS_CLOSE, (1008, "")))
        self.assertTrue(f.end)

    def test_denial_response(self):
        r = self.k.result(self.ws("/ws/denial"))
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body, b"go away")
        self.assertIsNone(r.reset)

    def test_no_accept_is_500(self):
        r = self.k.result(self.ws("/ws/noaccept"))
        self.assertEqual(r.status, 500)

    def test_error_after_accept_closes_1011(self):
        sid = self.ws("/ws/error")
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        f = self.k.next_on(sid)
        self.assertEqual((f.type, f.value(), f.end), (WS_CLOSE, (1011, ""), True))

    def test_return_after_accept_closes_1000(self):
        sid = self.ws("/ws/return")
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        f = self.k.next_on(sid)
        self.assertEqual((f.type, f.value(), f.end), (WS_CLOSE, (1000, ""), True))

    def test_big_message_is_split(self):
        n = 3 * MAX_PAYLOAD + 5
        sid = self.ws("/ws/big", query=str(n).encode())
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        data = b""
        frames = []
        while True:
            f = self.k.next_on(sid)
            if f.type == WS_CLOSE:
                break
            self.assertEqual(f.type, WS_MESSAGE)
            self.assertLessEqual(len(f.payload), MAX_PAYLOAD)
            frames.append(f)
            data += f.payload
            self.k.send(WINDOW, 0, sid, U32.pack(len(f.payload)))
        self.assertEqual(len(data), n)
        self.assertTrue(all(f.flags == WS_BINARY | WS_MORE for f in frames[:-1]))
        self.assertEqual(frames[-1].flags, WS_BINARY)

    def test_big_incoming_message(self):
        # 1 MiB + in frames: the worker credits partial frames on arrival,
        # so K never stalls on a message larger than the window.
        sid = self.ws("/ws/echo")
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        payload = os.urandom(2 * INITIAL_WINDOW + 3)
        window = INITIAL_WINDOW
        off = 0
        step = 65536
        while off < len(payload):
            while window == 0:
                f = self.k.next_on(sid)
                self.assertEqual(f.type, WINDOW)
                window += U32.unpack(f.payload)[0]
            n = min(step, window, len(payload) - off)
            last = off + n == len(payload)
            self.k.send(WS_MESSAGE, WS_BINARY | (0 if last else WS_MORE), sid, payload[off:off + n])
            off += n
            window -= n
        echoed = b""
        while len(echoed) < len(payload):
            f = self.k.next_msg(sid)
            if f.type == WS_MESSAGE:
                echoed += f.payload
                self.k.send(WINDOW, 0, sid, U32.pack(len(f.payload)))
        self.assertEqual(echoed, payload)


class ShutdownTest(unittest.TestCase):
    def test_lifespan_shutdown_after_inflight(self):
        k = AK()
        self.assertEqual(k.hello()[4], "ready")
        sid = k.open(scope("/longpoll"), body=b"", end=False)
        k.send(SHUTDOWN, 0, 0)
        # Refused: a request after SHUTDOWN.
        late = k.open(scope("/hello"))
        f = k.next_on(late)
        self.assertEqual(f.type, RESET)
        # The in-flight long poll still ends (client goes away), then the worker exits.
        k.send(DATA, END_STREAM, sid, b"")
        k.send(RESET, 0, sid)
        frames = k.at_eof()
        self.assertEqual([f.type for f in frames if f.stream == sid][-1], RESET)
        status, out, err = k.wait()
        self.assertEqual(status, 0, err)
        self.assertIn("lifespan shutdown ran", out)


class LifespanTest(unittest.TestCase):
    def boot(self, mode, args=(), app="asgi_routes:app"):
        k = AK(app=app, extra_args=args, env={"KRAIT_TEST_LIFESPAN": mode})
        return k, k.hello()

    def test_startup_failed(self):
        for args in ((), ("--lifespan", "on")):
            with self.subTest(args=args):
                k, hello = self.boot("fail", args)
                self.assertEqual(hello[3:5], ("asgi", "error"))
                self.assertIn("database is down", hello[5])
                status, _, _ = k.wait()
                self.assertEqual(status, 3)

    def test_startup_exception(self):
        k, hello = self.boot("raise", ("--lifespan", "on"))
        self.assertEqual(hello[4], "error")
        self.assertIn("startup exploded", hello[5])
        self.assertEqual(k.wait()[0], 3)
        # auto: an app that does not speak lifespan still serves.
        k, hello = self.boot("unsupported")
        self.assertEqual(hello[4], "ready")
        self.assertEqual(k.http("/hello").body, b"Hello world!")
        k.send(SHUTDOWN, 0, 0)
        status, _, err = k.wait()
        self.assertEqual(status, 0)
        self.assertIn("lifespan", err)

    def test_lifespan_off(self):
        k, hello = self.boot("fail", ("--lifespan", "off", "--limit-concurrency", "7"))
        self.assertEqual(hello[4:], ("ready", "", 7))
        r = k.http("/state")
        self.assertEqual(json.loads(r.body), {"counter": 1})
        k.send(SHUTDOWN, 0, 0)
        status, out, _ = k.wait()
        self.assertEqual(status, 0)
        self.assertNotIn("lifespan shutdown ran", out)


class ProtocolErrorTest(unittest.TestCase):
    def check(self, send):
        k = AK()
        self.assertEqual(k.hello()[4], "ready")
        send(k)
        k.at_eof()
        status, _, err = k.wait()
        self.assertEqual(status, 70, err)
        self.assertIn("protocol error", err)

    def test_bad_frames(self):
        cases = {
            "ws flag on DATA": lambda k: k.send(DATA, WS_BINARY, 1, b""),
            "unknown ws flag": lambda k: k.send(WS_MESSAGE, 0x08, 1, b""),
            "ws frame on http stream": lambda k: (k.open(scope("/longpoll"), body=b""),
                                                  k.send(WS_MESSAGE, 0, 1, b"x")),
            "unknown scope type": lambda k: k.open(scope("/", kind="lifespan")),
            "REQUEST twice": lambda k: (k.open(scope("/longpoll")), k.send(
                REQUEST, END_STREAM, 1, marshal.dumps(scope("/")))),
        }
        for name, send in cases.items():
            with self.subTest(name):
                self.check(send)


class InterfaceTest(unittest.TestCase):
    def test_asgi2_app(self):
        k = AK(app="asgi_routes:ASGI2App")
        hello = k.hello()
        self.assertEqual(hello[3:5], ("asgi", "ready"))
        self.assertEqual(k.http("/x").body, b"asgi2 /x")
        k.close()

    def test_forced_interfaces(self):
        k = AK(app="asgi_routes:ASGI2App", interface="asgi")
        self.assertEqual(k.hello()[3:5], ("asgi", "ready"))
        k.close()
        k = AK(app="routes:application", interface="wsgi")
        self.assertEqual(k.hello()[3:5], ("wsgi", "ready"))
        k.close()

    def test_uvloop_missing(self):
        # Shadow any installed uvloop with a module that fails to import,
        # so the missing-uvloop path is tested whatever the venv holds.
        with tempfile.TemporaryDirectory() as shadow:
            with open(os.path.join(shadow, "uvloop.py"), "w") as f:
                f.write("raise ImportError('No module named uvloop (test shadow)')\n")
            env = {"PYTHONPATH": os.pathsep.join((shadow, PYTHON_DIR))}
            k = AK(extra_args=("--loop", "uvloop"), env=env)
            hello = k.hello()
            self.assertEqual(hello[4], "error")
            self.assertIn("uvloop", hello[5])
            self.assertEqual(k.wait()[0], 3)
            k = AK(extra_args=("--loop", "auto"), env=env)
            self.assertEqual(k.hello()[4], "ready")
            k.close()


if __name__ == "__main__":
    unittest.main()
