"""WSGI test app for krait's response spooling (integration/spool_test.go).

Bodies are a pattern the test can check for order: 64 KiB chunk i is the
8-byte big-endian i repeated.

- GET /hello answers "hello";
- GET /big?n=N[&mark=PATH] answers N pattern bytes with a Content-Length;
  when the server stops the iteration early (the client left), close()
  writes "sent=S total=N" to PATH;
- GET /stream?n=N&wait=PATH streams N pattern bytes, then "MARK", then
  waits (at most 60 s) for PATH to exist, then "END" (no Content-Length);
- GET /crash?n=N&wait=PATH sends N pattern bytes, waits for PATH, then
  kills its own worker process.
"""

import os
import signal
import struct
import time
from urllib.parse import parse_qs

CHUNK = 65536


def pattern(n):
    i = 0
    while n > 0:
        c = struct.pack(">Q", i) * (CHUNK // 8)
        if n < CHUNK:
            c = c[:n]
        yield c
        n -= len(c)
        i += 1


def wait_for(path):
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


class Big:
    def __init__(self, n, mark):
        self.n, self.mark, self.sent = n, mark, 0

    def __iter__(self):
        for c in pattern(self.n):
            self.sent += len(c)
            yield c

    def close(self):
        if self.mark and self.sent < self.n:
            tmp = self.mark + ".tmp"
            with open(tmp, "w") as f:
                f.write("sent=%d total=%d" % (self.sent, self.n))
            os.rename(tmp, self.mark)


def stream(n, wait):
    yield from pattern(n)
    yield b"MARK"
    wait_for(wait)
    yield b"END"


def crash(n, wait):
    yield from pattern(n)
    wait_for(wait)
    os.kill(os.getpid(), signal.SIGKILL)
    yield b"never"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    n = int(q.get("n", "0"))
    octets = ("Content-Type", "application/octet-stream")
    if path == "/big":
        start_response("200 OK", [octets, ("Content-Length", str(n))])
        return Big(n, q.get("mark"))
    if path == "/stream":
        start_response("200 OK", [octets])
        return stream(n, q["wait"])
    if path == "/crash":
        start_response("200 OK", [octets, ("Content-Length", str(n + 5))])
        return crash(n, q["wait"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]
