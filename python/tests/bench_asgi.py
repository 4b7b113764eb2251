"""Micro benchmark of the ASGI adapter's per-request and per-message cost.

Runs asgi.Worker in this process on a fake transport (nothing is written to
a socket) with the raw ASGI app of bench/apps/hello_asgi.py, fed frames the
way krait sends them under load: --batch REQUESTs (HTTP hello world) or
--batch WS_MESSAGEs, one per open WebSocket (echo), per read. K's side
returns credit as krait does. Prints the process CPU time per request /
per echoed message (median and best of --repeat runs; on a busy machine
compare the best) and how many WINDOW frames the
worker wrote per message.

--adapter DIR benchmarks another copy of the adapter (DIR holds
krait_worker/), e.g. the baseline tree's python/ for a before/after;
--loop asyncio|uvloop picks the event loop (default: uvloop when installed,
as the worker's --loop auto).

Run: python3 python/tests/bench_asgi.py [--mode http|ws] [-n N] [--size B]
Not part of the test suite.
"""

import argparse
import marshal
import os
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

HEADER = struct.Struct("<IBBHI")
U32 = struct.Struct("<I")
REQUEST, DATA, RESPONSE, WINDOW, WS_ACCEPT, WS_MESSAGE, WS_CLOSE = 0x02, 0x03, 0x04, 0x05, 0x0B, 0x0C, 0x0D
END_STREAM = 0x01


def scope(ws):
    s = {
        "type": "websocket" if ws else "http",
        "http_version": "1.1",
        "scheme": "ws" if ws else "http",
        "path": "/ws" if ws else "/",
        "raw_path": b"/ws" if ws else b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")],
        "client": ("127.0.0.1", 51234),
        "server": ("127.0.0.1", 8000),
    }
    if ws:
        s["subprotocols"] = []
    else:
        s["method"] = "GET"
    return s


class Transport:
    """Counts the frames the worker writes; K's answers go to on_frame."""

    def __init__(self):
        self.frames = {}
        self.target = 0
        self.seen = 0
        self.done = None
        self.credit = {}  # stream -> WINDOW credit the worker returned

    def write(self, data):
        off = 0
        n = len(data)
        unpack = HEADER.unpack_from
        frames = self.frames
        while off < n:
            length, ftype, flags, _, sid = unpack(data, off)
            frames[ftype] = frames.get(ftype, 0) + 1
            if ftype == WINDOW:
                self.credit[sid] = self.credit.get(sid, 0) + U32.unpack_from(data, off + 12)[0]
            elif ftype == WS_MESSAGE or (ftype == DATA and flags & END_STREAM):
                self.seen += 1
            off += 12 + length
        if self.seen >= self.target and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def get_write_buffer_size(self):
        return 0


def feed(w, data):
    """Deliver data as one read would."""
    fb = w.fb
    view = memoryview(data)
    while view:
        tail = fb.tail()
        k = min(len(tail), len(view))
        tail[:k] = view[:k]
        w.received(k)
        view = view[k:]


def run(args):
    sys.path.insert(0, args.adapter)
    sys.path.insert(0, os.path.join(ROOT, "bench", "apps"))
    from krait_worker import asgi
    from hello_asgi import app

    loop = asgi.new_loop(args.loop)
    import asyncio
    asyncio.set_event_loop(loop)
    w = asgi.Worker(loop, app)
    t = Transport()
    w.transport = t
    batch = args.batch
    ws = args.mode == "ws"
    results = []
    if ws:
        sids = list(range(1, batch + 1))
        req = marshal.dumps(scope(True))
        data = b"".join(HEADER.pack(len(req), REQUEST, END_STREAM, 0, sid) + req for sid in sids)
        t.target = 0
        feed(w, data)
        loop.run_until_complete(asyncio.sleep(0.01))
        assert t.frames.get(WS_ACCEPT) == batch, t.frames
        msg = b"x" * args.size
        frame_msgs = b"".join(HEADER.pack(len(msg), WS_MESSAGE, 0, 0, sid) + msg for sid in sids)
        credit = b"".join(HEADER.pack(4, WINDOW, 0, 0, sid) + U32.pack(len(msg)) for sid in sids)
        # K credits what it wrote to the client: at once per message (as
        # krait did before batching) unless --k-batch.
        rounds = args.n // batch
        for _ in range(args.repeat):
            t.frames.clear()
            t.seen = 0
            owed = 0
            c0 = time.process_time()
            for _ in range(rounds):
                t.target = t.seen + batch
                t.done = loop.create_future()
                feed(w, frame_msgs)
                loop.run_until_complete(t.done)
                owed += len(msg)
                if not args.k_batch or owed >= 131072:
                    k_credit = credit if not args.k_batch else b"".join(
                        HEADER.pack(4, WINDOW, 0, 0, sid) + U32.pack(owed) for sid in sids)
                    feed(w, k_credit)
                    owed = 0
            c1 = time.process_time()
            results.append((c1 - c0) / (rounds * batch) * 1e6)
        windows = t.frames.get(WINDOW, 0) / (rounds * batch)
        print("ws echo %d B, %s, batch %d: %.2f us CPU per message (median of %d; best %.2f), "
              "%.3f WINDOW frames from W per message"
              % (args.size, type(loop).__module__, batch, statistics.median(results), args.repeat,
                 min(results), windows))
    else:
        req = marshal.dumps(scope(False))
        sid = 1
        rounds = args.n // batch
        for _ in range(args.repeat):
            c0 = time.process_time()
            for _ in range(rounds):
                data = []
                for _ in range(batch):
                    data.append(HEADER.pack(len(req), REQUEST, END_STREAM, 0, sid) + req)
                    sid += 1
                t.target = t.seen + batch
                t.done = loop.create_future()
                feed(w, b"".join(data))
                if t.seen < t.target:
                    loop.run_until_complete(t.done)
            c1 = time.process_time()
            results.append((c1 - c0) / (rounds * batch) * 1e6)
        print("http hello, %s, batch %d: %.2f us CPU per request (median of %d; best %.2f)"
              % (type(loop).__module__, batch, statistics.median(results), args.repeat, min(results)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=("http", "ws"), default="ws")
    p.add_argument("-n", type=int, default=64000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=13)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--loop", default="auto")
    p.add_argument("--k-batch", action="store_true", help="K returns credit in batches of 128 KiB")
    p.add_argument("--adapter", default=os.path.join(ROOT, "python"))
    run(p.parse_args())
    sys.stdout.flush()
    os._exit(0)  # the streams' tasks stay open: leave without tearing them down


if __name__ == "__main__":
    main()
