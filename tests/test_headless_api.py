"""``/api/v1/inventory_device_headless_operation/`` (seed 001): bodies, errors, filters, cancel."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import pytest

from commands.choices import CommandState
from commands.models import CommandStatus
from operations import headless
from operations.models import HeadlessOperation, HeadlessStatus
from tests.conftest import Api, add_device

URL = "/api/v1/inventory_device_headless_operation/"
LATER = "2099-01-16T02:00:00Z"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "device_id": "dev-1",
        "operation_type": "backup_configuration",
        "scheduled_at": LATER,
        "parameters": {"backup_location": "s3://backups/devices/", "compression": True, "retention_days": 30},
        "priority": "normal",
        **overrides,
    }


def test_create_with_a_json_object_answers_the_seed_fields(org, device):
    resp = org.admin.post(URL, body())

    assert resp.status_code == 201, resp.content
    made = resp.json()
    assert made["id"].startswith("op_")
    assert made["device_id"] == "dev-1"
    assert made["operation_type"] == "backup_configuration"
    assert made["status"] == "scheduled"
    assert made["scheduled_at"] == "2099-01-16T02:00:00Z"
    assert made["parameters"] == body()["parameters"]
    assert made["priority"] == "normal"
    assert made["created_at"] and made["updated_at"]
    assert made["command_id"] is None
    stored = HeadlessOperation.objects.get(pk=made["id"])
    assert stored.tenant == org.tenant and stored.created_by == "admin"


def test_create_with_data_as_a_json_string(org, device):
    resp = org.operator.post(
        URL, {"data": json.dumps(body(operation_type="firmware_update", priority="critical"))}
    )

    assert resp.status_code == 201, resp.content
    assert resp.json()["operation_type"] == "firmware_update"
    assert resp.json()["priority"] == "critical"


def form_post(api: Api, fields: dict[str, str], encoding: str = "urlencoded") -> Any:
    """POST ``fields`` as a form, urlencoded or multipart, with ``api``'s token."""
    auth = f"Bearer {api.token}"
    if encoding == "urlencoded":
        form = urlencode(fields)
        return api.client.post(
            URL, form, content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=auth
        )
    return api.client.post(URL, fields, HTTP_AUTHORIZATION=auth)  # the client's default: multipart


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_create_with_a_form_body_whose_data_field_holds_the_json(org, device, encoding):
    """Seed 001 documents a form post (``-F data=...``) as well as JSON (contract section 6)."""
    fields = {"data": json.dumps(body(operation_type="firmware_update", priority="high"))}

    resp = form_post(org.operator, fields, encoding)

    assert resp.status_code == 201, resp.content
    made = resp.json()
    assert (made["operation_type"], made["priority"]) == ("firmware_update", "high")
    assert made["device_id"] == "dev-1"
    assert made["parameters"] == body()["parameters"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"data": "{not json"}, "data"), ({"data": "[1, 2]"}, "data"), ({"other": "x"}, "device_id")],
)
def test_a_form_body_without_a_json_object_in_data_is_400(org, device, fields, field):
    resp = form_post(org.operator, fields)

    assert resp.status_code == 400, resp.content
    assert field in resp.json()["errors"]


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_form_body_with_too_many_fields_is_400_not_500(org, device, settings, encoding):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5

    resp = form_post(org.operator, {f"f{i}": "x" for i in range(10)}, encoding)

    assert resp.status_code == 400, resp.content
    assert "body" in resp.json()["errors"]


def test_defaults_priority_normal_parameters_empty_and_scheduled_now(org, device):
    before = dt.datetime.now(dt.UTC)
    resp = org.admin.post(URL, {"device_id": "dev-1", "operation_type": "reboot"})

    assert resp.status_code == 201, resp.content
    made = resp.json()
    assert made["priority"] == "normal" and made["parameters"] == {}
    assert dt.datetime.fromisoformat(made["scheduled_at"]) >= before


