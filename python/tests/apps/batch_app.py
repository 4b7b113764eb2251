"""WSGI test app for krait's batched dispatch (prefetch and recall):
integration/batch_test.go and python/tests/test_batch.py.

The tests coordinate with it through files in KRAIT_TEST_DIR (passed with
--env), never through sleeps:

- /block?token=T appends "started T PID" to TEST_DIR/events.log, waits for
  TEST_DIR/release-T or TEST_DIR/release-all (at most 120 s), appends "finished T PID" and answers
  "released T";
- /quick?id=N appends "run N PID" to TEST_DIR/events.log (so a test counts
  how often the app ran each request) and answers "ok N";
- anything else answers "ok".
"""

import os
import time
from urllib.parse import parse_qs

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 120.0


def _event(line):
    # One short O_APPEND write per line: lines from several workers stay whole.
    fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _arg(environ, name, default="x"):
    return parse_qs(environ.get("QUERY_STRING", "")).get(name, [default])[0]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    pid = os.getpid()
    if path == "/block":
        token = _arg(environ, "token")
        _event("started %s %d" % (token, pid))
        release = os.path.join(TEST_DIR, "release-" + token)
        everyone = os.path.join(TEST_DIR, "release-all")  # a test's cleanup
        deadline = time.monotonic() + WAIT_LIMIT
        while not (os.path.exists(release) or os.path.exists(everyone)) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling a file the test controls, not timing
        _event("finished %s %d" % (token, pid))
        body = ("released %s" % token).encode()
    elif path == "/quick":
        n = _arg(environ, "id")
        _event("run %s %d" % (n, pid))
        body = ("ok %s" % n).encode()
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
