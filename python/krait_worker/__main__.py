"""Worker entry point: python -m krait_worker --app MODULE:CALLABLE ..."""

import argparse
import marshal
import os
import signal
import socket
import sys
import traceback

from . import __version__
from .loader import django_paths, is_async_app, load_app
from .protocol import EXIT_BOOT_ERROR, HELLO, PROTOCOL_VERSION, frame

# Interfaces this adapter can serve, mapped to the module that serves them.
# wsgi: serve(sock, app, threads) after HELLO; asgi: serve(sock, app, hello,
# capacity, loop, lifespan), which sends HELLO itself after lifespan startup.
SERVERS = {"wsgi": "krait_worker.wsgi", "asgi": "krait_worker.asgi"}

# HELLO capacity of an ASGI worker without --limit-concurrency.
UNLIMITED_CAPACITY = 1000000

SOCKET_FD = 3


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m krait_worker",
        description="krait's Python worker; krait starts it with a socketpair on fd 3.",
        allow_abbrev=False,
    )
    p.add_argument("--app", required=True, help="MODULE:CALLABLE (MODULE alone means MODULE:application)")
    p.add_argument("--threads", type=int, default=1, help="requests served at once (WSGI)")
    p.add_argument("--interface", choices=("auto", "wsgi", "asgi"), default="auto")
    p.add_argument("--prefetch", type=int, default=0, metavar="N",
                   help="WSGI: requests krait may queue here beyond --threads (they may be recalled)")
    p.add_argument("--pythonpath", action="append", default=[], metavar="DIR",
                   help="directory to put on sys.path right after the adapter's (repeatable)")
    p.add_argument("--limit-concurrency", type=int, default=0, metavar="N",
                   help="ASGI: requests one worker runs at once (0 = unlimited)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="ASGI event loop (auto: uvloop when installed)")
    p.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                   help="ASGI lifespan protocol")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be at least 1")
    if args.limit_concurrency < 0:
        p.error("--limit-concurrency must not be negative")
    return args


def setup_sys_path(extra):
    """Put --pythonpath dirs right after the adapter's sys.path entry and
    make sure the working directory (krait's --chdir) is importable."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    index = len(sys.path)
    for i, entry in enumerate(sys.path):
        try:
            if os.path.abspath(entry or ".") == here:
                index = i + 1
                break
        except (TypeError, ValueError):
            continue
    for d in reversed(extra):
        sys.path.insert(index, os.path.abspath(d))
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)


def load(spec, interface):
    """Import the app; return (app, interface, error text or "")."""
    try:
        app = load_app(spec)
    except BaseException:
        return None, "wsgi" if interface == "auto" else interface, traceback.format_exc()
    if interface == "auto":
        interface = "asgi" if is_async_app(app) else "wsgi"
    return app, interface, ""


def _ignore_signal(signum, frame):
    """Leave SIGINT/SIGTERM to krait (see main)."""


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # Signals are krait's business: it stops workers with SHUTDOWN frames
    # (and SIGKILL as a last resort). Ctrl-C at a terminal, systemd's
    # KillMode=control-group and `kill -TERM -- -PGID` signal the whole
    # process group, and must not cut in-flight requests (or ASGI lifespan
    # shutdown) short: krait's own stop finishes them. A no-op handler
    # rather than SIG_IGN, because an ignored signal stays ignored in the
    # programs the app runs, and a handled one is reset by exec.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _ignore_signal)
    try:
        sock = socket.socket(fileno=SOCKET_FD)
    except OSError as e:
        sys.stderr.write("krait_worker: fd %d is not krait's socket: %s\n" % (SOCKET_FD, e))
        return EXIT_BOOT_ERROR
    setup_sys_path(args.pythonpath)

    app, interface, error = load(args.app, args.interface)
    if interface == "asgi":
        capacity = args.limit_concurrency or UNLIMITED_CAPACITY
    else:
        capacity = args.threads

    # Read once the app is imported (its import configures Django); an
    # 8th HELLO item only for a configured Django project.
    django = django_paths() if not error else None

    def hello(status, error, capacity):
        """Send HELLO; False when krait's socket is unusable."""
        msg = (PROTOCOL_VERSION, __version__, os.getpid(), interface, status, error, capacity)
        if status == "ready" and django is not None:
            msg += (django,)
        try:
            sock.sendall(frame(HELLO, 0, 0, marshal.dumps(msg, 2)))
        except OSError as e:
            sys.stderr.write("krait_worker: cannot send HELLO: %s\n" % e)
            return False
        return True

    if error:
        hello("error", error, capacity)
        return EXIT_BOOT_ERROR
    module = __import__(SERVERS[interface], fromlist=["serve"])
    if interface == "asgi":
        return module.serve(sock, app, hello, capacity, loop=args.loop, lifespan=args.lifespan)
    if not hello("ready", "", capacity):
        return EXIT_BOOT_ERROR
    return module.serve(sock, app, args.threads, max(args.prefetch, 0))


if __name__ == "__main__":
    sys.exit(main())
