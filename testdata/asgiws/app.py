"""WebSocket flow-control test app (integration/asgiws_test.go).

Routes (any other path: 404 over HTTP):
    /ws/echo            echo every message (text or bytes) back
    /ws/count           echo, and count the WINDOW frames krait sends on
                        this stream; the text "stats" answers
                        {"windows": N, "credit": BYTES} instead of an echo
    /ws/flood?n=N&size=S
                        send N binary messages of S bytes, each starting with
                        its number (8 digits), as fast as credit allows; then
                        the text "done"; then echo

/ws/count looks into the adapter (white box): receive is the bound method of
krait_worker's stream object, whose worker dispatches every frame krait
sends; the app wraps that worker's dispatch for the stream's lifetime.
"""

import json
from urllib.parse import parse_qs

WINDOW = 0x05


async def app(scope, receive, send):
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind == "http":
        await send({"type": "http.response.start", "status": 404,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"not found\n"})
        return
    path = scope["path"]
    m = await receive()
    assert m["type"] == "websocket.connect", m
    await send({"type": "websocket.accept"})
    counts = None
    restore = None
    if path == "/ws/count":
        counts = {"windows": 0, "credit": 0}
        stream = receive.__self__
        worker = stream.w
        sid = stream.id
        orig = worker.dispatch

        def dispatch(ftype, flags, stream_id, payload):
            if ftype == WINDOW and stream_id == sid:
                counts["windows"] += 1
                counts["credit"] += int.from_bytes(payload, "little")
            return orig(ftype, flags, stream_id, payload)

        worker.dispatch = dispatch

        def restore():
            del worker.dispatch
    elif path == "/ws/flood":
        q = parse_qs(scope["query_string"].decode())
        n = int(q["n"][0])
        size = int(q["size"][0])
        pad = b"f" * (size - 8)
        for i in range(n):
            await send({"type": "websocket.send", "bytes": b"%08d" % i + pad})
        await send({"type": "websocket.send", "text": "done"})
    try:
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            text = m.get("text")
            if counts is not None and text == "stats":
                await send({"type": "websocket.send", "text": json.dumps(counts)})
            elif text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": m["bytes"]})
    finally:
        if restore is not None:
            restore()
