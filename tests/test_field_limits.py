"""Free-form fields have documented size limits, set in the environment (issue 12, item 8 c):
``API_MAX_JSON_FIELD_KB`` (64) for JSON blobs, ``API_MAX_TEXT_FIELD_CHARS`` (2000) for free
text. Past them: 400 naming the field. A 1 MB ``details`` string used to be stored."""

from __future__ import annotations

import json
from typing import Any

import pytest

from commands.models import CommandStatus
from config.api.limits import json_size
from inventory.models import Group
from operations.models import HeadlessOperation, Operation
from tests.command_factories import command_of, dispatched_operation
from tests.conftest import DeviceActor, Org, add_device
from tests.helpers import content

MB = 1024 * 1024
HEADLESS = "/api/v1/inventory_device_headless_operation/"


@pytest.fixture
def command(org: Org, device: DeviceActor) -> CommandStatus:
    return command_of(dispatched_operation(org.tenant, [device]), device)


def _refused(response: Any, field: str) -> str:
    """The 400's reason for ``field``; the whole body is an error envelope naming it."""
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    errors = body["errors"]
    assert field in errors, body
    assert field in body.get("message", field)
    return str(errors[field][0])


def test_json_size_is_the_compact_utf8_encoding() -> None:
    assert json_size({"a": [1, 2]}) == len(b'{"a":[1,2]}')
    assert json_size("é") == len('"é"'.encode())
    assert json_size("\ud800") == 5  # a lone surrogate is counted, it does not crash the check


# --- command status: details and reason ---------------------------------------------------------


@pytest.mark.parametrize("details", ["x" * MB, {"blob": "y" * (64 * 1024)}, ["z" * 1000] * 70])
def test_a_details_past_64_kb_is_400_naming_details(
    command: CommandStatus, device: DeviceActor, details: Any
) -> None:
    response = device.api.put(
        f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged", "details": details}
    )

    reason = _refused(response, "details")
    assert "64 KB" in reason and "API_MAX_JSON_FIELD_KB" in reason
    assert CommandStatus.objects.get(pk=command.pk).details is None


def test_a_details_just_under_the_limit_is_stored(command: CommandStatus, device: DeviceActor) -> None:
    details = {"log": "x" * (64 * 1024 - 20)}
    assert json_size(details) <= 64 * 1024

    shown = content(
        device.api.put(
            f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged", "details": details}
        )
    )

    assert shown["details"] == details


def test_a_reason_past_the_limit_is_400_naming_reason(command: CommandStatus, device: DeviceActor) -> None:
    response = device.api.put(
        f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged", "reason": "r" * 2001}
    )

    assert "API_MAX_TEXT_FIELD_CHARS" in _refused(response, "reason")
    content(
        device.api.put(
            f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged", "reason": "r" * 2000}
        )
    )


def test_the_limits_are_settings(command: CommandStatus, device: DeviceActor, settings: Any) -> None:
    settings.API_MAX_JSON_FIELD_KB = 1
    settings.API_MAX_TEXT_FIELD_CHARS = 10
    url = f"/commands/v0/status/{command.pk}/"

    assert "1 KB" in _refused(
        device.api.put(url, {"state": "Command Acknowledged", "details": "d" * 1100}), "details"
    )
    _refused(device.api.put(url, {"state": "Command Acknowledged", "reason": "r" * 11}), "reason")
    content(device.api.put(url, {"state": "Command Acknowledged", "details": "d" * 1000, "reason": "r" * 10}))


# --- operations: arguments and reason -------------------------------------------------------------


def test_operation_arguments_past_the_limit_are_400_naming_arguments(org: Org) -> None:
    add_device(org.tenant, "d1")
    body = {
        "operation_type": "REBOOT",
        "operation_device_query": {"devices": ["d1"]},
        "arguments": {"x": "a" * MB},
    }

    _refused(org.admin.post("/v0/operations/", body), "arguments")
    assert not Operation.objects.exists()


def test_an_operation_state_reason_past_the_limit_is_400(org: Org, device: DeviceActor) -> None:
    operation = dispatched_operation(org.tenant, [device])

    response = org.admin.put(f"/v0/operations/{operation.pk}/", {"state": "CANCELLED", "reason": "r" * 2001})

    _refused(response, "reason")


def test_a_large_device_query_is_not_a_json_blob(org: Org, settings: Any) -> None:
    """The device list is bounded by MAX_QUERY_DEVICES, not by the blob limit."""
    settings.API_MAX_JSON_FIELD_KB = 1
    ids = [f"device-with-a-long-id-{i:04d}" for i in range(100)]
    for device_id in ids:
        add_device(org.tenant, device_id)

    response = org.admin.post(
        "/v0/operations/", {"operation_type": "REBOOT", "operation_device_query": {"devices": ids}}
    )

    assert response.status_code == 201, response.content[:300]


# --- headless: parameters and the cancel reason ----------------------------------------------------


def test_headless_parameters_past_the_limit_are_400_naming_parameters(org: Org, device: DeviceActor) -> None:
    big = {"device_id": "dev-1", "operation_type": "reboot", "parameters": {"p": "x" * MB}}

    for body in (big, {"data": json.dumps(big)}):
        response = org.admin.post(HEADLESS, body)
        assert response.status_code == 400, response.content[:300]
        assert "parameters" in response.json()["errors"]
    assert not HeadlessOperation.objects.exists()


def test_a_headless_cancel_reason_past_the_limit_is_400(org: Org, device: DeviceActor) -> None:
    made = org.admin.post(HEADLESS, {"device_id": "dev-1", "operation_type": "reboot"}).json()

    response = org.admin.post(f"{HEADLESS}{made['id']}/cancel/", {"reason": "r" * 2001})

    assert response.status_code == 400
    assert "reason" in response.json()["errors"]


# --- groups: description -----------------------------------------------------------------------------


def test_a_group_description_past_the_limit_is_400(org: Org) -> None:
    _refused(org.admin.post("/v0/groups/", {"name": "g", "description": "d" * MB}), "description")
    group = content(org.admin.post("/v0/groups/", {"name": "g", "description": "d" * 2000}), 201)
    _refused(org.admin.patch(f"/v0/groups/{group['id']}/", {"description": "d" * 2001}), "description")
    assert Group.objects.get().description == "d" * 2000


def test_the_schema_states_the_text_limits(org: Org) -> None:
    schemas = org.admin.get("/api/schema/", {"format": "json"}).json()["components"]["schemas"]

    assert schemas["CommandStatusUpdateRequest"]["properties"]["reason"]["maxLength"] == 2000
    assert schemas["GroupRequest"]["properties"]["description"]["maxLength"] == 2000
    assert "64 KB" in schemas["CommandStatusUpdateRequest"]["properties"]["details"]["description"]
