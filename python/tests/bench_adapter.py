"""Micro benchmark of the WSGI adapter's per-request cost (hello world).

Figures (each the median of --repeat runs; the CPU is process CPU time):

  app alone   the bare app called in a loop with a prepared environ and a
              trivial start_response: what the app itself costs.
  in-process  the adapter's Python work around the app: the real
              InlineWorker.serve loop reading REQUEST frames from a fake
              socket (frame decode, environ, Stream, app call,
              start_response, response encode; sendall is a no-op).
              REQUESTs arrive --batch at a time, as under load.
  beyond app  in-process minus app alone: the adapter's own cost.
  socketpair  a real `python -m krait_worker` driven by a fake K over a
              socketpair, one request in flight (capacity 1, as krait
              does with --threads 1); reports the worker process's CPU
              time per request (from /proc/PID/schedstat; the user/sys split
              from /proc/PID/stat in clock ticks) and the round trip.

The REQUEST payload is encoded as krait's Go side encodes it
(internal/codec AppendEnviron: a marshal dict of short ASCII str, no
references), not with marshal.dumps, whose default format decodes slower.

--adapter DIR benchmarks another copy of the adapter (DIR holds
krait_worker/), e.g. the baseline tree's python/ for a before/after.

Run: python3 python/tests/bench_adapter.py [-n REQUESTS] [--repeat R]
Not part of the test suite.
"""

import argparse
import os
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

HEADER = struct.Struct("<IBBHI")
REQUEST = 0x02
SHUTDOWN = 0x08
END_STREAM = 0x01

# In the order internal/codec.AppendEnviron writes them, for a GET / with
# three header fields.
ENV = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": "/",
    "QUERY_STRING": "",
    "RAW_URI": "/",
    "REQUEST_URI": "/",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "SERVER_SOFTWARE": "krait/0.0.0",
    "wsgi.url_scheme": "http",
    "REMOTE_ADDR": "127.0.0.1",
    "REMOTE_PORT": "51234",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "bench/1.0",
    "HTTP_ACCEPT": "*/*",
}


def go_environ(env):
    """The marshal dict as internal/wire writes it: '{', then 'z' (short
    ASCII str: length byte + bytes) for every key and value, then '0'."""
    out = [b"{"]
    for k, v in env.items():
        for s in (k, v):
            b = s.encode("latin-1")
            assert len(b) < 256 and b.isascii()
            out.append(b"z" + bytes((len(b),)) + b)
    out.append(b"0")
    return b"".join(out)


def hello_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [b"Hello world!"]


class FakeSocket:
    """Hands the worker `rounds` copies of blob, one per recv, then a
    SHUTDOWN; swallows what the worker writes."""

    def __init__(self, blob, rounds):
        self.blob = blob
        self.size = len(blob)
        self.rounds = rounds
        self.bytes = 0

    def recv_into(self, buf, nbytes=0, flags=0):
        if self.rounds <= 0:
            if self.rounds < 0:
                return 0
            self.rounds = -1
            data = HEADER.pack(0, SHUTDOWN, 0, 0, 0)
            buf[:12] = data
            return 12
        if flags:
            # poll(): nothing more has arrived.
            raise BlockingIOError()
        self.rounds -= 1
        n = self.size
        buf[:n] = self.blob
        return n

    def sendall(self, data):
        self.bytes += len(data)

    def send(self, data, flags=0):
        self.bytes += len(data)
        return len(data)

    def sendmsg(self, buffers, *args):
        n = sum(len(b) for b in buffers)
        self.bytes += n
        return n


def bench_app_alone(n):
    env = dict(ENV)
    app = hello_app

    def write(data):
        pass

    def start_response(status, headers, exc_info=None):
        return write

    c0 = time.process_time()
    for _ in range(n):
        app(env, start_response)
    c1 = time.process_time()
    return (c1 - c0) / n * 1e6


def bench_in_process(wsgi, n, batch):
    payload = go_environ(ENV)
    # Stream ids 1..batch every round: each round's streams are closed
    # before the next round is read, so the ids are free again.
    blob = b"".join(
        HEADER.pack(len(payload), REQUEST, END_STREAM, 0, sid) + payload
        for sid in range(1, batch + 1)
    )
    rounds = n // batch
    sock = FakeSocket(blob, rounds)
    w = wsgi.InlineWorker(sock, hello_app)
    t0 = time.perf_counter()
    c0 = time.process_time()
    status = w.serve()
    c1 = time.process_time()
    t1 = time.perf_counter()
    assert status == 0, status
    total = rounds * batch
    # Every request was answered (RESPONSE + DATA, 12 body bytes).
    assert sock.bytes >= total * 12, (sock.bytes, total)
    return total, (c1 - c0) / total * 1e6, (t1 - t0) / total * 1e6


