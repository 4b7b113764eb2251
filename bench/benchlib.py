"""Helpers for bench/run.sh: free ports, readiness probes, CPU accounting and
the wrk report. Stdlib only; run with any Python 3.9+.

    benchlib.py port                       print a free TCP port on 127.0.0.1
    benchlib.py expect DIR APP PATH        print the body the WSGI app DIR/APP (module:callable)
                                           answers to GET PATH, called in this process
    benchlib.py probe URL BODYFILE         exit 0 if GET URL answers 200 with BODYFILE's bytes
    benchlib.py cpu PID CORE WRKCORE       print CPU ticks per command of PID's process group,
                                           CPU ticks and context switches of PID and of each
                                           of its descendants, and both cores' busy/total
                                           ticks (JSON)
    benchlib.py cpudelta BEFORE AFTER SECS print busy share, CPU seconds per command and the
                                           front/workers CPU and context switches (JSON)
    benchlib.py report DIR NAME...         print the tables, write DIR/summary.md and DIR/results.json
    benchlib.py selftest                   check the CPU/context-switch accounting, the probe and
                                           the wrk parsing on known inputs
"""

import http.client
import json
import os
import re
import socket
import statistics
import sys
import urllib.parse
import wsgiref.util

CLK_TCK = os.sysconf("SC_CLK_TCK")
# A server's process tree: the process run.sh started, and its descendants.
ROLES = ("front", "workers")
COUNTERS = ("ticks", "vcsw", "nvcsw")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_body(directory, target, path):
    """The body the WSGI app target ("module:callable", imported from
    directory) answers to GET path, called in this process: what every server
    must answer before it counts as ready, so that all serve the same page."""
    sys.path.insert(0, directory)
    module, _, name = target.partition(":")
    app = getattr(__import__(module, fromlist=["_"]), name or "application")
    environ = {}
    wsgiref.util.setup_testing_defaults(environ)
    u = urllib.parse.urlsplit(path)
    environ.update(PATH_INFO=u.path or "/", QUERY_STRING=u.query, HTTP_HOST="127.0.0.1")
    status = []

    def start_response(s, headers, exc_info=None):
        status.append(s)

    chunks = app(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        if hasattr(chunks, "close"):
            chunks.close()
    if not status or not status[-1].startswith("200"):
        raise SystemExit("%s: GET %s answered %s" % (target, path, status or "nothing"))
    return body


def probe(url, body):
    """True if GET url answers 200 with body (bytes); else False, saying why on stderr."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=2)
    target = (u.path or "/") + ("?" + u.query if u.query else "")
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        got = resp.read()
    except (OSError, http.client.HTTPException) as e:
        print("GET %s: %s" % (url, e or type(e).__name__), file=sys.stderr)
        return False
    finally:
        conn.close()
    if resp.status == 200 and got == body:
        return True
    print("GET %s: %d %r" % (url, resp.status, got[:80]), file=sys.stderr)
    return False


def processes():
    """Every live process: {pid: (comm, ppid, pgrp, utime+stime ticks)}, from
    /proc/PID/stat (utime and stime cover all of a process's threads, the
    exited ones included)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        # comm is in parentheses and may hold spaces; fields follow the last ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # 0-based after comm: 1 ppid, 2 pgrp, 11 utime, 12 stime
        out[int(pid)] = (comm, int(fields[1]), int(fields[2]), int(fields[11]) + int(fields[12]))
    return out


def cpu_ticks(pgid, procs=None):
    """utime+stime ticks of every live process in process group pgid, by comm.

    Children that already exited are not counted; the servers here keep their
    workers for the whole run, so that does not matter.
    """
    out = {}
    for comm, _, pgrp, ticks in (procs or processes()).values():
        if pgrp == pgid:
            out[comm] = out.get(comm, 0) + ticks
    return out


def ctxt_switches(pid):
    """(voluntary, nonvoluntary) context switches of all live threads of pid.

    /proc/PID/status counts the main thread only, so this sums
    /proc/PID/task/*/status; threads that exited are missing (krait's Go
    threads and the servers' worker threads live as long as the process).
    """
    vol = nonvol = 0
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return 0, 0
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        nonvol += int(line.split()[1])
        except OSError:
            continue
    return vol, nonvol


def tree(leader, procs):
    """The front process (leader: the one run.sh started; krait's Go process)
    and its descendants (the workers: krait's Python processes), as
    {pid: {"comm", "role", "ticks", "vcsw", "nvcsw"}} with string keys."""
    children = {}
    for pid, (_, ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out = {}
    todo = [(leader, "front")] if leader in procs else []
    while todo:
        pid, role = todo.pop()
        comm, _, _, ticks = procs[pid]
        vol, nonvol = ctxt_switches(pid)
        out[str(pid)] = {"comm": comm, "role": role, "ticks": ticks, "vcsw": vol, "nvcsw": nonvol}
        todo.extend((c, "workers") for c in children.get(pid, ()))
    return out


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError("unknown latency %r" % text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(text):
    """The numbers run.sh reports, from wrk --latency output."""
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not rps:
        raise ValueError("no Requests/sec line")
    lat = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M))
    total = re.search(r"^\s+(\d+) requests in", text, re.M)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)) if total else None,
        "p50_ms": to_ms(lat["50"]) if "50" in lat else None,
        "p99_ms": to_ms(lat["99"]) if "99" in lat else None,
        # read errors are how wrk counts a server closing the connection
        # after each response (gunicorn sync): reported, not an error.
        "socket_errors": dict(
            zip(("connect", "read", "write", "timeout"), map(int, sock.groups()))
        )
        if sock
        else {},
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.2f ms" % v if v < 100 else "%.0f ms" % v


