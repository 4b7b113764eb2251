"""ASGI app for integration/ws_harden_test.go: WebSocket hardening.

HTTP GET /pid answers the worker's pid. WebSocket /echo?tag=T accepts and
echoes every message; "big N" answers a binary message of N bytes (larger
than one protocol frame, so the worker sends it in pieces), "close CODE"
makes the app close with CODE. websocket.disconnect is appended to
$KRAIT_TEST_DIR/events.log as "disconnect T CODE".
"""

import os
import urllib.parse

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")


def _record(line):
    with open(os.path.join(TEST_DIR, "events.log"), "a") as f:
        f.write(line + "\n")


def big(n):
    block = bytes(range(251))  # a prime length: pieces never align with it
    return (block * (n // len(block) + 1))[:n]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        body = str(os.getpid()).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    q = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
    tag = q.get("tag", "")
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            _record("disconnect %s %s" % (tag, msg.get("code")))
            return
        text, data = msg.get("text"), msg.get("bytes")
        if text is not None and text.startswith("big "):
            await send({"type": "websocket.send", "bytes": big(int(text[4:]))})
        elif text is not None and text.startswith("close "):
            await send({"type": "websocket.close", "code": int(text[6:])})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": data})
