"""A fake krait ("K") for testing the worker adapter over a real socketpair.

It spawns `python -m krait_worker` with the adapter on PYTHONPATH and the
worker's end of a socketpair as fd 3, then speaks the protocol frame by
frame so tests can check exactly what the worker sends.
"""

import marshal
import os
import socket
import struct
import subprocess
import sys

HEADER = struct.Struct("<IBBHI")
U32 = struct.Struct("<I")

HELLO, REQUEST, DATA, RESPONSE, WINDOW, RESET, SENDFILE, SHUTDOWN = range(1, 9)
END_STREAM = 1
INITIAL_WINDOW = 262144
NAMES = {1: "HELLO", 2: "REQUEST", 3: "DATA", 4: "RESPONSE", 5: "WINDOW",
         6: "RESET", 7: "SENDFILE", 8: "SHUTDOWN"}

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")

# Generous: the test machine is small and shared.
TIMEOUT = 60


class Frame:
    __slots__ = ("type", "flags", "stream", "payload")

    def __init__(self, ftype, flags, stream, payload):
        self.type = ftype
        self.flags = flags
        self.stream = stream
        self.payload = payload

    @property
    def end(self):
        return bool(self.flags & END_STREAM)

    def value(self):
        return marshal.loads(self.payload)

    def __repr__(self):
        return "Frame(%s, flags=%d, stream=%d, %r)" % (
            NAMES.get(self.type, self.type), self.flags, self.stream, self.payload[:80])


def environ(method="GET", path="/", query="", headers=None, content_length=None):
    env = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "50000",
        "RAW_URI": path + ("?" + query if query else ""),
        "REQUEST_URI": path + ("?" + query if query else ""),
        "wsgi.url_scheme": "http",
        "HTTP_HOST": "localhost:8000",
    }
    if content_length is not None:
        env["CONTENT_LENGTH"] = str(content_length)
        env["CONTENT_TYPE"] = "application/octet-stream"
    if headers:
        env.update(headers)
    return env


class Response:
    """What the worker sent on one stream."""

    def __init__(self):
        self.status = None
        self.headers = None
        self.body = b""
        self.frames = []
        self.reset = None  # RESET reason when the worker reset the stream
        self.sendfile = None

    @property
    def header_dict(self):
        return {k.lower(): v for k, v in self.headers}


