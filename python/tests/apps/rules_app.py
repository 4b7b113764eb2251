"""The same three routes as a WSGI and an ASGI app, for
python/tests/test_protocol_rules.py, which checks that both interfaces
apply the protocol's rules for K's frames alike.

/read   reads the whole request body, answers its length.
/hold   holds the stream open without reading its body, for up to
        HOLD_SECONDS (the worker is stopped long before).
/hello  answers "Hello world!" without reading the body.
WebSocket (ASGI) /hold: accepts, then holds without receiving.
"""

import asyncio
import threading

HOLD_SECONDS = 120

_never = threading.Event()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/read":
        body = str(len(environ["wsgi.input"].read())).encode()
    elif path == "/hold":
        _never.wait(HOLD_SECONDS)
        body = b"held"
    else:
        body = b"Hello world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "websocket":
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await asyncio.sleep(HOLD_SECONDS)
        return
    path = scope["path"]
    if path == "/read":
        n = 0
        while True:
            m = await receive()
            n += len(m.get("body", b""))
            if not m.get("more_body"):
                break
        body = str(n).encode()
    elif path == "/hold":
        await asyncio.sleep(HOLD_SECONDS)
        body = b"held"
    else:
        body = b"Hello world!"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
