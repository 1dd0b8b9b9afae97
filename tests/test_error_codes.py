"""Every error body carries an ``error_code`` next to the seeds' ``code``, ``message`` and
``errors`` (docs/errors.md): the service's code for a refusal, DRF's code for its own errors,
the status's word otherwise; the same in every envelope, and the same from the device's plain
views as from the DRF views. ``tests.helpers.error`` checks that every error body of the
suite has one; the tests here check where each comes from."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import OperationalError
from django.http import HttpResponse
from django.test import RequestFactory

from config.api.exceptions import exception_handler, not_found
from config.api.unavailable import ServiceUnavailableMiddleware, server_error, unavailable_response
from config.errors import CacheUnavailable, Conflict, DomainError
from tests.conftest import Api, DeviceActor, Org
from tests.helpers import error, openapi_document

INBOX = "/v2/command-inbox/"


def test_a_refusal_carries_its_code_or_its_class_default() -> None:
    assert DomainError({"state": ["no"]}).code == "invalid"
    assert Conflict({"id": ["taken"]}).code == "conflict"
    assert DomainError("no", code="invalid_transition").code == "invalid_transition"
    assert Conflict("stale", code="stale_version").code == "stale_version"
    # an instance's code stays its own
    assert DomainError.code == "invalid" and Conflict.code == "conflict"


def test_a_refused_operation_move_is_invalid_transition(org: Org) -> None:
    made = org.admin.post(
        "/v0/operations/", {"operation_type": "REBOOT", "operation_device_query": {"all": True}}
    )
    operation_id = made.json()["content"]["id"]
    org.admin.put(f"/v0/operations/{operation_id}/", {"state": "CANCELLED"})

    refused = error(org.admin.put(f"/v0/operations/{operation_id}/", {"state": "PAUSED"}), 400)

    assert refused["error_code"] == "invalid_transition"
    assert "state" in refused["errors"]


def test_an_unknown_device_in_a_query_is_not_found_device(org: Org) -> None:
    body = {"operation_type": "REBOOT", "operation_device_query": {"devices": ["ghost"]}}
    error(org.admin.post("/v0/operations/", body), 400, "not_found_device")


def test_devices_name_unknown_groups_and_taken_ids(org: Org, device: DeviceActor) -> None:
    error(org.admin.post("/v0/devices/", {"id": "dev-2", "groups": ["ghosts"]}), 400, "not_found_group")
    error(org.admin.post("/v0/devices/bulk/", [{"id": "dev-1"}, {"id": "dev-3"}]), 400, "device_exists")


@pytest.mark.parametrize(
    ("token", "error_code"),
    [(None, "not_authenticated"), ("ddt_nope", "authentication_failed")],
)
def test_the_plain_inbox_and_a_drf_view_give_the_same_401_code(
    device: DeviceActor, token: str | None, error_code: str
) -> None:
    caller = Api(token)
    plain = caller.get(INBOX, {"device_id": "dev-1"})
    drf = caller.get("/commands/v0/status/")

    assert error(plain, 401)["error_code"] == error(drf, 401)["error_code"] == error_code


@pytest.mark.parametrize(
    ("api", "path", "status", "error_code"),
    [
        ("viewer", "/v0/devices/", 403, "permission_denied"),  # a viewer's POST
        ("admin", "/v0/operations/00000000-0000-0000-0000-000000000000/", 404, "not_found"),
        ("admin", "/api/v1/inventory_device_headless_operation/op_nope/", 404, "not_found"),  # bare
        ("admin", "/nowhere/", 404, "not_found"),  # no view matches
    ],
)
def test_drf_and_django_errors_carry_their_code(
    org: Org, api: str, path: str, status: int, error_code: str
) -> None:
    client: Api = getattr(org, api)
    response = client.post(path, {}) if status == 403 else client.get(path)
    error(response, status, error_code)


def test_malformed_json_is_parse_error(org: Org) -> None:
    error(org.admin.post("/v0/devices/", raw='{"id": '), 400, "parse_error")


def test_the_handlers_without_a_view_say_unavailable_and_server_error() -> None:
    request = RequestFactory().get("/v0/devices/")

    handled = exception_handler(OperationalError("down"), {"view": None})
    assert handled is not None and handled.data["error_code"] == "unavailable"
    assert _json(unavailable_response())["error_code"] == "unavailable"
    assert _json(not_found(request))["error_code"] == "not_found"
    try:
        raise RuntimeError("a defect")
    except RuntimeError:
        assert _json(server_error(request))["error_code"] == "server_error"


def test_a_cache_outage_is_503_cache_unavailable_from_every_handler() -> None:
    """Issue 23: the API's handler (DRF views), the middleware (plain views: the inbox, the
    report; the console) and Django's handler500 (an error raised in middleware) say the same."""
    request = RequestFactory().get(INBOX)
    down = CacheUnavailable("the cache is unavailable: ConnectionError")

    handled = exception_handler(down, {"view": None})
    assert handled is not None and handled.status_code == 503
    assert handled.data["error_code"] == "cache_unavailable" and handled["Retry-After"] == "5"
    caught = ServiceUnavailableMiddleware(lambda _: HttpResponse()).process_exception(request, down)
    assert caught is not None
    answers = [caught]
    try:
        raise down
    except CacheUnavailable:
        answers.append(server_error(request))
    for answer in answers:
        assert (answer.status_code, answer["Retry-After"]) == (503, "5")
        body = _json(answer)
        assert body["code"] == 503 and body["errors"] == {} and body["error_code"] == "cache_unavailable"
    assert _json(unavailable_response(OperationalError("down")))["error_code"] == "unavailable"


def _json(response: Any) -> dict[str, Any]:
    return dict(json.loads(response.content))


@pytest.mark.parametrize("component", ["ErrorEnvelope", "MaintenanceErrorEnvelope"])
def test_the_published_error_envelopes_require_error_code(component: str) -> None:
    schema = openapi_document()["components"]["schemas"][component]
    assert "error_code" in schema["required"]
    assert schema["properties"]["error_code"]["type"] == "string"
    # the seeds' fields are all still there
    assert {"errors"} <= set(schema["required"])
