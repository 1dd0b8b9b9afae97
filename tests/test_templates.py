"""Operation templates (contract section 12): CRUD per tenant, typed parameters, placeholders,
overrides, and the operation that records the template and the values used."""

from __future__ import annotations

from typing import Any

import pytest

from operations.models import Operation
from tests.conftest import Org, add_device
from tests.helpers import content, error

TEMPLATES = "/v0/operation-templates/"
OPS = "/v0/operations/"


def template(**extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "install-pos",
        "description": "the point-of-sale app",
        "operation_type": "INSTALL_APP",
        "arguments": {
            "package": "com.example.pos",
            "version": "{{version}}",
            "retries": "{{retries}}",
            "silent": "{{silent}}",
            "ratio": "{{ratio}}",
            "note": "v{{version}}, silent={{silent}}, {{comment}}",
            "nested": [{"level": "{{retries}}"}],
        },
        "parameters": {
            "version": {"type": "string", "required": True, "description": "the version"},
            "retries": {"type": "integer", "default": 3},
            "silent": {"type": "boolean", "default": True},
            "ratio": {"type": "number", "default": 0.5},
            "comment": {"type": "string"},
        },
        "operation_device_query": {"devices": ["dev-a"]},
        "rollout": {"max_per_minute": 100},
    }
    data.update(extra)
    return data


@pytest.fixture
def devices(org: Org) -> None:
    add_device(org.tenant, "dev-a")
    add_device(org.tenant, "dev-b")


@pytest.fixture
def made(org: Org, devices: None) -> dict[str, Any]:
    return dict(content(org.operator.post(TEMPLATES, template()), 201))


def test_crud_of_a_template(org: Org, made: dict[str, Any]) -> None:
    assert made["name"] == "install-pos" and made["created_by"] == "operator"
    assert made["parameters"]["version"]["type"] == "string"
    assert made["rollout"]["max_per_minute"] == 100
    listed = content(org.viewer.get(TEMPLATES))
    assert listed["count"] == 1 and listed["results"][0]["id"] == made["id"]
    path = f"{TEMPLATES}{made['id']}/"
    patched = content(org.operator.patch(path, {"description": "changed"}))
    assert patched["description"] == "changed" and patched["arguments"] == made["arguments"]
    assert org.admin.delete(path).status_code == 204
    error(org.operator.get(path), 404, "not_found")


def test_viewers_read_only(org: Org, made: dict[str, Any]) -> None:
    path = f"{TEMPLATES}{made['id']}/"
    assert content(org.viewer.get(path))["id"] == made["id"]
    error(org.viewer.post(TEMPLATES, template(name="other")), 403, "permission_denied")
    error(org.viewer.patch(path, {"description": "x"}), 403, "permission_denied")
    error(org.viewer.delete(path), 403, "permission_denied")
    # Making an operation from it is a write, too.
    error(org.viewer.post(OPS, {"template": made["id"], "template_parameters": {"version": "1"}}), 403)


def test_tenants_see_only_their_own_templates(org: Org, other_org: Org, made: dict[str, Any]) -> None:
    assert content(other_org.admin.get(TEMPLATES))["count"] == 0
    error(other_org.admin.get(f"{TEMPLATES}{made['id']}/"), 404, "not_found")
    error(other_org.admin.delete(f"{TEMPLATES}{made['id']}/"), 404, "not_found")
    add_device(other_org.tenant, "dev-a")
    answer = other_org.operator.post(OPS, {"template": made["id"], "template_parameters": {"version": "1"}})
    assert "template" in error(answer, 400, "not_found_template")["errors"]
    answer = other_org.operator.post(
        OPS, {"template": "install-pos", "template_parameters": {"version": "1"}}
    )
    error(answer, 400, "not_found_template")
    # The same name is free in another tenant.
    content(other_org.operator.post(TEMPLATES, template()), 201)


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"parameters": {"v": {"type": "date"}}}, "parameters.v.type", None),
        (
            {"parameters": {"v": {"type": "integer", "default": "3"}}},
            "parameters.v.default",
            "invalid_parameter",
        ),
        (
            {"parameters": {"v": {"type": "integer", "default": True}}},
            "parameters.v.default",
            "invalid_parameter",
        ),
        ({"parameters": {"v": {"type": "string", "required": "yes"}}}, "parameters.v.required", None),
        ({"parameters": {"v": {"type": "string", "colour": "red"}}}, "parameters.v.colour", None),
        ({"parameters": {"9v": {"type": "string"}}}, "parameters.9v", None),
        ({"parameters": []}, "parameters", None),
        ({"arguments": {"x": "{{missing}}"}, "parameters": {}}, "arguments", "unknown_parameter"),
        ({"operation_type": "FLY"}, "operation_type", None),
        ({"rollout": {"waves": [50]}}, "rollout.waves", "invalid_rollout"),
        (
            {"operation_device_query": {"devices": ["nope"]}},
            "operation_device_query.devices",
            "not_found_device",
        ),
        ({"name": ""}, "name", None),
    ],
)
def test_bad_templates_are_400_naming_the_field(
    org: Org, devices: None, change: dict[str, Any], field: str, code: str | None
) -> None:
    body = error(org.operator.post(TEMPLATES, template(**change)), 400, code)
    assert field in body["errors"], body


