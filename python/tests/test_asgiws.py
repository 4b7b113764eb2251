"""The ASGI worker's WebSocket credit (docs/protocol.md, ASGI, "WebSocket"):
a real `python -m krait_worker` driven by a fake K over a socketpair.

The worker returns credit for K's WS_MESSAGE bytes in batches of half the
window, not per message, and never so late that K stalls."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fakek import INITIAL_WINDOW, U32, WINDOW  # noqa: E402
from test_asgi import AK, WS_ACCEPT, WS_BINARY, WS_CLOSE, WS_MESSAGE, WS_MORE, scope  # noqa: E402

BATCH = INITIAL_WINDOW // 2


class WSCreditTest(unittest.TestCase):
    def setUp(self):
        self.k = AK()
        self.assertEqual(self.k.hello()[4], "ready")
        sc = scope("/ws/echo", kind="websocket")
        self.sid = self.k.open(sc)
        self.assertEqual(self.k.next_on(self.sid).type, WS_ACCEPT)
        self.credit = 0    # credit the worker returned
        self.windows = 0   # WINDOW frames it took
        self.window = INITIAL_WINDOW  # what we may still send

    def tearDown(self):
        self.k.close()

    def next_echo(self):
        """The next WS_MESSAGE, counting WINDOW frames on the way; the
        echo's bytes are credited back at once, as krait would."""
        while True:
            f = self.k.next_on(self.sid)
            if f.type == WINDOW:
                n = U32.unpack(f.payload)[0]
                self.windows += 1
                self.credit += n
                self.window += n
                continue
            self.assertEqual(f.type, WS_MESSAGE, f)
            self.k.send(WINDOW, 0, self.sid, U32.pack(len(f.payload)))
            return f

    def test_credit_in_batches(self):
        # 300 messages of 1000 bytes, one at a time: 300000 bytes consumed,
        # so exactly two WINDOW frames of 131072+ bytes (it was one per
        # message, 300 frames).
        for i in range(300):
            self.k.send(WS_MESSAGE, WS_BINARY, self.sid, b"%04d" % i + b"x" * 996)
            self.window -= 1000
            f = self.next_echo()
            self.assertEqual(f.payload[:4], b"%04d" % i)
        self.assertEqual(self.windows, 2)
        # Each batch is returned as soon as it reaches 131072 bytes: after
        # the 132nd message (132000 bytes), then after 132 more.
        self.assertEqual(self.credit, 2 * 132000)
        self.assertEqual(self.window, INITIAL_WINDOW - 300000 + 264000)

    def test_window_never_stalls(self):
        # Pipelined: fill the whole window with messages before reading any
        # echo. The worker must return credit by itself (we send nothing
        # until the window reopens), else this waits for ever (the socket's
        # timeout fails the test).
        sent = received = 0
        size = 4000
        total = 200 * size  # about three windows
        while received < total:
            while sent < total and self.window >= size:
                self.k.send(WS_MESSAGE, WS_BINARY, self.sid, b"y" * size)
                self.window -= size
                sent += size
            f = self.next_echo()
            received += len(f.payload)
        self.assertEqual(received, total)
        self.assertGreaterEqual(self.credit, total - BATCH)

    def test_split_message_larger_than_window(self):
        # A message of 2.5 windows in 64 KiB pieces: the pieces are consumed
        # on arrival, so credit comes back while the message is incomplete.
        payload = os.urandom(2 * INITIAL_WINDOW + INITIAL_WINDOW // 2)
        off = 0
        step = 65536
        while off < len(payload):
            while self.window == 0:
                f = self.k.next_on(self.sid)
                self.assertEqual(f.type, WINDOW)
                n = U32.unpack(f.payload)[0]
                # Batches, never a credit per 64 KiB piece.
                self.assertGreaterEqual(n, BATCH)
                self.window += n
            n = min(step, self.window, len(payload) - off)
            last = off + n == len(payload)
            self.k.send(WS_MESSAGE, WS_BINARY | (0 if last else WS_MORE), self.sid, payload[off:off + n])
            off += n
            self.window -= n
        echoed = b""
        while len(echoed) < len(payload):
            echoed += self.next_echo().payload
        self.assertEqual(echoed, payload)

    def test_text_decoded_from_buffer(self):
        # Text is decoded straight from the receive buffer: multi-byte
        # UTF-8, and a text message split in pieces, arrive whole.
        text = "héllo wörld ✓ " * 100
        self.k.send(WS_MESSAGE, 0, self.sid, text.encode())
        self.assertEqual(self.next_echo().payload, ("echo:" + text).encode())
        data = text.encode()
        self.k.send(WS_MESSAGE, WS_MORE, self.sid, data[:7])  # cuts "ö"... mid code point
        self.k.send(WS_MESSAGE, 0, self.sid, data[7:])
        self.assertEqual(self.next_echo().payload, ("echo:" + text).encode())
        self.k.send(WS_MESSAGE, 0, self.sid, b"close")
        f = self.k.next_msg(self.sid)
        self.assertEqual((f.type, f.value()), (WS_CLOSE, (4000, "bye")))


if __name__ == "__main__":
    unittest.main()
