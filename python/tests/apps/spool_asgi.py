"""ASGI test app for krait's response spooling (integration/spool_test.go).

- GET /hello answers "hello";
- GET /big?n=N[&mark=PATH] streams N pattern bytes (64 KiB chunk i is the
  8-byte big-endian i repeated) without a Content-Length; when a send
  fails (the client left) it writes "sent=S total=N" to PATH;
- GET /trailers?n=N streams N pattern bytes, GET /trailers?file=PATH sends
  the file with pathsend; either ends with the trailer X-End.
"""

import os
import struct
from urllib.parse import parse_qs

CHUNK = 65536


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if scope["path"] == "/trailers":
        # N pattern bytes, or the file PATH sent with pathsend, then a
        # trailer: order must hold through the spool.
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/octet-stream"), (b"trailer", b"x-end")]})
        if "file" in q:
            await send({"type": "http.response.pathsend", "path": q["file"]})
        else:
            n, i = int(q.get("n", "0")), 0
            while n > 0:
                c = (struct.pack(">Q", i) * (CHUNK // 8))[:n]
                await send({"type": "http.response.body", "body": c, "more_body": True})
                n -= len(c)
                i += 1
            await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.trailers", "headers": [(b"x-end", b"after-the-body")]})
        return
    if scope["path"] != "/big":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})
        return
    n = int(q.get("n", "0"))
    mark = q.get("mark")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    sent, i = 0, 0
    try:
        while sent < n:
            c = struct.pack(">Q", i) * (CHUNK // 8)
            c = c[: n - sent]
            await send({"type": "http.response.body", "body": c, "more_body": True})
            sent += len(c)
            i += 1
        await send({"type": "http.response.body", "body": b""})
    except OSError:
        if mark:
            with open(mark + ".tmp", "w") as f:
                f.write("sent=%d total=%d" % (sent, n))
            os.rename(mark + ".tmp", mark)
        raise
