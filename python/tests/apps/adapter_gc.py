"""Counts the garbage the adapter leaves (test_adapter_fast): the cyclic
collector is off, so a reference cycle per request piles up until /collect
reports it."""

import gc

gc.disable()


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/collect":
        body = str(gc.collect()).encode()
    elif path == "/read":
        body = environ["wsgi.input"].read()
    elif path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written ")
        return iter([b"and yielded"])
    else:
        body = b"Hello world!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
