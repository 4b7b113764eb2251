"""WSGI test app for krait's reload and recycling tests (integration/reload_test.go).

The tests coordinate with it through files in KRAIT_TEST_DIR (passed with
--env), never through sleeps:

- at import, GEN is the content of TEST_DIR/generation ("0" when absent):
  the test changes it before a reload and sees which generation answers;
- import fails while TEST_DIR/fail-import exists (new code that is broken);
- / answers "gen=GEN pid=PID";
- /block?token=T appends "started T PID" to TEST_DIR/events.log, waits for
  TEST_DIR/release-T, then answers "released T gen=GEN pid=PID";
- /leak?mb=N keeps N MiB more (touched, so resident) and answers the pid.
"""

import os
import time
from urllib.parse import parse_qs

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 60.0

if TEST_DIR and os.path.exists(os.path.join(TEST_DIR, "fail-import")):
    raise RuntimeError("reload_app: broken on purpose (fail-import exists)")


def _read_gen():
    try:
        with open(os.path.join(TEST_DIR, "generation")) as f:
            return f.read().strip()
    except OSError:
        return "0"


GEN = _read_gen()
_leaked = []


def _record(line):
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
    me = "gen=%s pid=%d" % (GEN, os.getpid())
    if path == "/":
        return _text(start_response, me)
    if path == "/block":
        token = q["token"]
        _record("started %s %d" % (token, os.getpid()))
        release = os.path.join(TEST_DIR, "release-" + token)
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(release):
            if time.monotonic() > deadline:
                return _text(start_response, "never released", "500 Internal Server Error")
            time.sleep(0.005)  # polling a file, not timing
        return _text(start_response, "released %s %s" % (token, me))
    if path == "/leak":
        b = bytearray(int(q.get("mb", "1")) << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1  # touch every page so it is resident
        _leaked.append(b)
        return _text(start_response, me)
    return _text(start_response, "not found", "404 Not Found")
