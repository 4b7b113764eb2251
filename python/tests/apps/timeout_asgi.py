"""ASGI test app for krait's --timeout and --heartbeat-timeout (integration/timeout_test.go).

The tests coordinate with it through files in KRAIT_TEST_DIR (passed with
--env), never through sleeps:

- /fast answers "ok pid=PID";
- /hang?token=T appends "started T PID" to TEST_DIR/events.log and awaits
  (cancellably) TEST_DIR/release-T, at most 60 s; when its task is
  cancelled it appends "cancelled T PID" and re-raises;
- /block-loop?token=T appends "started T PID", then blocks the event loop
  with time.sleep until TEST_DIR/release-T exists (at most 60 s): the
  worker cannot answer krait's heartbeat meanwhile.
"""

import asyncio
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


async def _answer(send, body):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    pid = os.getpid()
    token = parse_qs(scope.get("query_string", b"").decode()).get("token", ["x"])[0]
    release = os.path.join(TEST_DIR, "release-" + token)
    if path == "/hang":
        _event("started %s %d" % (token, pid))
        deadline = time.monotonic() + WAIT_LIMIT
        try:
            while not os.path.exists(release) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        except asyncio.CancelledError:
            _event("cancelled %s %d" % (token, pid))
            raise
        await _answer(send, ("released %s pid=%d" % (token, pid)).encode())
    elif path == "/block-loop":
        _event("started %s %d" % (token, pid))
        deadline = time.monotonic() + WAIT_LIMIT
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.02)  # blocks the event loop on purpose
        await _answer(send, ("released %s pid=%d" % (token, pid)).encode())
    else:
        await _answer(send, ("ok pid=%d" % pid).encode())
