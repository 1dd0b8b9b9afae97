"""A database that is down answers 503 everywhere, not only in DRF views.

DRF views turn ``OperationalError``/``InterfaceError`` into a 503 in the exception handler
(``config.api.exceptions``). Plain Django views (the device inbox, the health check) and
anything before or after a view (middleware, authentication outside DRF) would otherwise
give Django's HTML 500. :class:`DatabaseUnavailableMiddleware` catches it for views, and
:func:`server_error` (``handler500``) for everything else Django catches, in the same JSON
envelope with ``Retry-After``, so clients and load balancers retry. Nothing else is needed
to recover: Django closes a connection that raised such an error when the request ends
(and ``CONN_HEALTH_CHECKS`` checks a persistent one before reuse), so the first request
after the database is back opens a fresh one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.api.envelopes import DEFAULT_ENVELOPE
from config.api.exceptions import STATUS_CODES

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
UNAVAILABLE = (OperationalError, InterfaceError)


def unavailable_response() -> JsonResponse:
    body = DEFAULT_ENVELOPE.error(503, "The database is unavailable; retry shortly.", {}, STATUS_CODES[503])
    response = JsonResponse(body, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """Turns a database error raised by a view into the API's 503 envelope."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, UNAVAILABLE):
            return None
        logger.warning("database unavailable (%s %s): %s", request.method, request.path, exception)
        return unavailable_response()


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a JSON body instead of HTML, and 503 when the database is the cause
    (an error raised in middleware, which ``process_exception`` never sees)."""
    error = sys.exc_info()[1]
    if isinstance(error, UNAVAILABLE):
        return unavailable_response()
    return JsonResponse(
        DEFAULT_ENVELOPE.error(500, "Internal server error.", {}, STATUS_CODES[500]), status=500
    )
