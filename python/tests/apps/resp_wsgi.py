"""A raw WSGI app for krait's response-limit, HEAD and 100-continue tests
(integration/dispatch_harden_test.go), served as resp_wsgi:application.

Coordination is through files in KRAIT_TEST_DIR (passed with --env), so
it works when no worker slot is free: /block?X creates entered-X there and
waits until the test creates "release".
"""

import os
import time

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 60.0  # seconds a blocked request waits for the release file


def _wait_release():
    deadline = time.monotonic() + WAIT_LIMIT
    path = os.path.join(TEST_DIR, "release")
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.005)  # polling a file the test creates
    return False

STATUS = "200 OK"
BODY = b"ok"


def _text(start_response, body, status="200 OK", extra=()):
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def head_of_size(size):
    """Headers whose head counts exactly size bytes as krait counts it:
    len(status) + len(name) + len(value) + 4 per header."""
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
    base = len(STATUS) + sum(len(n) + len(v) + 4 for n, v in headers)
    fill = size - base - (len("X-Huge") + 4)
    if fill < 0:
        raise ValueError("size %d is below the smallest head %d" % (size, base + 10))
    return headers + [("X-Huge", "a" * fill)]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    method = environ["REQUEST_METHOD"]
    if path == "/pid":
        return _text(start_response, str(os.getpid()).encode())
    if path == "/block":
        with open(os.path.join(TEST_DIR, "entered-" + query), "w"):
            pass
        if not _wait_release():
            return _text(start_response, b"never released", "504 Gateway Timeout")
        return _text(start_response, ("released " + query).encode())
    if path == "/head":
        # A response head of exactly int(query) bytes.
        start_response(STATUS, head_of_size(int(query)))
        return [BODY]
    if path == "/huge":
        # The case: one header of 1 MiB.
        start_response(STATUS, [("X-Huge", "a" * (1 << 20))])
        return [BODY]
    if path == "/many":
        # The other case: 200 headers of 8,000 bytes.
        start_response(STATUS, [("X-H%03d" % i, "b" * 8000) for i in range(200)])
        return [BODY]
    if path == "/huge-stream":
        # Oversized head from a generator: the check runs when the first
        # chunk is sent, still before anything reached krait.
        def gen():
            yield b"x"
        start_response(STATUS, head_of_size(int(query)))
        return gen()
    if path == "/bypass":
        # Turn the adapter's check off in this worker, so an oversized
        # head reaches krait's own check (the Go side's backstop).
        import krait_worker.wsgi as adapter
        adapter.MAX_HEAD = 1 << 30
        start_response(STATUS, head_of_size(int(query)))
        return [BODY]
    if path == "/head-aware":
        # Answers HEAD as Werkzeug does: the GET's Content-Length, no body.
        body = b"x" * 1234
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [] if method == "HEAD" else [body]
    if path == "/head-unaware":
        # Ignores the method: sends the body to HEAD too (krait drops it).
        body = b"y" * 777
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/head-nolength":
        # No Content-Length, no body for HEAD.
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [] if method == "HEAD" else [b"z" * 55]
    if path == "/not-modified":
        # A 304 may carry the Content-Length of the full response.
        start_response("304 Not Modified", [("Content-Length", "4321"), ("ETag", '"v1"')])
        return []
    if path == "/upload":
        n = 0
        inp = environ["wsgi.input"]
        while True:
            chunk = inp.read(65536)
            if not chunk:
                break
            n += len(chunk)
        return _text(start_response, str(n).encode())
    return _text(start_response, b"not found", "404 Not Found")