def markdown_table(header, table):
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(header)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"]
    lines.append("| " + " | ".join("-" * w for w in widths) + " |")
    for t in table:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(t, widths)) + " |")
    return lines


def per_request(row):
    """CPU microseconds and context switches per completed request of the
    measured run, for the front process, its workers and both; None when the
    row has no request count or no process tree."""
    tr = (row.get("cpu") or {}).get("tree")
    n = row.get("requests")
    if not tr or not n or "front" not in tr:
        return None
    out = {"requests": n, "exited": tr.get("exited", 0)}
    for role in ROLES:
        t = tr[role]
        if not t["procs"]:
            out[role] = None
            continue
        out[role] = {
            "cpu_us": t["cpu_s"] * 1e6 / n,
            "nvcsw": t["nvcsw"] / n,
            "vcsw": t["vcsw"] / n,
        }
    out["total_cpu_us"] = sum(out[r]["cpu_us"] for r in ROLES if out[r])
    return out


def per_request_table(rows):
    """The per-request breakdown: where each request's CPU goes (krait: the
    Go process vs the Python worker) and how often it is preempted."""
    table = []
    for r in rows:
        pr = per_request(r)
        if pr is None:
            continue
        r["per_request"] = pr

        def cell(role, key, fmt):
            v = pr[role]
            return "-" if v is None else fmt % v[key]

        table.append(
            [
                r["label"],
                str(pr["requests"]),
                cell("front", "cpu_us", "%.1f us"),
                cell("workers", "cpu_us", "%.1f us"),
                "%.1f us" % pr["total_cpu_us"],
                cell("front", "nvcsw", "%.2f"),
                cell("workers", "nvcsw", "%.2f"),
                cell("front", "vcsw", "%.2f"),
                cell("workers", "vcsw", "%.2f"),
            ]
        )
    if not table:
        return []
    header = [
        "server",
        "requests",
        "front CPU",
        "workers CPU",
        "total CPU",
        "front nvcsw",
        "workers nvcsw",
        "front vcsw",
        "workers vcsw",
    ]
    lines = [
        "Per request (measured run; CPU = utime+stime from /proc/PID/stat, nvcsw/vcsw ="
        " involuntary/voluntary context switches summed over /proc/PID/task/*/status,"
        " each divided by the requests wrk completed; front = the process run.sh started"
        " (krait: the Go server), workers = its descendants (krait: the Python workers)):",
    ]
    lines.extend(markdown_table(header, table))
    exited = [r["label"] for r in rows if (r.get("per_request") or {}).get("exited")]
    if exited:
        lines.append(
            "warning: processes exited during the run of: %s; their CPU and switches are missing"
            % ", ".join(exited)
        )
    return lines


