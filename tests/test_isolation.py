"""Object-level authorization (OWASP API1), for every path and method of the URL map.

The cases are generated from the OpenAPI document, and the document is checked against the
URL resolver, so an endpoint cannot escape: a new path with parameters fails in
``tests/world.py`` until it says how to reach its objects, and a new collection POST fails
here until ``COLLECTION_WRITES`` says what a stranger may do with it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from commands.models import CommandStatus
from inventory.models import Device, Group, PendingDelivery, WebhookEndpoint
from maintenance.models import MaintenanceJob
from operations.models import HeadlessOperation, Operation, OperationTemplate
from tests.conftest import Org
from tests.helpers import openapi_document
from tests.world import World, build_world, fill, path_parameters, shape

#: Paths of the URL map that are not API endpoints.
NOT_API = {"", "admin/", "api/schema/", "api/docs/", "healthz", "readyz", "metrics", "favicon.ico"}


def _operations() -> list[tuple[str, str]]:
    return [
        (path, method.upper())
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]


OPERATIONS = _operations()


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    routes = []
    for pattern in patterns:
        text = str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            if prefix + text == "admin/":  # the console, not the API
                continue
            routes.extend(_routes(pattern.url_patterns, prefix + text))
        elif isinstance(pattern, URLPattern):
            routes.append(prefix + text)
    return routes


def _as_shape(route: str) -> str | None:
    """``^v0/devices/(?P<id>[^/.]+)/$`` or ``a/<str:org_id>`` -> ``/v0/devices/{}/``;
    None for DRF's format-suffix twins."""
    if "(?P<format>" in route:
        return None
    route = route.removeprefix("^").removesuffix("$")
    route = re.sub(r"\(\?P<\w+>[^)]*\)", "{}", route)
    route = re.sub(r"<(?:\w+:)?\w+>", "{}", route)
    return "/" + route


def test_every_api_route_is_in_the_schema() -> None:
    routes = {s for r in _routes(get_resolver().url_patterns) if (s := _as_shape(r)) and s[1:] not in NOT_API}
    documented = {shape(path) for path, _ in OPERATIONS}

    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented paths that no route serves"


@pytest.fixture
def world(org: Org, other_org: Org) -> World:
    build_world(other_org, prefix="other")
    return build_world(org)


def _send(client: Any, method: str, path: str, body: Any = None) -> Any:
    if method in {"GET", "DELETE"}:
        return getattr(client, method.lower())(path)
    return getattr(client, method.lower())(path, body if body is not None else {})


def _object_counts() -> tuple[int, ...]:
    return (
        Device.objects.count(),
        Group.objects.count(),
        Operation.objects.count(),
        CommandStatus.objects.count(),
        HeadlessOperation.objects.count(),
        MaintenanceJob.objects.count(),
        WebhookEndpoint.objects.count(),
        PendingDelivery.objects.count(),
        OperationTemplate.objects.count(),
    )


