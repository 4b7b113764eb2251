"""Defence in depth for WebSockets: bad input from krait for one WebSocket
stream fails that stream (close 1007), not the worker and its other streams.
krait validates text itself; this covers a krait that would not."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from test_asgi import (  # noqa: E402
    WS_ACCEPT,
    WS_CLOSE,
    WS_MESSAGE,
    WS_MORE,
    ASGICase,
    scope,
)


class InvalidTextTest(ASGICase):
    def ws(self):
        sid = self.k.open(scope("/ws/echo", kind="websocket"))
        self.assertEqual(self.k.next_on(sid).type, WS_ACCEPT)
        return sid

    def test_invalid_utf8_fails_only_its_stream(self):
        bad, bystander = self.ws(), self.ws()
        self.k.send(WS_MESSAGE, WS_MORE, bad, "héllo ".encode())
        self.k.send(WS_MESSAGE, 0, bad, b"\xff")
        f = self.k.next_msg(bad)
        self.assertEqual(f.type, WS_CLOSE)
        self.assertTrue(f.end)
        self.assertEqual(f.value(), (1007, "invalid UTF-8 in a text message"))
        # More for the failed stream is dropped, not a protocol error.
        self.k.send(WS_MESSAGE, 0, bad, b"more")
        self.k.send(WS_MESSAGE, 0, bystander, b"still here")
        f = self.k.next_msg(bystander)
        self.assertEqual((f.type, f.payload), (WS_MESSAGE, b"echo:still here"))
        events = self.k.events()
        self.assertIn("ws disconnect 1007 invalid UTF-8 in a text message", events)
        self.assertIn("ws send after disconnect: ClientDisconnected", events)


if __name__ == "__main__":
    unittest.main()
