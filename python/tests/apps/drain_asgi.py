"""ASGI test app for the end of a graceful stop (integration/drain_test.go).

It records what happened in files under KRAIT_TEST_DIR (passed with --env):

- lifespan startup completes at once; lifespan shutdown awaits 0.2 s (so it
  really runs on the loop), appends "lifespan shutdown" to events.log and
  completes; with KRAIT_TEST_HANG_SHUTDOWN=1 it appends "lifespan hang"
  and never completes;
- /sse starts a Server-Sent Events stream, sends one event "data: hello",
  then waits (an hour) without ever calling receive(), as a stream that
  does not notice the client would; when its task is cancelled it appends
  "sse cancelled" and re-raises.
"""

import asyncio
import os

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
HANG = os.environ.get("KRAIT_TEST_HANG_SHUTDOWN") == "1"


def _event(line):
    fd = os.open(os.path.join(TEST_DIR, "events.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                if HANG:
                    _event("lifespan hang")
                    await asyncio.sleep(3600)
                await asyncio.sleep(0.2)
                _event("lifespan shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/sse":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            _event("sse cancelled")
            raise
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
