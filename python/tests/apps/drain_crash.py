"""WSGI test app for crash-loop reporting (integration/drain_test.go).

Each import counts a boot in KRAIT_TEST_DIR/boots. Boots 1 to
KRAIT_TEST_CRASHES (default 3) print two lines naming the boot to stderr
and exit the process 0.3 s after the import, from a thread: the worker has
said HELLO and dies soon after boot without serving a request. Later boots
serve "ok".
"""

import os
import sys
import threading
import time

TEST_DIR = os.environ["KRAIT_TEST_DIR"]
CRASHES = int(os.environ.get("KRAIT_TEST_CRASHES", "3"))

_path = os.path.join(TEST_DIR, "boots")
try:
    with open(_path) as f:
        boot = int(f.read() or "0") + 1
except FileNotFoundError:
    boot = 1
with open(_path, "w") as f:
    f.write(str(boot))

if boot <= CRASHES:
    def _die():
        time.sleep(0.3)
        sys.stderr.write("drain_crash: boot %d is about to die\n" % boot)
        sys.stderr.write("RuntimeError: simulated crash %d\n" % boot)
        sys.stderr.flush()
        os._exit(1)

    threading.Thread(target=_die, daemon=True).start()


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok boot %d" % boot]
