"""WSGI test app for krait's worker-shielding tests (integration/shield_test.go).

Every request except GET /count is counted when the app is called, before
it reads its body, so the tests can tell exactly which requests reached a
worker (run it with -w 1 so there is one counter):

- GET /count answers the number of counted requests;
- GET /hello answers "hello";
- anything else reads the whole body and answers "LENGTH SHA256".
"""

import hashlib
import threading

_lock = threading.Lock()
_count = 0


def application(environ, start_response):
    global _count
    path = environ.get("PATH_INFO", "")
    if path == "/count":
        with _lock:
            out = str(_count).encode()
    else:
        with _lock:
            _count += 1
        if path == "/hello":
            out = b"hello"
        else:
            inp = environ["wsgi.input"]
            h = hashlib.sha256()
            n = 0
            while True:
                block = inp.read(65536)
                if not block:
                    break
                n += len(block)
                h.update(block)
            out = ("%d %s" % (n, h.hexdigest())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
