"""A raw WSGI app for krait's response compression tests
(integration/compress_test.go), served as compress_wsgi:application.

/stream?NAME yields one event, then waits until the test creates
"release-NAME" in KRAIT_TEST_DIR (passed with --env) before the second:
the test creates it only once it has decoded the first event.
"""

import gzip
import os
import time

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 30.0  # seconds /stream waits for the release file

PAGE = b"".join(b"<tr><td>%d</td><td>row %d</td></tr>\n" % (i, i) for i in range(1000))[:20000]


def _released(name):
    deadline = time.monotonic() + WAIT_LIMIT
    path = os.path.join(TEST_DIR, "release-" + name)
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.005)  # polling a file the test creates
    return False


def _stream(name):
    yield b"data: first\n\n"
    if _released(name):
        yield b"data: second\n\n"
    else:
        yield b"data: timeout\n\n"


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/page":
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                  ("Content-Length", str(len(PAGE))),
                                  ("ETag", '"rev1"')])
        return [PAGE]
    if path == "/chunks":  # no Content-Length from the app, two pieces (a list: the adapter knows the length)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [PAGE[:7000], PAGE[7000:]]
    if path == "/small":
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Length", "11")])
        return [b"hello small"]
    if path == "/png":
        start_response("200 OK", [("Content-Type", "image/png"), ("Content-Length", str(len(PAGE)))])
        return [PAGE]
    if path == "/encoded":
        body = gzip.compress(PAGE)
        start_response("200 OK", [("Content-Type", "text/html"), ("Content-Encoding", "gzip"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/file":  # wsgi.file_wrapper: krait's SENDFILE
        f = open(os.path.join(TEST_DIR, "page.html"), "rb")
        start_response("200 OK", [("Content-Type", "text/html"),
                                  ("Content-Length", str(os.path.getsize(f.name)))])
        return environ["wsgi.file_wrapper"](f)
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return _stream(environ.get("QUERY_STRING", ""))
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "9")])
    return [b"not found"]