def report(directory, names):
    rows = []
    for name in names:
        row = {"server": name, "label": (read(os.path.join(directory, name + ".label"), name) or name).strip()}
        status = read(os.path.join(directory, name + ".status"))
        if status and status.strip() != "ok":
            row["error"] = status.strip()
            rows.append(row)
            continue
        runs = []
        i = 1
        while True:
            text = read(os.path.join(directory, "%s.r%d.txt" % (name, i)))
            if text is None:
                break
            try:
                run = parse_wrk(text)
            except ValueError as e:
                run = {"error": "round %d: %s" % (i, e)}
            cpu = read(os.path.join(directory, "%s.r%d.cpu.json" % (name, i)))
            if cpu:
                run["cpu"] = json.loads(cpu)
            runs.append(run)
            i += 1
        good = [r for r in runs if "error" not in r]
        if not good:
            row["error"] = runs[0]["error"] if runs else "no measurement"
            rows.append(row)
            continue
        # The median round by requests/s stands for the server (PICK=best:
        # the fastest, for a shared machine); all rounds go into results.json.
        good.sort(key=lambda r: r["rps"])
        if os.environ.get("PICK") == "best":
            row.update(good[-1])
        else:
            row.update(good[(len(good) - 1) // 2])
        row["rounds"] = runs
        row["rps_all"] = [r["rps"] for r in good]
        rows.append(row)

    # The reference of the ratio column: krait, or BENCH_REF (run.sh sets
    # krait-asgi for the ASGI and WebSocket suites).
    ref = os.environ.get("BENCH_REF") or "krait"
    krait = next((r for r in rows if r["server"] == ref and "rps" in r), None)
    header = ["server", "requests/s", "p50", "p99", "server CPU", "others", "wrk core", "errors", "krait / this"]
    table = []
    notes = []
    noisy = []
    saturated = []
    for r in rows:
        if "rps" not in r:
            table.append([r["label"], "failed", "-", "-", "-", "-", "-", "-", "-"])
            notes.append("%s failed: %s" % (r["label"], r["error"]))
            continue
        cpu = r.get("cpu") or {}
        busy = cpu.get("busy")
        others = cpu.get("others")
        wcore = cpu.get("wrk_core_busy")
        if wcore is not None and wcore > 0.97:
            saturated.append(r["label"])
        if others is not None and others > 0.05:
            noisy.append(r["label"])
        errs = r["non_2xx"] + sum(
            v for k, v in r["socket_errors"].items() if k != "read"
        )
        spread = ""
        if len(r["rps_all"]) > 1:
            spread = " (%.0f-%.0f)" % (min(r["rps_all"]), max(r["rps_all"]))
        ratio = "-"
        if krait is not None and r is not krait:
            ratio = "%.2fx" % (krait["rps"] / r["rps"])
        table.append(
            [
                r["label"],
                "%.0f%s" % (r["rps"], spread),
                fmt_ms(r["p50_ms"]),
                fmt_ms(r["p99_ms"]),
                "-" if busy is None else "%.0f%%" % (busy * 100),
                "-" if others is None else "%.0f%%" % (others * 100),
                "-" if wcore is None else "%.0f%%" % (wcore * 100),
                str(errs),
                ratio,
            ]
        )
    lines = markdown_table(header, table)
    if noisy:
        notes.append(
            "warning: other processes used more than 5%% of the server core during: %s;"
            " those numbers are low (see 'others'; rerun on a quiet machine or with ROUNDS=3)"
            % ", ".join(noisy)
        )
    if saturated:
        notes.append(
            "warning: wrk's core was saturated during: %s; the client may be the limit there"
            % ", ".join(saturated)
        )
    if notes:
        lines.append("")
        lines.extend(notes)
    per_request = per_request_table(rows)
    if per_request:
        lines.append("")
        lines.extend(per_request)
    # Where each server's core goes, by process name (krait: the Go front
    # vs the Python worker).
    split = []
    for r in rows:
        by = (r.get("cpu") or {}).get("by_comm") or {}
        if len(by) > 1:
            secs = r["cpu"]["seconds"]
            parts = ", ".join(
                "%s %.0f%%" % (k, 100 * v / secs)
                for k, v in sorted(by.items(), key=lambda kv: -kv[1])
            )
            split.append("  %s: %s" % (r["label"], parts))
    if split:
        lines.append("")
        lines.append("CPU by process (share of one core):")
        lines.extend(split)
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(directory, "summary.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(directory, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)


def core_ticks(core):
    """(busy, total) ticks of one core from /proc/stat."""
    with open("/proc/stat") as f:
        for line in f:
            parts = line.split()
            if parts[0] == "cpu%d" % core:
                ticks = [int(x) for x in parts[1:8]]
                idle = ticks[3] + ticks[4]  # idle, iowait
                return sum(ticks) - idle, sum(ticks)
    raise ValueError("no cpu%d in /proc/stat" % core)


def cpu_snapshot(pid, core, wrk_core):
    """CPU and context-switch counters of server pid (its process group's
    leader: run.sh starts each server with setsid) and of both cores."""
    busy, total = core_ticks(core)
    wbusy, wtotal = core_ticks(wrk_core)
    procs = processes()
    return {
        "by_comm": cpu_ticks(pid, procs),
        "tree": tree(pid, procs),
        "core_busy": busy,
        "core_total": total,
        "wrk_core_busy": wbusy,
        "wrk_core_total": wtotal,
    }


def tree_delta(before, after):
    """Per role (front, workers): CPU seconds and context switches between two
    tree snapshots. A process that appears in after only (a worker started
    during the run) counts from zero; one that is gone in after (a worker
    that exited) is lost and counted in "exited"."""
    out = {role: {"cpu_s": 0.0, "vcsw": 0, "nvcsw": 0, "procs": 0} for role in ROLES}
    for pid, a in after.items():
        b = before.get(pid)
        if b is not None and b["comm"] != a["comm"]:
            b = None  # pid reused by another program
        d = {k: a[k] - (b[k] if b else 0) for k in COUNTERS}
        r = out[a["role"]]
        r["cpu_s"] += d["ticks"] / CLK_TCK
        r["vcsw"] += d["vcsw"]
        r["nvcsw"] += d["nvcsw"]
        r["procs"] += 1
    for role in ROLES:
        out[role]["cpu_s"] = round(out[role]["cpu_s"], 3)
    out["exited"] = len(set(before) - set(after))
    return out


def cpu_delta(before_path, after_path, seconds):
    """Between two snapshots: the server's share of one core, its CPU seconds
    per command, the share of its core used by anything else (other
    processes on a shared machine make the numbers unreliable), and the CPU
    seconds and context switches of its front process and of its workers."""
    before = json.loads(read(before_path))
    after = json.loads(read(after_path))
    b, a = before["by_comm"], after["by_comm"]
    by = {k: (a.get(k, 0) - b.get(k, 0)) / CLK_TCK for k in a}
    by = {k: round(v, 3) for k, v in by.items() if v > 0}
    busy = sum(by.values()) / seconds
    total = after["core_total"] - before["core_total"]
    core = (after["core_busy"] - before["core_busy"]) / total if total else 0.0
    wtotal = after["wrk_core_total"] - before["wrk_core_total"]
    wcore = (after["wrk_core_busy"] - before["wrk_core_busy"]) / wtotal if wtotal else 0.0
    return {
        "wrk_core_busy": wcore,
        "seconds": seconds,
        "busy": busy,
        "by_comm": by,
        "tree": tree_delta(before.get("tree") or {}, after.get("tree") or {}),
        "core_busy": core,
        "others": max(0.0, core - busy),
    }


_WRK_SAMPLE = """Running 3s test @ http://127.0.0.1:1/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.28ms    1.21ms  20.00ms   90.00%
  Latency Distribution
     50%    2.28ms
     75%    2.90ms
     90%    3.50ms
     99%    7.76ms
  40000 requests in 3.00s, 3.00MB read
  Socket errors: connect 0, read 5, write 0, timeout 0
Requests/sec:  13333.33
Transfer/sec:      1.00MB
"""

# A worker for selftest: burns 0.3 s of CPU, then waits for stdin to close.
_SELFTEST_CHILD = r"""
import sys, time
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("done", flush=True)
sys.stdin.read()
"""

# Another: 4 threads each block in 50 sleeps (voluntary context switches
# that only a sum over all threads sees), then stay alive until stdin closes.
_SELFTEST_THREADS = r"""
import sys, threading, time
ev = threading.Event()
slept = threading.Barrier(5)
def nap():
    for _ in range(50):
        time.sleep(0.001)
    slept.wait()
    ev.wait()
ts = [threading.Thread(target=nap) for _ in range(4)]
for t in ts:
    t.start()
slept.wait()
print("done", flush=True)
sys.stdin.read()
ev.set()
"""


def selftest():
    """Check the harness's own accounting on a known process tree and on
    canned wrk output (python3 bench/benchlib.py selftest). Not a test of
    any server: bench/ holds benchmarks, not tests."""
    import subprocess
    import tempfile
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    errors = []

    def check(cond, what):
        if not cond:
            errors.append(what)

    # wrk parsing and the per-request arithmetic.
    run = parse_wrk(_WRK_SAMPLE)
    check(run["requests"] == 40000 and run["rps"] == 13333.33, "parse_wrk: %r" % run)
    check(run["p50_ms"] == 2.28 and run["p99_ms"] == 7.76, "parse_wrk latency: %r" % run)
    row = dict(run)
    row["cpu"] = {
        "tree": {
            "front": {"cpu_s": 0.4, "vcsw": 20000, "nvcsw": 4000, "procs": 1},
            "workers": {"cpu_s": 1.2, "vcsw": 8000, "nvcsw": 100000, "procs": 1},
            "exited": 0,
        }
    }
    pr = per_request(row)
    check(abs(pr["front"]["cpu_us"] - 10.0) < 1e-9, "per_request front cpu: %r" % pr)
    check(abs(pr["workers"]["cpu_us"] - 30.0) < 1e-9, "per_request workers cpu: %r" % pr)
    check(abs(pr["total_cpu_us"] - 40.0) < 1e-9, "per_request total cpu: %r" % pr)
    check(abs(pr["workers"]["nvcsw"] - 2.5) < 1e-9, "per_request workers nvcsw: %r" % pr)
    check(abs(pr["front"]["vcsw"] - 0.5) < 1e-9, "per_request front vcsw: %r" % pr)

    # The process tree: this process is the front, a child is the worker.
    # Its CPU (0.3 s) goes to workers.
    child = subprocess.Popen(
        [sys.executable, "-c", _SELFTEST_CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        before = tree(os.getpid(), processes())
        line = child.stdout.readline()
        after = tree(os.getpid(), processes())
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    check(line == b"done\n", "selftest child: %r" % line)
    d = tree_delta(before, after)
    check(before[str(os.getpid())]["role"] == "front", "tree: self is not the front")
    check(before.get(str(child.pid), {}).get("role") == "workers", "tree: child is not a worker")
    check(d["workers"]["procs"] == 1, "tree_delta workers procs: %r" % d)
    check(d["workers"]["cpu_s"] >= 0.25, "tree_delta: worker CPU %.3f s < 0.25 s" % d["workers"]["cpu_s"])
    check(d["front"]["cpu_s"] < 0.25, "tree_delta: front CPU %.3f s >= 0.25 s" % d["front"]["cpu_s"])
    # Context switches are summed over all live threads, not the main one.
    child = subprocess.Popen(
        [sys.executable, "-c", _SELFTEST_THREADS],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        child.stdout.readline()
        vol, _ = ctxt_switches(child.pid)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
    check(vol >= 200, "ctxt_switches: %d voluntary switches over all threads, want >= 200" % vol)

    # The ready probe: the exact body, and nothing else, is ready.
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"page for " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/items?n=10" % srv.server_address[1]
        check(probe(url, b"page for /items?n=10"), "probe: the right body is not ready")
        with open(os.devnull, "w") as quiet:
            saved, sys.stderr = sys.stderr, quiet
            try:
                wrong = probe(url, b"page for /items")
            finally:
                sys.stderr = saved
        check(not wrong, "probe: a different body counts as ready")
    finally:
        srv.shutdown()
        srv.server_close()

    # expected_body: the app called in-process.
    here = os.path.dirname(os.path.abspath(__file__))
    body = expected_body(os.path.join(here, "apps"), "hello_wsgi:app", "/")
    check(body == b"Hello, World!", "expected_body: %r" % body)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "echo_app.py"), "w") as f:
            f.write(
                "def app(environ, start_response):\n"
                "    start_response('200 OK', [])\n"
                "    return [environ['PATH_INFO'].encode(), b'?', environ['QUERY_STRING'].encode()]\n"
            )
        body = expected_body(d, "echo_app:app", "/items?n=10")
        check(body == b"/items?n=10", "expected_body path and query: %r" % body)

    if errors:
        print("benchlib selftest: %d failed:\n  %s" % (len(errors), "\n  ".join(errors)))
        return False
    print("benchlib selftest: ok")
    return True


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "port":
        print(free_port())
    elif cmd == "expect":
        sys.stdout.buffer.write(expected_body(argv[2], argv[3], argv[4]))
    elif cmd == "probe":
        with open(argv[3], "rb") as f:
            body = f.read()
        sys.exit(0 if probe(argv[2], body) else 1)
    elif cmd == "cpu":
        print(json.dumps(cpu_snapshot(int(argv[2]), int(argv[3]), int(argv[4]))))
    elif cmd == "cpudelta":
        print(json.dumps(cpu_delta(argv[2], argv[3], float(argv[4]))))
    elif cmd == "report":
        report(argv[2], argv[3:])
    elif cmd == "selftest":
        sys.exit(0 if selftest() else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
