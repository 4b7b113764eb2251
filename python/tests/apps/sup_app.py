"""WSGI test app for krait's supervisor hardening tests (integration/supervisor_harden_test.go).

The tests coordinate with it through files in KRAIT_TEST_DIR (passed with
--env), never through sleeps:

- import fails while TEST_DIR/fail-import exists (the app's code "changed on disk");
- import writes "booting PID" to TEST_DIR/events.log and waits while
  TEST_DIR/slow-import exists (a slow import);
- /block?token=T appends "started T PID" to TEST_DIR/events.log and waits for
  TEST_DIR/release-T;
- /crash kills the worker with SIGSEGV (a crash caused by a request);
- /spam?n=N prints N long lines to stdout;
- /spawn-holder starts a child that keeps the worker's krait socket (fd 3)
  open, as a fork()ed multiprocessing worker would, and answers
  "holder HPID pid PID".
"""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 60.0

if TEST_DIR and os.path.exists(os.path.join(TEST_DIR, "fail-import")):
    raise RuntimeError("sup_app: import failed on purpose (fail-import exists)")


def _slow_import():
    # A slow import (a big Django app): "booting PID" in events.log, then
    # wait while TEST_DIR/slow-import exists.
    flag = os.path.join(TEST_DIR, "slow-import")
    if not TEST_DIR or not os.path.exists(flag):
        return
    fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("booting %d\n" % os.getpid()).encode())
    os.close(fd)
    deadline = time.monotonic() + WAIT_LIMIT
    while os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.005)  # polling a file, not timing


_slow_import()


def _record(line):
    # One short O_APPEND write per line: lines from several workers stay whole.
    fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _text(start_response, text, status="200 OK"):
    body = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/hello":
        return _text(start_response, "hello")
    if path == "/pid":
        return _text(start_response, str(os.getpid()))
    if path == "/block":
        token = q["token"]
        _record("started %s %d" % (token, os.getpid()))
        release = os.path.join(TEST_DIR, "release-" + token)
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                return _text(start_response, "never released", "500 Internal Server Error")
            time.sleep(0.005)  # polling a file, not timing
        return _text(start_response, "released " + token)
    if path == "/crash":
        os.kill(os.getpid(), signal.SIGSEGV)
        time.sleep(60)
    if path == "/spam":
        line = "spam " + "x" * 200 + "\n"
        for _ in range(int(q.get("n", "1000"))):
            sys.stdout.write(line)
        sys.stdout.flush()
        return _text(start_response, "spammed")
    if path == "/spawn-holder":
        p = subprocess.Popen(["sleep", "120"], pass_fds=(3,), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _record("holder %d" % p.pid)
        return _text(start_response, "holder %d pid %d" % (p.pid, os.getpid()))
    return _text(start_response, "not found", "404 Not Found")