def test_scheduled_at_with_an_offset_is_stored_in_utc(org, device):
    resp = org.admin.post(URL, body(scheduled_at="2099-01-16T04:00:00+02:00"))

    assert resp.json()["scheduled_at"] == "2099-01-16T02:00:00Z"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ("{oops", "body"),
        ('{"data": "{not json"}', "data"),
        ('{"data": "[1, 2]"}', "data"),
        ('{"data": 5}', "data"),
        ("[1, 2]", "body"),
    ],
)
def test_malformed_json_in_either_form_is_400(org, device, raw, field):
    resp = org.admin.post(URL, raw=raw)

    assert resp.status_code == 400, resp.content
    assert field in resp.json()["errors"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scheduled_at": "2030-01-01T10:00:00"}, "scheduled_at"),
        ({"scheduled_at": "tomorrow"}, "scheduled_at"),
        ({"scheduled_at": 5}, "scheduled_at"),
        ({"priority": "urgent"}, "priority"),
        ({"priority": 3}, "priority"),
        ({"operation_type": ""}, "operation_type"),
        ({"operation_type": "rm -rf /"}, "operation_type"),
        ({"operation_type": "x" * 65}, "operation_type"),
        ({"parameters": [1, 2]}, "parameters"),
        ({"parameters": "a"}, "parameters"),
        ({"device_id": ["dev-1"]}, "device_id"),
    ],
)
def test_bad_fields_are_400_naming_the_field(org, device, overrides, field):
    resp = org.admin.post(URL, body(**overrides))

    assert resp.status_code == 400, resp.content
    assert field in resp.json()["errors"], resp.json()
    assert not HeadlessOperation.objects.exists()


def test_missing_device_id_is_400(org, device):
    resp = org.admin.post(URL, {"operation_type": "reboot"})

    assert resp.status_code == 400
    assert "device_id" in resp.json()["errors"]


def test_unknown_device_is_404(org, device):
    resp = org.admin.post(URL, body(device_id="dev_nope"))

    assert resp.status_code == 404
    assert resp.json()["error_code"] == "not_found_device"


def test_another_tenants_device_is_404(org, other_org):
    add_device(other_org.tenant, "theirs")

    resp = org.admin.post(URL, body(device_id="theirs"))

    assert resp.status_code == 404


def test_missing_or_bad_token_is_401(anonymous, org):
    assert anonymous.get(URL).status_code == 401
    assert anonymous.post(URL, body()).status_code == 401
    from tests.conftest import Api

    assert Api("dok_nope_nope").get(URL).status_code == 401


def test_viewer_reads_but_cannot_write(org, device):
    made = org.admin.post(URL, body()).json()

    assert org.viewer.post(URL, body()).status_code == 403
    assert org.viewer.post(f"{URL}{made['id']}/cancel/").status_code == 403
    assert org.viewer.get(URL).json()["count"] == 1


def test_device_token_is_403(device):
    assert device.api.get(URL).status_code == 403


def test_other_tenant_sees_nothing(org, other_org, device):
    made = org.admin.post(URL, body()).json()

    assert other_org.admin.get(URL, {"id": made["id"]}).json()["count"] == 0
    assert other_org.admin.get(URL).json()["count"] == 0
    assert other_org.admin.get(f"{URL}{made['id']}/").status_code == 404
    assert other_org.admin.post(f"{URL}{made['id']}/cancel/").status_code == 404


def test_list_is_bare_and_paged(org, device):
    ids = [org.admin.post(URL, body()).json()["id"] for _ in range(3)]

    page = org.admin.get(URL, {"limit": 2}).json()

    assert set(page) == {"count", "next", "previous", "results"}
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    rest = org.admin.get(URL, {"limit": 2, "offset": 2}).json()
    assert {r["id"] for r in page["results"] + rest["results"]} == set(ids)


def test_filters(org, device):
    add_device(org.tenant, "dev-2")
    a = org.admin.post(URL, body()).json()
    b = org.admin.post(URL, body(device_id="dev-2", operation_type="firmware_update")).json()
    HeadlessOperation.objects.filter(pk=b["id"]).update(status=HeadlessStatus.FAILED)

    def ids(**params: Any) -> set[str]:
        return {r["id"] for r in org.admin.get(URL, params).json()["results"]}

    assert ids(id=a["id"]) == {a["id"]}
    assert ids(device_id="dev-2") == {b["id"]}
    assert ids(status="failed") == {b["id"]}
    assert ids(status="scheduled") == {a["id"]}
    assert ids(operation_type="backup_configuration") == {a["id"]}
    assert ids(id="op_nope") == set()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bogus"}, "status"),
        ({"update_status": "maybe"}, "update_status"),
        ({"limit": "x"}, "limit"),
        ({"offset": "-1"}, "offset"),
    ],
)
def test_bad_query_values_are_400_naming_them(org, params, field):
    resp = org.admin.get(URL, params)

    assert resp.status_code == 400, resp.content
    assert field in resp.json()["errors"]


