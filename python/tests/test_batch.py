"""Prefetch and recall (docs/protocol.md, "Prefetch and recall"): a WSGI
worker that K handed more requests than it has threads gives back, on
RECALL, those it has not started (RETURNED, the app never sees them) and
answers KEPT for one it runs, also while the app blocks on its only thread.
Driven over a real socketpair by the fake K (fakek.py)."""

import os
import shutil
import struct
import tempfile
import time
import unittest

from fakek import END_STREAM, RESPONSE, DATA, FakeK, environ

RECALL, RETURNED, KEPT = 0x10, 0x11, 0x12
U32 = struct.Struct("<I")


class Batch:
    threads = None  # set by subclasses
    blockers = 1    # requests that fill every thread

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="krait-batch-")
        args = ["--prefetch", "8"]
        self.k = FakeK(app="batch_app:application", threads=self.threads, extra_args=args,
                       env={"KRAIT_TEST_DIR": self.dir})
        hello = self.k.hello()
        self.assertEqual(hello[0], 3)
        self.assertEqual(hello[4], "ready")

    def tearDown(self):
        for i in range(self.blockers):
            self.release("b%d" % i)
        self.k.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def events(self):
        try:
            with open(os.path.join(self.dir, "events.log")) as f:
                return f.read().split("\n")
        except FileNotFoundError:
            return []

    def wait_event(self, prefix):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(line.startswith(prefix) for line in self.events()):
                return
            time.sleep(0.01)  # polling a file, bounded
        self.fail("the app never logged %r; events: %r" % (prefix, self.events()))

    def release(self, token):
        open(os.path.join(self.dir, "release-" + token), "w").close()

    def read_until(self, want, frames):
        """Read frames until every stream in want ended; returns the frames."""
        ended = set()
        while not want <= ended:
            f = self.k.recv()
            frames.append(f)
            if f.end:
                ended.add(f.stream)
        return frames

    def test_recall_returns_a_queued_request_and_keeps_a_running_one(self):
        k = self.k
        blockers = [k.request(environ(path="/block", query="token=b%d" % i)) for i in range(self.blockers)]
        for i in range(self.blockers):
            self.wait_event("started b%d " % i)
        queued = [k.request(environ(path="/quick", query="id=%d" % n)) for n in range(3)]
        # The newest queued one back: the app is blocked on every thread.
        k.send(RECALL, 0, queued[2])
        f = k.recv()
        self.assertEqual((f.type, f.flags, f.stream, f.payload), (RETURNED, END_STREAM, queued[2], b""))
        # A running one is kept, and says for how long it has run.
        k.send(RECALL, 0, blockers[0])
        f = k.recv()
        self.assertEqual((f.type, f.flags, f.stream, len(f.payload)), (KEPT, 0, blockers[0], 4))
        self.assertLess(U32.unpack(f.payload)[0], 120000)
        # A RECALL that crosses the end of a stream (or of one given back
        # already) is late: ignored, no answer.
        k.send(RECALL, 0, queued[2])
        for i in range(self.blockers):
            self.release("b%d" % i)
        frames = self.read_until(set(blockers) | set(queued[:2]), [])
        self.assertNotIn(queued[2], [f.stream for f in frames])
        self.assertEqual([f.type for f in frames if f.stream == queued[0]], [RESPONSE, DATA])
        # Arrival order: the queued requests ran after the blockers, and the
        # one given back never ran.
        runs = [line.split()[1] for line in self.events() if line.startswith("run ")]
        self.assertEqual(runs, ["0", "1"])
        # The worker still serves, and the id given back stays closed.
        r = k.get("/quick", query="id=9")
        self.assertEqual(r.body, b"ok 9")

    def test_recall_with_payload_is_a_protocol_error(self):
        sid = self.k.request(environ(path="/quick", query="id=1"))
        self.k.response(sid)
        self.k.send(RECALL, 0, sid, b"x")
        status, _, err = self.k.wait()
        self.assertEqual(status, 70, err)

    def test_recall_on_stream_0_is_a_protocol_error(self):
        self.k.send(RECALL, 0, 0)
        status, _, err = self.k.wait()
        self.assertEqual(status, 70, err)


class InlineBatch(Batch, unittest.TestCase):
    threads = None  # --threads 1: the app runs on the reading thread


class ThreadedBatch(Batch, unittest.TestCase):
    threads = 2
    blockers = 2


if __name__ == "__main__":
    unittest.main()
