"""Where schemathesis showed the published schema and the answers disagreeing (issue 12,
item 8 d), each now agrees, one way or the other. ``limit`` and ``offset`` are in
tests/test_pagination.py.

- refused though the schema allowed it: an empty inbox ``device_id`` (schema fixed:
  ``minLength``), a device PUT whose ``id`` is another device's (behaviour fixed: 409, a
  conflict with the state, not a malformed body), ids the server never takes (schema fixed:
  ``pattern``);
- taken though the schema forbade it: ``exclude_internal_commands`` that is no boolean,
  ``ordering=,,,`` (behaviour fixed: 400 naming the parameter).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from commands.services import issue_internal_command
from tests.conftest import DeviceActor, Org, add_device
from tests.helpers import content, error, openapi_document


def _parameter(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    (found,) = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    return dict(found["schema"])


# --- exclude_internal_commands ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["699258333846731751424", "", "yes", "2", "truthy", "-1"])
def test_exclude_internal_commands_that_is_no_boolean_is_400(org: Org, value: str) -> None:
    body = error(org.viewer.get("/commands/v0/status/", {"exclude_internal_commands": value}), 400)

    assert "exclude_internal_commands" in body["errors"]


@pytest.mark.parametrize(
    ("value", "count"), [("true", 0), ("false", 1), ("True", 0), ("FALSE", 1), ("1", 0), ("0", 1)]
)
def test_exclude_internal_commands_takes_true_and_false(
    org: Org, device: DeviceActor, value: str, count: int
) -> None:
    issue_internal_command(org.tenant.pk, device.device.pk, "SET_WALLPAPER", {}, "headless:1")

    page = content(org.viewer.get("/commands/v0/status/", {"exclude_internal_commands": value}))

    assert page["count"] == count
    assert _parameter(openapi_document(), "/commands/v0/status/", "exclude_internal_commands") == {
        "type": "boolean"
    }


# --- ordering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [",,,", "state,,", ",created_at", "-"])
def test_ordering_with_an_empty_or_unknown_term_is_400(org: Org, value: str) -> None:
    body = error(org.viewer.get("/v0/operations/", {"ordering": value}), 400)

    assert "ordering" in body["errors"]


@pytest.mark.parametrize("value", ["", "state", "-created_at,state"])
def test_ordering_takes_the_schemas_terms(org: Org, value: str) -> None:
    content(org.viewer.get("/v0/operations/", {"ordering": value}))


# --- the inbox's device_id ------------------------------------------------------------------------


def test_the_inbox_schema_says_device_id_is_not_empty(org: Org, device: DeviceActor) -> None:
    schema = _parameter(openapi_document(), "/v2/command-inbox/", "device_id")

    assert schema["minLength"] == 1
    assert re.fullmatch(schema["pattern"], "dev-1")
    assert not re.fullmatch(schema["pattern"], "")
    error(device.api.get("/v2/command-inbox/", {"device_id": ""}), 400)


# --- a device's id ------------------------------------------------------------------------------


def test_a_put_or_patch_with_another_devices_id_is_409(org: Org) -> None:
    add_device(org.tenant, "first")
    add_device(org.tenant, "second")

    for method in (org.admin.put, org.admin.patch):
        body = error(method("/v0/devices/first/", {"id": "second"}), 409, "device_exists")

        assert "second" in body["errors"]["id"][0]
    assert content(org.admin.get("/v0/devices/first/"))["id"] == "first"


def test_a_create_with_an_existing_id_is_409(org: Org) -> None:
    add_device(org.tenant, "first")

    body = error(org.admin.post("/v0/devices/", {"id": "first"}), 409, "device_exists")

    assert "first" in body["errors"]["id"][0]


@pytest.mark.parametrize("method", ["put", "patch"])
def test_a_put_or_patch_with_a_new_id_renames_and_answers_the_device(org: Org, method: str) -> None:
    add_device(org.tenant, "old-name")

    renamed = content(getattr(org.admin, method)("/v0/devices/old-name/", {"id": "new-name", "name": "x"}))

    assert renamed["id"] == "new-name" and renamed["name"] == "x"
    assert content(org.admin.get("/v0/devices/new-name/"))["name"] == "x"
    error(org.admin.get("/v0/devices/old-name/"), 404)


def test_a_put_with_its_own_id_is_taken(org: Org) -> None:
    add_device(org.tenant, "same")

    assert content(org.admin.put("/v0/devices/same/", {"id": "same", "name": "n"}))["name"] == "n"


def test_the_schema_says_which_device_ids_are_taken(org: Org) -> None:
    document = openapi_document()
    schema = document["components"]["schemas"]["DeviceRequest"]["properties"]["id"]
    patch = document["components"]["schemas"]["PatchedDeviceRequest"]["properties"]["id"]

    assert schema == patch
    for taken in ("dev_67890", "9f0c1c7e-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "a" * 128, "x:y@z.w-1"):
        assert re.fullmatch(schema["pattern"], taken), taken
        assert org.admin.post("/v0/devices/", {"id": taken}).status_code == 201, taken
    for refused in ("", "-dash-first", "a b", "a/b", "a" * 129, "é"):
        assert not re.fullmatch(schema["pattern"], refused) or len(refused) > schema["maxLength"]
        assert org.admin.post("/v0/devices/", {"id": refused}).status_code == 400, refused
