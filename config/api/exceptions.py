"""One exception handler for the whole API: every error is a 4xx/5xx JSON body in the
view's envelope, naming the field and the reason, with an ``error_code`` for programs (the
service's :class:`~config.errors.DomainError` code, DRF's code of its exception, or the
status's word in :data:`STATUS_CODES`). Database errors caused by input (a
number out of range, a NUL byte) are the client's fault and answer 400 with a generic
reason (never the database's text); a database or a cache (Redis) that is down answers 503
with ``Retry-After`` so clients and load balancers retry (:func:`outage`, shared with the
plain views' middleware and Django's handler, ``config.api.unavailable``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from config.api.envelopes import DEFAULT_ENVELOPE
from config.errors import CacheUnavailable, DomainError

logger = logging.getLogger(__name__)

DATA_ERROR = "a value in the request is out of range or cannot be stored"

#: The ``error_code`` of an error that names no sharper one, by HTTP status; the words are
#: DRF's default codes of the same errors, so a plain view (the device's inbox and report)
#: and a DRF view say the same.
STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "throttled",
    500: "server_error",
    503: "unavailable",
}


#: What a 503 tells clients to wait before retrying (an outage's first seconds).
RETRY_AFTER_SECONDS = 5


def outage(error: BaseException | None) -> tuple[str, str] | None:
    """The message and ``error_code`` of a 503 when ``error`` says a service the request needs
    is down (PostgreSQL, or the cache: ``config.errors.CacheUnavailable``), else None. The one
    table of what an outage answers, for the API's handler and for the plain views, middleware
    and the console (``config.api.unavailable``)."""
    if isinstance(error, (OperationalError, InterfaceError)):
        return "The database is unavailable; retry shortly.", STATUS_CODES[503]
    if isinstance(error, CacheUnavailable):
        return "The cache is unavailable; retry shortly.", CacheUnavailable.code
    return None


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is larger than this server accepts (API_MAX_BODY_MB)."
    default_code = "payload_too_large"


def first_message(errors: Any, path: str = "") -> str:
    """The first leaf error as ``field: reason``, for the envelope's one-line message."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            field = f"{path}.{key}" if path and key != "non_field_errors" else (path or str(key))
            if key == "non_field_errors" and not path:
                return first_message(value, "")
            return first_message(value, field)
    if isinstance(errors, list) and errors:
        return first_message(errors[0], path)
    text = str(errors)
    return f"{path}: {text}" if path else text


def error_code_of(exc: exceptions.APIException) -> str:
    """The ``error_code`` of a DRF exception: the code it was raised with when its detail is
    one message (``NotFound(..., code="not_found_job")``), else its class's default code."""
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else str(exc.default_code)


def _as_dict(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return detail
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"detail": [str(detail)]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    view = context.get("view")
    envelope = getattr(view, "envelope", DEFAULT_ENVELOPE)
    headers: dict[str, str] = {}
    error_code: str | None = None

    if isinstance(exc, DomainError):  # a service refused: the one place the API translates it
        error_code = exc.code
        refused = exceptions.ValidationError(exc.errors)
        refused.status_code = exc.status
        exc = refused
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, Http404):
        # Never Django's text: "No CommandStatus matches the given query." names a model.
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    elif isinstance(exc, DataError):
        # The validators should have named the field; this is the net under them. The
        # database's words (the statement, "DETAIL: ...") are for the log, not the client.
        logger.warning("input refused by the database: %s", exc)
        exc = exceptions.ValidationError({"detail": [DATA_ERROR]})
    elif (down := outage(exc)) is not None:
        logger.warning("unavailable (%s): %s", down[1], exc)
        set_rollback()
        body = envelope.error(503, down[0], {}, down[1])
        return Response(body, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    if isinstance(exc, exceptions.APIException):
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        set_rollback()
        if isinstance(exc, exceptions.ValidationError) or isinstance(exc.detail, (dict, list)):
            errors = _as_dict(exc.detail)
            message = first_message(errors)
        elif isinstance(exc, exceptions.ParseError):
            # Malformed JSON: the field at fault is the body itself.
            errors = {"body": [str(exc.detail)]}
            message = first_message(errors)
        else:
            errors = {}
            message = str(exc.detail)
        body = envelope.error(exc.status_code, message, errors, error_code or error_code_of(exc))
        return Response(body, status=exc.status_code, headers=headers)

    if settings.DEBUG:
        return None
    logger.exception("unhandled error in %s", view.__class__.__name__ if view else "API")
    set_rollback()
    return Response(
        envelope.error(500, "Internal server error.", {}, STATUS_CODES[500]),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: a path no view matches (``/commands/v0/status/abc/``) answers the API's
    JSON 404, like any 404 of a view; the console keeps Django's page."""
    if request.path.startswith("/admin/"):
        return page_not_found(request, exception or Http404())
    return JsonResponse(DEFAULT_ENVELOPE.error(404, "Not found.", {}, STATUS_CODES[404]), status=404)


class UnmatchedPathMiddleware:
    """A path no URL pattern matches answers the API's JSON 404 also with ``DEBUG=1``, where
    Django ignores ``handler404`` and answers its HTML debug page.

    It must sit below ``CommonMiddleware`` in ``MIDDLEWARE``, so that ``APPEND_SLASH`` still
    turns the JSON 404 of ``/v0/devices`` into a redirect to ``/v0/devices/``. The console
    has a catch-all pattern of its own (``resolver_match`` is set): its 404s stay HTML.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code == 404 and request.resolver_match is None:
            return not_found(request)
        return response
