"""ASGI test app for krait's supervisor hardening tests.

Lifespan startup and shutdown append "lifespan-startup PID" and
"lifespan-shutdown PID" to TEST_DIR/events.log; /block?token=T appends
"started T PID" and waits for TEST_DIR/release-T (polling a file, not timing).
"""

import asyncio
import os
from urllib.parse import parse_qs

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 60.0


def _record(line):
    fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def _text(send, text, status=200):
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                _record("lifespan-startup %d" % os.getpid())
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                _record("lifespan-shutdown %d" % os.getpid())
                await send({"type": "lifespan.shutdown.complete"})
                return
    q = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/hello":
        await _text(send, "hello")
        return
    if scope["path"] == "/block":
        token = q["token"]
        _record("started %s %d" % (token, os.getpid()))
        release = os.path.join(TEST_DIR, "release-" + token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_LIMIT
        while not os.path.exists(release):
            if loop.time() > deadline:
                await _text(send, "never released", 500)
                return
            await asyncio.sleep(0.005)  # polling a file, not timing
        await _text(send, "released " + token)
        return
    await _text(send, "not found", 404)
