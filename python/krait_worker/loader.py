"""Importing the user's application and finding out which interface it speaks."""

import ast
import importlib
import inspect
import os
import sys


class AppNotFound(Exception):
    """The module imported but the app object named in --app is not usable."""


def _literal(node, spec):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise AppNotFound(
            "only literal arguments are supported in the app factory call: %r" % spec
        ) from None


def parse_spec(spec):
    """Split "module[:expression]" into (module, expression).

    "module" alone means "module:application", as with gunicorn.
    """
    module, sep, expr = spec.partition(":")
    module = module.strip()
    expr = expr.strip() if sep else "application"
    if not module or not expr:
        raise AppNotFound("malformed --app %r: want MODULE:CALLABLE" % spec)
    return module, expr


def _resolve(module, expr, spec):
    """Evaluate expr (a dotted name, optionally called with literal arguments)
    against module, without eval()."""
    try:
        node = ast.parse(expr, mode="eval").body
    except SyntaxError:
        raise AppNotFound("malformed app expression %r in --app %r" % (expr, spec)) from None

    call = None
    if isinstance(node, ast.Call):
        call = node
        node = node.func
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise AppNotFound(
            "app expression %r in --app %r must be a dotted name or a call of one"
            % (expr, spec)
        )
    names.append(node.id)
    names.reverse()

    obj = module
    for i, name in enumerate(names):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise AppNotFound(
                "cannot find %r in module %r" % (".".join(names[: i + 1]), module.__name__)
            ) from None
    if call is not None:
        args = [_literal(a, spec) for a in call.args]
        kwargs = {}
        for kw in call.keywords:
            if kw.arg is None:
                raise AppNotFound("**kwargs are not supported in --app %r" % spec)
            kwargs[kw.arg] = _literal(kw.value, spec)
        if not callable(obj):
            raise AppNotFound("%r in --app %r is not callable" % (".".join(names), spec))
        obj = obj(*args, **kwargs)
    if not callable(obj):
        raise AppNotFound(
            "%r in module %r is not callable (got %s)"
            % (expr, module.__name__, type(obj).__name__)
        )
    return obj


def load_app(spec):
    """Import the module named by spec and return the application object.

    Exceptions from the import itself propagate unchanged (the caller reports
    them with their traceback); a missing or unusable attribute raises
    AppNotFound.
    """
    module_name, expr = parse_spec(spec)
    module = importlib.import_module(module_name)
    return _resolve(module, expr, spec)


def is_async_app(app):
    """Whether app looks like an ASGI application (an async callable).

    Mirrors uvicorn's check: a coroutine function, or an instance whose
    __call__ is one. A class is WSGI (PEP 3333 allows a class as a WSGI
    app) unless its instances are awaitable (an ASGI 3 class) or have an
    async __call__ (an ASGI 2 double-callable).
    """
    if inspect.isclass(app):
        return hasattr(app, "__await__") or inspect.iscoroutinefunction(
            getattr(app, "__call__", None))
    if inspect.iscoroutinefunction(app):
        return True
    call = getattr(app, "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)


# HELLO's optional 8th item: the keys krait reads, and the settings they
# come from.
_DJANGO_PATHS = (
    ("static_url", "STATIC_URL"),
    ("static_root", "STATIC_ROOT"),
    ("media_url", "MEDIA_URL"),
    ("media_root", "MEDIA_ROOT"),
)


def django_paths():
    """The app's Django STATIC_/MEDIA_ URL and root settings as a dict of
    str or None, or None when the app is not a configured Django project.

    Django is never imported here: only a project that already imported
    django.conf (and configured its settings) while loading is asked.
    krait decides what to serve (path URLs and absolute roots only).
    """
    if "django" not in sys.modules:
        return None
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    try:
        settings = conf.settings
        if not settings.configured:
            return None
        out = {}
        for key, name in _DJANGO_PATHS:
            v = getattr(settings, name, None)
            if v is not None and not isinstance(v, str):
                # STATIC_ROOT is often a pathlib.Path.
                try:
                    v = os.fspath(v)
                except TypeError:
                    v = str(v)
                if isinstance(v, bytes):
                    v = os.fsdecode(v)
            out[key] = v
        return out
    except Exception as e:  # a broken setting must not stop the worker
        sys.stderr.write("krait_worker: cannot read Django's static settings: %r\n" % (e,))
        return None
