"""The WSGI app behind the static-file tests: it answers every request with
"app:" and the path it got, so a test can tell a response of the app from
one krait's static handler gave. /hold occupies the worker: it creates
KRAIT_TEST_DIR/held and waits (at most 60 s) for KRAIT_TEST_DIR/release."""

import os
import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/hold":
        test_dir = os.environ["KRAIT_TEST_DIR"]
        open(os.path.join(test_dir, "held"), "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(test_dir, "release")) and time.monotonic() < deadline:
            time.sleep(0.01)
    body = ("app:" + path).encode("utf-8", "surrogateescape")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
