"""WSGI test app for krait's --timeout and --heartbeat-timeout (integration/timeout_test.go).

The tests coordinate with it through files in KRAIT_TEST_DIR (passed with
--env), never through sleeps:

- /fast answers "ok pid=PID";
- /hang?token=T appends "started T PID" to TEST_DIR/events.log, then waits
  for TEST_DIR/release-T (at most 60 s) and answers "released T pid=PID";
- /stream-hang?token=T starts a streamed response (no Content-Length) with
  "first\n", appends "started T PID", then waits like /hang before the rest.
"""

import os
import time
from urllib.parse import parse_qs

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 60.0


def _event(line):
    fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _wait(token):
    release = os.path.join(TEST_DIR, "release-" + token)
    deadline = time.monotonic() + WAIT_LIMIT
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)


def _stream_hang(token, pid):
    yield b"first\n"
    _event("started %s %d" % (token, pid))
    _wait(token)
    yield b"rest\n"


def application(environ, start_response):
    path = environ["PATH_INFO"]
    pid = os.getpid()
    if path == "/stream-hang":
        token = parse_qs(environ.get("QUERY_STRING", "")).get("token", ["x"])[0]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return _stream_hang(token, pid)
    if path == "/hang":
        token = parse_qs(environ.get("QUERY_STRING", "")).get("token", ["x"])[0]
        _event("started %s %d" % (token, pid))
        release = os.path.join(TEST_DIR, "release-" + token)
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)
        body = ("released %s pid=%d" % (token, pid)).encode()
    else:
        body = ("ok pid=%d" % pid).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
