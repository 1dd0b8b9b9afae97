"""Logs: one line per request, a request id on every line, JSON lines or readable text.

``LOG_FORMAT=json`` writes each record as one JSON object (python-json-logger): ``timestamp``,
``level``, ``logger``, ``message`` and the record's fields; the default, ``text``, is a
readable line. :class:`RequestLogMiddleware` gives each request an id (the caller's
``X-Request-ID`` if it is a sane one, else a new one), returns it in the ``X-Request-ID``
header, puts it on every record logged while the request runs (:class:`RequestIdFilter`),
and logs one line when the answer is made (logger ``dos.requests``): method, path, route,
status, duration in milliseconds, tenant (the id of the caller's tenant, for API keys and
device tokens). ``LOG_REQUESTS=errors`` logs only the answers of status 400 and above,
``off`` none (a large fleet's inbox polls are most lines).
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from config.api.principal import Principal
from config.metrics import route_label

#: The request id of the request this thread (or task) is serving, for every log record.
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

#: A caller's id is taken as is if it looks like one (a UUID, a trace id, ...): no spaces, no
#: quotes, nothing that could break a log line or a header; else a new one is made.
_SANE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

requests_log = logging.getLogger("dos.requests")


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every record (``-`` outside a request). On the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or "-"
        return True


def tenant_of(request: HttpRequest) -> int | None:
    """The caller's tenant id if a token was resolved: DRF sets ``request.auth`` on the
    Django request it wraps, and the inbox sets it itself. Never evaluates the console's lazy
    ``request.user`` (a session lookup)."""
    auth = request.__dict__.get("auth")
    return auth.tenant_id if isinstance(auth, Principal) else None


class RequestLogMiddleware:
    """First in ``MIDDLEWARE``: the request id is known to everything after it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.level = str(getattr(settings, "LOG_REQUESTS", "all"))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        rid = incoming if _SANE_ID.fullmatch(incoming) else uuid.uuid4().hex
        token = request_id.set(rid)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            status = response.status_code
            if self.level == "all" or (self.level == "errors" and status >= 400):
                self.log(request, status, time.perf_counter() - started)
                # Django would log a 4xx/5xx again ("Not Found: /x") once this middleware has
                # returned, without the request id: this line says it already, with it. (An
                # exception's traceback is logged inside, with the id, before we get here.)
                response._has_been_logged = True  # type: ignore[attr-defined]
            return response
        finally:
            request_id.reset(token)

    def log(self, request: HttpRequest, status: int, elapsed: float) -> None:
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        if not requests_log.isEnabledFor(level):
            return
        match = request.resolver_match
        fields: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "route": route_label(match.route) if match is not None else "unmatched",
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
            "tenant": tenant_of(request),
        }
        requests_log.log(
            level,
            "%s %s %s %.1fms tenant=%s",
            fields["method"],
            fields["path"],
            status,
            fields["duration_ms"],
            fields["tenant"] if fields["tenant"] is not None else "-",
            extra=fields,
        )
