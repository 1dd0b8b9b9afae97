"""``PUT /commands/v0/status/{id}/`` from a device: its report, on the device views' path.

Every command a device runs is reported two or three times (Acknowledged, In Progress, its
outcome), so this is the server's most frequent write. A device's PUT is served here as a
plain view (``device_requests``); everything else at this URL — a GET, an API key's PUT
(audited, role-checked), a PUT with an ``Idempotency-Key``, a body whose content type is not
JSON, an ``Accept`` other than JSON — goes to the DRF view
(``commands.api.views.CommandStatusViewSet``), which also documents the endpoint. Both validate
with the same serializer and answer in the same bytes and headers (``tests/test_device_report.py``
compares them); only DRF's per-request machinery is skipped (docs/performance.md, "Hot paths").
The DRF view reports through ``services.report``; this view settles the report with the other
reports and hand-outs its process has in flight, in one transaction (``commands.coalesce``,
``batches.settle``: ``tests/test_batch_reports.py`` holds a batch to the one-report statement's
answers), and answers once that has committed. A device's PUT usually reaches it on the lean
device path (``config.lean``), before the console's middleware. The DRF views' response
observers (``config.api.views.response_observers``: the audit of API writes) do not run here:
a device's writes are not audited.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import ParseError
from rest_framework.renderers import JSONRenderer

from commands import batches, coalesce, device_requests
from commands.api.serializers import CommandStatusUpdateSerializer
from config.api import idempotency
from config.api.envelopes import DEFAULT_ENVELOPE
from config.api.exceptions import PayloadTooLarge
from config.api.parsers import JSONRefused, loads

#: What the DRF view says of the methods of this URL, on every answer.
ALLOW = "GET, PUT, HEAD, OPTIONS"
#: ``Accept`` values a JSON answer satisfies; anything else is negotiated (406) by the DRF view.
_JSON_ACCEPTED = ("", "*/*", "application/*", "application/json")
#: DRF's renderer, so that the bytes are the DRF view's (compact, UTF-8).
_RENDERER = JSONRenderer()


def _is_json(meta: Mapping[str, Any]) -> bool:
    media_type = meta.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
    return bool(media_type == "application/json")


def _accepts_json(meta: Mapping[str, Any]) -> bool:
    query = meta.get("QUERY_STRING", "")
    if "format" in query and any(name == "format" for name, _ in parse_qsl(query, keep_blank_values=True)):
        return False  # DRF's format override (``?format=api``): negotiated by the DRF view
    accepted = meta.get("HTTP_ACCEPT", "")
    return all(part.split(";", 1)[0].strip().lower() in _JSON_ACCEPTED for part in accepted.split(","))


def served_here(meta: Mapping[str, Any]) -> bool:
    """Whether this view answers a request of ``meta`` (``request.META``, or the WSGI environ:
    the lean device path's router asks before there is a request, ``commands.api.device_urls``):
    a device's JSON PUT without an idempotency key, answered in JSON. The DRF view answers all
    the others (and negotiates, or refuses, them)."""
    return (
        str(meta.get("REQUEST_METHOD", "")).upper() == "PUT"
        and _is_json(meta)
        and idempotency.META_KEY not in meta
        and _accepts_json(meta)
        and device_requests.is_device_token(meta)
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
    assert principal.device_pk is not None  # a device token (``served_here``) names its device
    data = _body(request)
    if isinstance(data, HttpResponse):
        return data
    update = CommandStatusUpdateSerializer(data=data)
    if not update.is_valid():
        return device_requests.errors(400, dict(update.errors))
    # Settled with the other reports and hand-outs this process has in flight, in one
    # transaction (``commands.coalesce``); answered once that has committed. The outcome carries
    # the command as ``CommandStatusSerializer`` shows it (its ``to_representation`` is the
    # same ``payload_of``), and a refusal as ``batches.settle`` words it.
    arguments = update.report_arguments()
    outcome = coalesce.settle(
        batches.ReportRequest(
            command_id=pk,
            target=arguments["target"],
            tenant_id=principal.tenant_id,
            device_pk=principal.device_pk,
            actor=principal.label,
            reason=arguments["reason"],
            details=arguments["details"],
            expected_version=arguments["expected_version"],
            attempt=arguments["attempt"],
        )
    )
    if outcome.refused:
        return device_requests.refusal(outcome.status, outcome.code, outcome.errors)
    rendered = _RENDERER.render(DEFAULT_ENVELOPE.success(outcome.command, 200))
    return HttpResponse(rendered, content_type="application/json")


def detail_view(drf_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view of ``/commands/v0/status/{id}/``: a device's PUT here, the rest by ``drf_view``."""

    @csrf_exempt
    def command_status_detail(request: HttpRequest, pk: int) -> HttpResponse:
        if served_here(request.META):
            response = report(request, pk)
            response["Allow"] = ALLOW
            return response
        return drf_view(request, pk=str(pk))

    return command_status_detail