class FakeK:
    def __init__(self, app="routes:application", threads=None, interface=None,
                 cwd=APPS_DIR, extra_args=(), env=None):
        self.sock, child = socket.socketpair()
        args = [sys.executable, "-u", "-m", "krait_worker", "--app", app]
        if threads is not None:
            args += ["--threads", str(threads)]
        if interface is not None:
            args += ["--interface", interface]
        args += list(extra_args)
        penv = dict(os.environ)
        penv["PYTHONPATH"] = PYTHON_DIR
        penv.pop("PYTHONSAFEPATH", None)
        if env:
            penv.update(env)
        cfd = child.fileno()

        def to_fd3():
            os.dup2(cfd, 3)
            os.set_inheritable(3, True)

        self.proc = subprocess.Popen(
            args, cwd=cwd, env=penv, preexec_fn=to_fd3, close_fds=False,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        child.close()
        self.sock.settimeout(TIMEOUT)
        self.rbuf = b""
        self.next_id = 1
        self.windows = {}  # stream -> remaining credit for our request body

    # ---- raw frames ----

    def send(self, ftype, flags, stream, payload=b""):
        self.sock.sendall(HEADER.pack(len(payload), ftype, flags, 0, stream) + payload)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _recv_exact(self, n):
        while len(self.rbuf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("worker closed the socket")
            self.rbuf += chunk
        data, self.rbuf = self.rbuf[:n], self.rbuf[n:]
        return data

    def recv(self):
        length, ftype, flags, reserved, stream = HEADER.unpack(self._recv_exact(12))
        assert reserved == 0, reserved
        return Frame(ftype, flags, stream, self._recv_exact(length))

    def at_eof(self):
        """Read until the worker closes its end; return the frames before it."""
        frames = []
        while True:
            try:
                frames.append(self.recv())
            except EOFError:
                return frames

    # ---- protocol steps ----

    def hello(self):
        f = self.recv()
        assert f.type == HELLO and f.stream == 0, f
        return f.value()

    def request(self, env, body=None, chunk=16384, sid=None, end=True):
        """Send a REQUEST (and the body when it fits the window); return the id."""
        if sid is None:
            sid = self.next_id
        self.next_id = sid + 1
        payload = marshal.dumps(env)
        if body is None:
            self.send(REQUEST, END_STREAM if end else 0, sid, payload)
            return sid
        self.send(REQUEST, 0, sid, payload)
        self.windows[sid] = INITIAL_WINDOW
        if len(body) <= INITIAL_WINDOW:
            self.send_body(sid, body, chunk, end=end)
        return sid

    def send_body(self, sid, body, chunk=16384, end=True):
        """Send body in DATA frames of chunk bytes, never beyond the window.

        Waits for WINDOW frames when the window is used up; other frames
        read meanwhile are returned so the caller can check them.
        """
        other = []
        view = memoryview(body)
        off = 0
        while off < len(body) or (end and off == len(body)):
            room = self.windows.get(sid, INITIAL_WINDOW)
            if room == 0 and off < len(body):
                f = self.recv()
                if f.type == WINDOW:
                    self.windows[f.stream] = self.windows.get(f.stream, 0) + U32.unpack(f.payload)[0]
                else:
                    other.append(f)
                continue
            n = min(chunk, room, len(body) - off)
            last = end and off + n == len(body)
            self.send(DATA, END_STREAM if last else 0, sid, bytes(view[off:off + n]))
            self.windows[sid] = room - n
            off += n
            if last:
                break
        return other

    def response(self, sid, grant=True, other=None, started=False):
        """Collect frames on sid until the worker ends it.

        grant: return DATA credit as it arrives. Frames on other streams go
        to `other` (a list) when given, else fail. WINDOW frames for our
        request body are recorded. started: the caller already read the
        RESPONSE frame.
        """
        r = Response()
        if started:
            r.status, r.headers = "(read by caller)", []
        granted = INITIAL_WINDOW
        received = 0
        while True:
            f = self.recv()
            if f.stream != sid:
                if f.type == WINDOW:
                    self.windows[f.stream] = self.windows.get(f.stream, 0) + U32.unpack(f.payload)[0]
                    continue
                if other is None:
                    raise AssertionError("unexpected frame %r while reading stream %d" % (f, sid))
                other.append(f)
                continue
            r.frames.append(f)
            if f.type == RESPONSE:
                assert r.status is None, "second RESPONSE"
                # (status, headers), or (status, headers, trailers) from ASGI.
                r.status, r.headers = f.value()[:2]
            elif f.type == DATA:
                assert r.status is not None, "DATA before RESPONSE"
                r.body += f.payload
                received += len(f.payload)
                assert received <= granted, "worker sent beyond its window"
                if grant and f.payload and not f.end:
                    try:
                        self.send(WINDOW, 0, sid, U32.pack(len(f.payload)))
                    except BrokenPipeError:
                        pass  # a worker draining after SHUTDOWN may be gone already
                    granted += len(f.payload)
            elif f.type == SENDFILE:
                assert r.status is not None, "SENDFILE before RESPONSE"
                r.sendfile = f.value()
            elif f.type == WINDOW:
                self.windows[sid] = self.windows.get(sid, 0) + U32.unpack(f.payload)[0]
                continue
            elif f.type == RESET:
                r.reset = f.payload.decode()
                return r
            else:
                raise AssertionError("unexpected frame %r" % f)
            if f.end:
                return r

    def get(self, path, query="", **kw):
        sid = self.request(environ(path=path, query=query, **kw))
        return self.response(sid)

    def close(self):
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()
            self.proc.stderr.close()

    def stop(self):
        """Close the socket, wait for exit, and return (status, stdout, stderr)."""
        self.sock.close()
        out, err = self.proc.communicate(timeout=TIMEOUT)
        return self.proc.returncode, out.decode(), err.decode()

    def wait(self):
        out, err = self.proc.communicate(timeout=TIMEOUT)
        self.sock.close()
        return self.proc.returncode, out.decode(), err.decode()
