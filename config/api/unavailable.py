"""A database or a cache that is down answers 503 everywhere, not only in DRF views.

DRF views turn ``OperationalError``/``InterfaceError`` and ``config.errors.CacheUnavailable``
into a 503 in the exception handler (``config.api.exceptions``). Plain Django views (the
device inbox and report, the health check), the console's pages and anything before or after
a view (middleware, authentication outside DRF) would otherwise give Django's HTML 500.
:class:`ServiceUnavailableMiddleware` catches them for views, and :func:`server_error`
(``handler500``) for everything else Django catches, in the same JSON envelope with
``Retry-After``, so clients and load balancers retry; what each outage says is
``config.api.exceptions.outage``, one table for all. Nothing else is needed to recover:
Django closes a connection that raised such an error when the request ends (and
``CONN_HEALTH_CHECKS`` checks a persistent one before reuse), so the first request after
the database is back opens a fresh one; the cache tries Redis again a second after a failure
(``config.cache``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from config.api.envelopes import DEFAULT_ENVELOPE
from config.api.exceptions import RETRY_AFTER_SECONDS, STATUS_CODES, outage

logger = logging.getLogger(__name__)


def unavailable_response(error: BaseException | None = None) -> JsonResponse:
    """The 503 of an outage: what ``error`` (the database's by default) says, with ``Retry-After``."""
    message, code = outage(error) or ("The database is unavailable; retry shortly.", STATUS_CODES[503])
    response = JsonResponse(DEFAULT_ENVELOPE.error(503, message, {}, code), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class ServiceUnavailableMiddleware:
    """Turns a database or cache outage raised by a view into the API's 503 envelope."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if outage(exception) is None:
            return None
        logger.warning("unavailable (%s %s): %s", request.method, request.path, exception)
        return unavailable_response(exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: a JSON body instead of HTML, and 503 when the database or the cache is
    the cause (an error raised in middleware, which ``process_exception`` never sees)."""
    error = sys.exc_info()[1]
    if outage(error) is not None:
        return unavailable_response(error)
    return JsonResponse(
        DEFAULT_ENVELOPE.error(500, "Internal server error.", {}, STATUS_CODES[500]), status=500
    )
