"""ASGI entry point: Django for HTTP, and a WebSocket echo at /ws/echo/,
without Channels: a small router in front of Django's ASGI handler.

    krait serve krsite.asgi:application --chdir testdata/djangosite \
        --certfile cert.pem --keyfile key.pem --static /static=$DJANGOSITE_STATIC_ROOT

The echo answers each text message with JSON naming the text, the scope's
scheme and http_version, and the user the Django session cookie sent with
the handshake belongs to ("" when none), so a test sees that the browser's
secure session cookie reaches the WebSocket route too.
"""

import json
import os
from http.cookies import SimpleCookie

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "krsite.settings")
# Set Django up before anything imports models.
django_app = get_asgi_application()

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402


def _session_user(scope):
    """The username of the session the handshake's cookie names, or ""."""
    from django.contrib.auth import SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    cookie = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookie.load(value.decode("latin-1"))
    morsel = cookie.get(settings.SESSION_COOKIE_NAME)
    if morsel is None:
        return ""
    user_id = SessionStore(session_key=morsel.value).get(SESSION_KEY)
    if user_id is None:
        return ""
    user = get_user_model().objects.filter(pk=user_id).first()
    return user.get_username() if user else ""


async def websocket_echo(scope, receive, send):
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    user = await sync_to_async(_session_user)(scope)
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        reply = {
            "echo": message.get("text") or "",
            "scheme": scope["scheme"],
            "http_version": scope["http_version"],
            "user": user,
        }
        await send({"type": "websocket.send", "text": json.dumps(reply)})


async def lifespan(scope, receive, send):
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope, receive, send):
    if scope["type"] == "websocket":
        if scope["path"] == "/ws/echo/":
            return await websocket_echo(scope, receive, send)
        await receive()  # websocket.connect
        await send({"type": "websocket.close", "code": 1008})  # before accept: 403
        return
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    await django_app(scope, receive, send)
