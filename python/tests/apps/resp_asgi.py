"""A raw ASGI app for krait's response-limit and HEAD tests
(integration/dispatch_harden_test.go), served as resp_asgi:app.

/block?X creates KRAIT_TEST_DIR/entered-X and waits until the test
creates KRAIT_TEST_DIR/release.
"""

import asyncio
import os
import time

TEST_DIR = os.environ.get("KRAIT_TEST_DIR", "")
WAIT_LIMIT = 60.0


async def _wait_release():
    deadline = time.monotonic() + WAIT_LIMIT
    path = os.path.join(TEST_DIR, "release")
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        await asyncio.sleep(0.005)  # polling a file the test creates
    return False

BODY = b"ok"


def head_of_size(size):
    """Headers whose head counts exactly size bytes as krait counts it:
    3 for an ASGI status, plus len(name) + len(value) + 4 per header."""
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]
    base = 3 + sum(len(n) + len(v) + 4 for n, v in headers)
    fill = size - base - (len(b"x-huge") + 4)
    if fill < 0:
        raise ValueError("size %d is below the smallest head %d" % (size, base + 10))
    return headers + [(b"x-huge", b"a" * fill)]


async def _send(send, status, headers, body):
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _text(send, body, status=200):
    await _send(send, status, [(b"content-type", b"text/plain"),
                               (b"content-length", str(len(body)).encode())], body)


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
    query = scope["query_string"].decode()
    if scope["type"] == "websocket":
        await _websocket(path, query, receive, send)
        return
    method = scope["method"]
    if path == "/pid":
        await _text(send, str(os.getpid()).encode())
    elif path == "/block":
        with open(os.path.join(TEST_DIR, "entered-" + query), "w"):
            pass
        if not await _wait_release():
            await _text(send, b"never released", 504)
            return
        await _text(send, ("released " + query).encode())
    elif path == "/head":
        await _send(send, 200, head_of_size(int(query)), BODY)
    elif path == "/huge":
        await _send(send, 200, [(b"x-huge", b"a" * (1 << 20))], BODY)
    elif path == "/many":
        await _send(send, 200, [(b"x-h%03d" % i, b"b" * 8000) for i in range(200)], BODY)
    elif path == "/trailers":
        # Trailers over the limit: the response started, so it is aborted.
        size = int(query)
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": False})
        await send({"type": "http.response.trailers",
                    "headers": [(b"x-trailer", b"t" * (size - len(b"x-trailer") - 4))]})
    elif path == "/early-hint":
        # Early hints over the limit: nothing was sent yet, so 500.
        size = int(query)
        await send({"type": "http.response.early_hint",
                    "links": [b"l" * (size - len(b"link") - 4)]})
        await _text(send, b"after hint")
    elif path == "/head-aware":
        # As Starlette answers HEAD: the GET's Content-Length, an empty body.
        body = b"x" * 1234
        await _send(send, 200, [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())],
                    b"" if method == "HEAD" else body)
    else:
        await _text(send, b"not found", 404)


async def _websocket(path, query, receive, send):
    assert (await receive())["type"] == "websocket.connect"
    if path == "/ws-accept":
        # Accept headers of exactly int(query) bytes (no subprotocol).
        fill = int(query) - len(b"x-huge") - 4
        await send({"type": "websocket.accept", "headers": [(b"x-huge", b"a" * fill)]})
        await send({"type": "websocket.close", "code": 1000})
    elif path == "/ws-deny":
        # A denial response with a head of exactly int(query) bytes.
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": head_of_size(int(query))})
        await send({"type": "websocket.http.response.body", "body": BODY})
    elif path == "/ws-close-long":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 4000, "reason": "r" * (2 << 20)})