def _ids_in(body: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(body, dict):
        for key, value in body.items():
            if key in {"id", "job_id", "device_id", "device", "request"} and isinstance(value, (str, int)):
                found.add(str(value))
            found |= _ids_in(value)
    elif isinstance(body, list):
        for item in body:
            found |= _ids_in(item)
    return found


def _missing(params: dict[str, str]) -> dict[str, str]:
    """Ids of the same form that no object has."""
    missing = {}
    for name, value in params.items():
        if value.isdigit():
            missing[name] = "999999999"
        elif re.fullmatch(r"[0-9a-f-]{36}", value):
            missing[name] = str(uuid.uuid4())
        else:
            missing[name] = f"no-such-{name}"
    return missing


#: What a stranger's admin key may send to a collection (no path parameter) with a body, as
#: (body naming the first tenant's objects, expected status).
COLLECTION_WRITES: dict[tuple[str, str], Any] = {
    ("/v0/devices/", "POST"): lambda w: ({"id": w.device.device.device_id, "groups": [str(w.group.pk)]}, 400),
    ("/v0/devices/bulk/", "POST"): lambda w: ([{"id": "x-1", "groups": [w.group.name]}], 400),
    ("/v0/groups/", "POST"): None,  # makes a group in the caller's own tenant: nothing to reach
    ("/v0/webhooks/", "POST"): None,  # an endpoint of the caller's own tenant: it gets only its events
    ("/v0/approval-policy/", "PUT"): None,  # the caller's own tenant's policy: it holds only its operations
    ("/v0/operations/", "POST"): lambda w: (
        {"operation_type": "REBOOT", "operation_device_query": {"devices": [w.device.device.device_id]}},
        400,
    ),
    # A template naming the first tenant's device, or an operation from the first tenant's template.
    ("/v0/operation-templates/", "POST"): lambda w: (
        {
            "name": "stranger",
            "operation_type": "REBOOT",
            "operation_device_query": {"devices": [w.device.device.device_id]},
        },
        400,
    ),
    ("/v0/operations/preview/", "POST"): lambda w: (
        {"operation_device_query": {"groups": [str(w.group.pk)]}},
        400,
    ),
    ("/api/v1/inventory_device_headless_operation/", "POST"): lambda w: (
        {"device_id": w.device.device.device_id, "operation_type": "reboot"},
        404,
    ),
}


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_another_tenants_admin_reaches_nothing(world: World, other_org: Org, path: str, method: str) -> None:
    stranger = other_org.admin
    before = _object_counts()
    if "{" in path:
        body = {"active": False}
        response = _send(stranger, method, fill(path, path_parameters(path, world)), body)
        if response.status_code != 404:
            # A view may refuse a bad body before it looks the object up; then the answer must be
            # the one for an id that does not exist, so it tells nothing about the object.
            missing = _send(stranger, method, fill(path, _missing(path_parameters(path, world))), body)
            assert (response.status_code, response.json()) == (missing.status_code, missing.json()), (
                method,
                path,
                response.content,
            )
    elif path == "/v2/command-inbox/":
        response = stranger.get(path, {"device_id": world.device.device.device_id})
        assert response.status_code == 400, response.content
    elif path == "/v2/mqtt-credentials/":  # a device's own token only (tests/test_mqtt_access.py)
        response = stranger.get(path, {"device_id": world.device.device.device_id})
        assert response.status_code == 403, response.content
    elif method == "GET":
        response = stranger.get(path)
        assert response.status_code == 200, response.content
        leaked = _ids_in(response.json()) & world.ids()
        assert not leaked, (path, leaked)
    else:
        key = (path, method)
        assert key in COLLECTION_WRITES, f"{method} {path}: add it to COLLECTION_WRITES"
        if COLLECTION_WRITES[key] is None:
            return
        body, expected = COLLECTION_WRITES[key](world)
        response = _send(stranger, method, path, body)
        assert response.status_code == expected, (method, path, response.content)
    assert _object_counts() == before


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_a_device_token_reaches_only_its_own_inbox_and_commands(world: World, path: str, method: str) -> None:
    device = world.device.api
    before = _object_counts()
    if path == "/v2/command-inbox/":
        other = world.second_device.device.device_id
        assert device.get(path, {"device_id": other}).status_code == 400
        assert device.get(path, {"device_id": world.device.device.device_id}).status_code == 200
        return
    if path == "/v2/mqtt-credentials/":  # another device's login never (with MQTT on: test_mqtt_access.py)
        other = world.second_device.device.device_id
        assert device.get(path, {"device_id": other}).status_code in (400, 404)
        return
    if path.startswith("/commands/v0/status/"):
        if "{" in path:
            own = fill(path, {"id": str(world.command.pk)})
            others = fill(path, {"id": str(world.second_command.pk)})
            body = {"state": "Command Acknowledged"}
            assert _send(device, method, others, body).status_code == 404
            assert _send(device, method, own, body).status_code == 200
        else:
            listed = _ids_in(device.get(path).json())
            assert str(world.second_command.pk) not in listed
            assert str(world.command.pk) in listed
        return
    target = fill(path, path_parameters(path, world)) if "{" in path else path
    response = _send(device, method, target, {})
    assert response.status_code == 403, (method, path, response.content)
    assert _object_counts() == before
