"""The one path of the device's plain views (the inbox poll and the status report): who is
calling, and the API's error envelope, without DRF.

Devices send most of the server's requests, and each is small: DRF's request wrapping,
negotiation, permission classes and rendering cost more than the work itself
(docs/performance.md, "Hot paths"). These views reuse what DRF views use underneath — the
bearer token resolution with its rate limits (``inventory.authentication``), the JSON
parser (``config.api.parsers``), the envelope and the error handler's wording
(``config.api.exceptions``) — so a device sees the same answers either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.http import HttpRequest, JsonResponse

from config.api.envelopes import DEFAULT_ENVELOPE
from config.api.exceptions import STATUS_CODES, first_message
from config.api.principal import Principal
from config.client import client_address
from inventory import tokens
from inventory.authentication import resolve_token_reading
from inventory.ratelimit import RateLimited


def error(status: int, message: str, field: str | None = None, error_code: str | None = None) -> JsonResponse:
    """An error answer naming ``field`` (if any) and the reason, as the API's handler words it."""
    if field is None:
        return errors(status, {}, message, error_code)
    return errors(status, {field: [message]}, error_code=error_code)


def errors(
    status: int, found: dict[str, Any], message: str | None = None, error_code: str | None = None
) -> JsonResponse:
    """An error answer with each field at fault; the one-line message names the first.
    ``error_code``: the status's word (``config.api.exceptions.STATUS_CODES``) unless given,
    as the DRF views' handler gives it."""
    body = DEFAULT_ENVELOPE.error(
        status, message or first_message(found), found, error_code or STATUS_CODES[status]
    )
    response = JsonResponse(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


#: The message of a refusal whose reason names no field (a settled request's, ``refusal``).
_MESSAGES = {404: "Not found.", 500: "Internal server error."}


def refusal(status: int, code: str, found: dict[str, Any]) -> JsonResponse:
    """The answer to a request that ``commands.batches`` settled and refused (an ``Outcome``'s
    ``status``, ``code`` and ``errors``), worded as the views (and Django's ``handler500``,
    ``config.api.unavailable.server_error``) word it when they meet the same refusal."""
    return errors(status, found, None if found else _MESSAGES.get(status, STATUS_CODES[status]), code)


def bearer_token(meta: Mapping[str, Any]) -> str | None:
    """The token of ``Authorization: Bearer <token>`` in ``meta`` (``request.META``, or the
    WSGI environ before there is a request), or None without a usable one."""
    header = meta.get("HTTP_AUTHORIZATION", "").split()
    if len(header) != 2 or header[0].lower() != "bearer" or not header[1].isascii():
        return None
    return str(header[1])


def is_device_token(meta: Mapping[str, Any]) -> bool:
    """Whether ``meta`` (``request.META`` or a WSGI environ) carries a device token (by its
    shape: nothing is looked up)."""
    token = bearer_token(meta)
    parsed = tokens.split(token) if token else None
    return parsed is not None and parsed[0] == tokens.DEVICE_TOKEN_KIND


def authenticate(
    request: HttpRequest, per_caller: Sequence[str] = ()
) -> tuple[Principal, list[Any] | None] | JsonResponse:
    """The caller and the values of the cache keys ``per_caller`` names after it (templates
    with ``{tenant}`` and ``{device}``; None when they could not be read with the token's
    lookup), in one round trip for a valid token; or the answer that refuses it: 401 without
    a valid token, 429 past the token's requests per minute or past its address's failed
    token checks."""
    token = bearer_token(request.META)
    seen: list[Any] | None = None
    try:
        if token is None:
            principal = None
        else:
            principal, seen = resolve_token_reading(token, per_caller, client_address(request))
    except RateLimited as limited:
        throttled = error(429, str(limited))
        throttled["Retry-After"] = str(limited.retry_after)
        return throttled
    if principal is None:
        has_header = bool(request.META.get("HTTP_AUTHORIZATION"))
        # DRF's codes for the same two cases: AuthenticationFailed, NotAuthenticated.
        if has_header:
            return error(401, "Invalid, revoked or expired token.", error_code="authentication_failed")
        return error(401, "Authentication credentials were not provided.")
    request.auth = principal  # type: ignore[attr-defined]  # as DRF does: the request log's tenant
    return principal, seen