def test_a_name_is_unique_in_the_tenant(org: Org, made: dict[str, Any]) -> None:
    assert "name" in error(org.operator.post(TEMPLATES, template()), 400)["errors"]


def test_an_operation_from_a_template_fills_typed_values_and_defaults(org: Org, made: dict[str, Any]) -> None:
    created = content(
        org.operator.post(OPS, {"template": "install-pos", "template_parameters": {"version": "4.2.0"}}), 201
    )

    assert created["operation_type"] == "INSTALL_APP"
    assert created["arguments"] == {
        "package": "com.example.pos",
        "version": "4.2.0",
        "retries": 3,
        "silent": True,
        "ratio": 0.5,
        "note": "v4.2.0, silent=true, ",
        "nested": [{"level": 3}],
    }
    assert created["operation_device_query"]["devices"] == ["dev-a"]
    assert created["rollout"]["max_per_minute"] == 100
    assert created["template"] == {"id": made["id"], "name": "install-pos"}
    assert created["template_parameters"] == {
        "version": "4.2.0",
        "retries": 3,
        "silent": True,
        "ratio": 0.5,
        "comment": None,
    }


def test_the_body_overrides_the_template(org: Org, made: dict[str, Any]) -> None:
    body = {
        "template": made["id"],
        "template_parameters": {"version": "5", "retries": 7, "silent": False, "ratio": 2, "comment": "hi"},
        "operation_device_query": {"devices": ["dev-b"]},
        "rollout": None,
    }
    created = content(org.operator.post(OPS, body), 201)

    assert created["operation_device_query"]["devices"] == ["dev-b"] and created["rollout"] is None
    assert created["arguments"]["retries"] == 7 and created["arguments"]["silent"] is False
    assert created["arguments"]["note"] == "v5, silent=false, hi"
    replaced = content(org.operator.post(OPS, {**body, "arguments": {"plain": 1}}), 201)
    assert replaced["arguments"] == {"plain": 1}


@pytest.mark.parametrize(
    ("values", "field", "code"),
    [
        ({}, "template_parameters.version", "missing_parameter"),
        ({"version": "1", "colour": "red"}, "template_parameters.colour", "unknown_parameter"),
        ({"version": 4}, "template_parameters.version", "invalid_parameter"),
        ({"version": "1", "retries": "3"}, "template_parameters.retries", "invalid_parameter"),
        ({"version": "1", "retries": 2.5}, "template_parameters.retries", "invalid_parameter"),
        ({"version": "1", "retries": True}, "template_parameters.retries", "invalid_parameter"),
        ({"version": "1", "silent": "true"}, "template_parameters.silent", "invalid_parameter"),
        ({"version": "1", "ratio": False}, "template_parameters.ratio", "invalid_parameter"),
    ],
)
def test_bad_values_are_400_naming_the_parameter(
    org: Org, made: dict[str, Any], values: dict[str, Any], field: str, code: str
) -> None:
    body = error(org.operator.post(OPS, {"template": made["id"], "template_parameters": values}), 400, code)
    assert field in body["errors"], body
    assert not Operation.objects.exists()


def test_changing_a_template_never_changes_its_operations(org: Org, made: dict[str, Any]) -> None:
    created = content(
        org.operator.post(OPS, {"template": made["id"], "template_parameters": {"version": "1"}}), 201
    )
    content(org.operator.patch(f"{TEMPLATES}{made['id']}/", {"arguments": {"version": "{{version}}!"}}))
    assert content(org.operator.get(f"{OPS}{created['id']}/"))["arguments"]["version"] == "1"
    org.admin.delete(f"{TEMPLATES}{made['id']}/")
    after = content(org.operator.get(f"{OPS}{created['id']}/"))
    assert after["template"] is None and after["template_parameters"]["version"] == "1"


def test_a_recurring_template(org: Org, devices: None) -> None:
    recurring = template(
        name="nightly",
        schedule_type="RECURRING",
        schedule_args={"time_expression": "0 0 2 * * ?", "time_type": "device"},
    )
    content(org.operator.post(TEMPLATES, recurring), 201)
    created = content(
        org.operator.post(OPS, {"template": "nightly", "template_parameters": {"version": "1"}}), 201
    )
    assert created["schedule_type"] == "RECURRING" and created["state"] == "SCHEDULED"
    assert created["schedule_args"]["duration_minutes"] == 60


def test_an_operation_from_a_template_may_be_continuous(org: Org, made: dict[str, Any]) -> None:
    """Review of the merges: ``target_selection`` in the body was dropped for an operation made
    from a template, so no continuous operation could come from one."""
    body = {"template": made["id"], "template_parameters": {"version": "5"}, "target_selection": "CONTINUOUS"}

    created = content(org.operator.post(OPS, body), 201)

    assert created["target_selection"] == "CONTINUOUS"
