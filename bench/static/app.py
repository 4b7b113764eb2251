"""The app krait serves in bench/static/run.sh: it never sees the measured
requests (they go to --static), it only has to exist."""


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