def test_get_by_id(org, device):
    made = org.admin.post(URL, body()).json()

    got = org.admin.get(f"{URL}{made['id']}/")

    assert got.status_code == 200
    assert got.json() == made
    assert org.admin.get(f"{URL}op_nope/").status_code == 404


def test_cancel_a_scheduled_operation(org, device):
    made = org.admin.post(URL, body()).json()

    resp = org.operator.post(f"{URL}{made['id']}/cancel/", {"reason": "not needed"})

    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == "cancelled" and resp.json()["reason"] == "not needed"
    headless.run_due(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
    assert not CommandStatus.objects.exists()


def test_cancel_a_pending_operation_cancels_its_command(org, device):
    made = org.admin.post(URL, body(scheduled_at="2000-01-01T00:00:00Z")).json()
    headless.run_due()
    command = CommandStatus.objects.get(request_ref=made["id"])

    resp = org.admin.post(f"{URL}{made['id']}/cancel/")

    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == "cancelled"
    command.refresh_from_db()
    assert command.state == CommandState.CANCELLED


def test_cancel_a_running_operation_cancels_its_command(org, device):
    made = org.admin.post(URL, body(scheduled_at="2000-01-01T00:00:00Z")).json()
    headless.run_due()
    command = CommandStatus.objects.get(request_ref=made["id"])
    inbox = device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}).json()["content"]["results"]
    assert [c["id"] for c in inbox] == [str(command.pk)]
    device.api.put(f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged"})

    resp = org.admin.post(f"{URL}{made['id']}/cancel/", {"reason": "stop"})

    assert resp.status_code == 200, resp.content
    assert resp.json()["status"] == "cancelled"
    command.refresh_from_db()
    assert command.state == CommandState.CANCELLED and command.reason == "stop"


def test_cancel_a_finished_operation_is_400(org, device):
    made = org.admin.post(URL, body(scheduled_at="2000-01-01T00:00:00Z")).json()
    headless.run_due()
    command = CommandStatus.objects.get(request_ref=made["id"])
    for state in ("Command Acknowledged", "Command In Progress", "Command Success"):
        assert device.api.put(f"/commands/v0/status/{command.pk}/", {"state": state}).status_code == 200

    resp = org.admin.post(f"{URL}{made['id']}/cancel/")

    assert resp.status_code == 400
    assert resp.json()["error_code"] == "invalid_transition"
    assert org.admin.get(f"{URL}{made['id']}/").json()["status"] == "completed"
    again = org.admin.post(f"{URL}{made['id']}/cancel/")
    assert again.status_code == 400


def test_cancel_twice_is_400(org, device):
    made = org.admin.post(URL, body()).json()
    org.admin.post(f"{URL}{made['id']}/cancel/")

    resp = org.admin.post(f"{URL}{made['id']}/cancel/")

    assert resp.status_code == 400
    assert "cancelled" in resp.json()["errors"]["status"][0]


def test_openapi_documents_the_endpoint_and_cancel(org):
    resp = org.admin.get("/api/schema/", {"format": "json"})

    assert resp.status_code == 200
    paths = json.loads(resp.content)["paths"]
    assert "/api/v1/inventory_device_headless_operation/" in paths
    assert "post" in paths["/api/v1/inventory_device_headless_operation/{id}/cancel/"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"device_id": "dev\u0000-1"},
        {"parameters": {"k": "nul\u0000"}},
        {"scheduled_at": "9999-12-31T23:00:00-05:00"},
        {"scheduled_at": "2024-13-45T00:00:00Z"},
        {"device_id": "d" * 500},
    ],
)
def test_hostile_values_are_4xx_never_500(org, device, overrides):
    resp = org.admin.post(URL, body(**overrides))

    assert resp.status_code in (400, 404), resp.content


def test_hostile_query_values_are_4xx_never_500(org, device):
    for params in ({"id": "op\u0000"}, {"device_id": "x" * 5000}, {"operation_type": "\u0000"}):
        assert org.admin.get(URL, params).status_code in (200, 400)