def proc_cpu(pid):
    """(user, system, total) CPU seconds of pid: the split from /proc/PID/stat
    (clock ticks), the total from schedstat (nanoseconds)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        with open("/proc/%d/schedstat" % pid) as f:
            total = int(f.read().split()[0]) / 1e9
    except OSError:
        total = None
    user, system = int(fields[11]) / ticks, int(fields[12]) / ticks
    return user, system, user + system if total is None else total


def bench_socketpair(adapter_dir, n):
    from fakek import FakeK

    app_dir = os.path.join(HERE, "apps")
    k = FakeK(app="bench_hello:application", cwd=app_dir, env={"PYTHONPATH": adapter_dir})
    try:
        assert k.hello()[4] == "ready"
        payload = go_environ(ENV)
        k.sock.settimeout(None)  # plain blocking calls: no poll() per recv
        recv = k.sock.recv
        send = k.sock.sendall
        # Warm up.
        for sid in range(1, 1001):
            send(HEADER.pack(len(payload), REQUEST, END_STREAM, 0, sid) + payload)
            k.response(sid)
        c0 = proc_cpu(k.proc.pid)
        t0 = time.perf_counter()
        first = 1001
        for sid in range(first, first + n):
            send(HEADER.pack(len(payload), REQUEST, END_STREAM, 0, sid) + payload)
            # The hello response is RESPONSE + DATA(END) in one write.
            data = recv(65536)
            while not data.endswith(b"Hello world!"):
                data += recv(65536)
        t1 = time.perf_counter()
        c1 = proc_cpu(k.proc.pid)
    finally:
        k.close()
    user = (c1[0] - c0[0]) / n * 1e6
    system = (c1[1] - c0[1]) / n * 1e6
    total = (c1[2] - c0[2]) / n * 1e6
    return n, user, system, total, (t1 - t0) / n * 1e6


def main():
    p = argparse.ArgumentParser()
    p.add_argument("-n", type=int, default=100000, help="requests per in-process run")
    p.add_argument("--repeat", type=int, default=5, help="runs per figure (the median is shown)")
    p.add_argument("--batch", type=int, default=64, help="REQUESTs per read, in-process")
    p.add_argument("--adapter", default=os.path.dirname(HERE),
                   help="the directory holding krait_worker/ (default: this tree's python/)")
    p.add_argument("--no-socketpair", action="store_true")
    args = p.parse_args()
    adapter_dir = os.path.abspath(args.adapter)
    sys.path.insert(0, adapter_dir)
    sys.path.insert(1, HERE)
    from krait_worker import wsgi

    assert os.path.dirname(os.path.abspath(wsgi.__file__)) == os.path.join(adapter_dir, "krait_worker")
    print("python %s, adapter %s" % (sys.version.split()[0], adapter_dir))
    med = statistics.median
    bench_in_process(wsgi, min(args.n, 20000), args.batch)  # warm up
    app = med(bench_app_alone(args.n) for _ in range(args.repeat))
    runs = [bench_in_process(wsgi, args.n, args.batch) for _ in range(args.repeat)]
    total = runs[0][0]
    cpu = med(r[1] for r in runs)
    wall = med(r[2] for r in runs)
    print("app alone:  %.2f us CPU/request" % app)
    print("in-process: %d requests x %d, %.2f us CPU/request (%.2f us wall), batches of %d"
          % (total, args.repeat, cpu, wall, args.batch))
    print("beyond app: %.2f us CPU/request" % (cpu - app))
    if args.no_socketpair:
        return
    sp = [bench_socketpair(adapter_dir, max(1000, args.n // 4)) for _ in range(max(1, args.repeat // 2))]
    n = sp[0][0]
    user = med(r[1] for r in sp)
    system = med(r[2] for r in sp)
    total = med(r[3] for r in sp)
    rt = med(r[4] for r in sp)
    print("socketpair: %d requests x %d, worker CPU/request %.2f us (clock ticks: user %.2f + sys %.2f), "
          "%.2f us round trip" % (n, len(sp), total, user, system, rt))


if __name__ == "__main__":
    main()
