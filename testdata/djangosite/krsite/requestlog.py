"""Logs every request that reaches Django, one line each, to stderr (which
krait puts in its log as "[worker N] djangosite request METHOD PATH")."""

import logging

logger = logging.getLogger("djangosite")


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        logger.info("request %s %s", request.method, request.path)
        return self.get_response(request)
