"""``PUT /commands/v0/status/{id}/`` from a device: its report, on the device views' path.

Every command a device runs is reported two or three times (Acknowledged, In Progress, its
outcome), so this is the server's most frequent write. A device's PUT is served here as a
plain view (``device_requests``); everything else at this URL — a GET, an API key's PUT
(audited, role-checked), a PUT with an ``Idempotency-Key``, a body whose content type is not
JSON, an ``Accept`` other than JSON — goes to the DRF view
(``commands.api.views.CommandStatusViewSet``), which also documents the endpoint. Both validate
with the same serializer, report through the same service (``services.report``) and answer in
the same bytes and headers (``tests/test_device_report.py`` compares them); only DRF's
per-request machinery is skipped (docs/performance.md, "Hot paths"). The DRF views' response
observers (``config.api.views.response_observers``: the audit of API writes) do not run here:
a device's writes are not audited.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DataError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer

from commands import device_requests, services
from commands.api.serializers import CommandStatusSerializer, CommandStatusUpdateSerializer
from commands.models import CommandStatus
from config.api import idempotency
from config.api.envelopes import DEFAULT_ENVELOPE
from config.api.exceptions import DATA_ERROR, PayloadTooLarge
from config.api.parsers import JSONRefused, loads
from config.errors import DomainError

logger = logging.getLogger(__name__)


#: What the DRF view says of the methods of this URL, on every answer.
ALLOW = "GET, PUT, HEAD, OPTIONS"
#: ``Accept`` values a JSON answer satisfies; anything else is negotiated (406) by the DRF view.
_JSON_ACCEPTED = ("", "*/*", "application/*", "application/json")
#: DRF's renderer, so that the bytes are the DRF view's (compact, UTF-8).
_RENDERER = JSONRenderer()


def _is_json(request: HttpRequest) -> bool:
    media_type = request.META.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def _accepts_json(request: HttpRequest) -> bool:
    accepted = request.META.get("HTTP_ACCEPT", "")
    return "format" not in request.GET and all(
        part.split(";", 1)[0].strip().lower() in _JSON_ACCEPTED for part in accepted.split(",")
    )


def served_here(request: HttpRequest) -> bool:
    """Whether this view answers ``request``: a device's JSON PUT without an idempotency key,
    answered in JSON. The DRF view answers all the others (and negotiates, or refuses, them)."""
    return (
        request.method == "PUT"
        and _is_json(request)
        and idempotency.META_KEY not in request.META
        and _accepts_json(request)
        and device_requests.is_device_token(request)
    )


def _body(request: HttpRequest) -> Any:
    """The parsed body, or the answer refusing it, as DRF's parser and handler word it."""
    try:
        raw = request.body
    except RequestDataTooBig:
        return device_requests.error(413, str(PayloadTooLarge.default_detail))
    if not raw:
        return {}
    try:
        return loads(raw)
    except JSONRefused as refused:
        if refused.where is None:
            return device_requests.error(
                400, f"JSON parse error - {refused.reason}", "body", error_code=ParseError.default_code
            )
        return device_requests.errors(
            400,
            {refused.field("body", fields_at_top=True): [refused.reason]},
            error_code=ParseError.default_code,
        )


def report(request: HttpRequest, pk: int) -> HttpResponse:
    """The device's report of command ``pk``: every refusal worded as the DRF view words it
    (the exception handler's mapping of the service's errors), the command as it shows it."""
    caller = device_requests.authenticate(request)
    if isinstance(caller, HttpResponse):
        return caller
    principal, _ = caller
    data = _body(request)
    if isinstance(data, HttpResponse):
        return data
    update = CommandStatusUpdateSerializer(data=data)
    if not update.is_valid():
        return device_requests.errors(400, dict(update.errors))
    try:
        command, _ = services.report(
            pk,
            **update.report_arguments(),
            actor=principal.label,
            tenant_id=principal.tenant_id,
            device_pk=principal.device_pk,
        )
    except CommandStatus.DoesNotExist:
        return device_requests.error(404, "Not found.")
    except DomainError as refused:
        return device_requests.errors(refused.status, refused.errors, error_code=refused.code)
    except DataError as refused:
        logger.warning("input refused by the database: %s", refused)
        return device_requests.errors(400, {"detail": [DATA_ERROR]})
    body = CommandStatusSerializer(command).data
    rendered = _RENDERER.render(DEFAULT_ENVELOPE.success(body, 200))
    return HttpResponse(rendered, content_type="application/json")


def detail_view(drf_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view of ``/commands/v0/status/{id}/``: a device's PUT here, the rest by ``drf_view``."""

    @csrf_exempt
    def command_status_detail(request: HttpRequest, pk: int) -> HttpResponse:
        if served_here(request):
            response = report(request, pk)
            response["Allow"] = ALLOW
            return response
        return drf_view(request, pk=str(pk))

    return command_status_detail
