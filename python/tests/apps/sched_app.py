"""Answers with the worker's scheduling policy (os.sched_getscheduler)."""

import os


def application(environ, start_response):
    body = str(os.sched_getscheduler(0)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
