"""Mass assignment (OWASP API3): fields the server owns cannot be set through any body.

One case per writable operation (POST, PUT, PATCH) of the OpenAPI document; a write the
table does not know fails, so a new endpoint must say what it protects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from commands.models import CommandStatus
from inventory.models import Device, Group, PendingDelivery, WebhookEndpoint, WebhookEvent
from maintenance.models import MaintenanceJob
from operations.choices import OperationState
from operations.models import ApprovalPolicy, HeadlessOperation, Operation, OperationTemplate
from tests.conftest import Org
from tests.test_isolation import OPERATIONS
from tests.world import World, build_world, fill, path_parameters

PAST = "2001-01-01T00:00:00Z"
FAKE_UUID = "00000000-0000-4000-8000-000000000001"
STOLEN_SECRET = "whsec_c3RvbGVuc3RvbGVuc3RvbGVuc3RvbGVu"


def hostile(other: Org) -> dict[str, Any]:
    """Server-owned fields, set to what an attacker would like."""
    return {
        "tenant": other.tenant.pk,
        "tenant_id": other.tenant.pk,
        "organization_Id": other.tenant.slug,
        "created_by": "mallory",
        "created_by_user": "mallory",
        "updated_by": "mallory",
        "token": "ddt_0000000000000000_stolen",
        "token_prefix": "0000000000000000",
        "token_hash": "0" * 64,
        "last_seen": PAST,
        "created_at": PAST,
        "updated_at": PAST,
        "device_count": 999,
        "operation_stats": {"device_operation_statuses_count": {"success": 999}},
        "operation_activity": [],
        "version": 999,
        "command_id": "1",
        "delivery_count": 99,
    }


def _device(w: World, _: Any) -> None:
    device = Device.objects.get(pk=w.device.device.pk)
    assert device.tenant_id == w.org.tenant.pk
    assert device.last_seen is None
    assert device.token_prefix != "0000000000000000"


def _group(w: World, _: Any) -> None:
    group = Group.objects.get(pk=w.group.pk)
    assert group.tenant_id == w.org.tenant.pk
    assert group.created_at.year != 2001


def _created_device(w: World, response: Any) -> None:
    content = response.json()["content"]
    device = Device.objects.get(tenant=w.org.tenant, device_id="ma-new")
    assert device.last_seen is None and device.created_at.year != 2001
    assert content["token"] != "ddt_0000000000000000_stolen"
    assert device.token_prefix != "0000000000000000"


def _bulk(w: World, response: Any) -> None:
    device = Device.objects.get(tenant=w.org.tenant, device_id="ma-bulk")
    assert device.last_seen is None and device.token_prefix != "0000000000000000"
    assert response.json()["content"]["devices"][0]["token"] != "ddt_0000000000000000_stolen"


def _created_group(w: World, response: Any) -> None:
    group = Group.objects.get(name="ma-group")
    assert group.tenant_id == w.org.tenant.pk and str(group.pk) != FAKE_UUID
    assert response.json()["content"]["device_count"] == 0


def _no_rerun(w: World, response: Any) -> None:
    assert response.json()["error_code"] == "not_finished"
    assert not Operation.objects.filter(rerun_of__isnull=False).exists()
    assert not Operation.objects.filter(pk=FAKE_UUID).exists()


def _created_operation(w: World, response: Any) -> None:
    operation = Operation.objects.get(pk=response.json()["content"]["id"])
    assert str(operation.pk) != FAKE_UUID
    assert operation.tenant_id == w.org.tenant.pk
    assert operation.created_by == "admin"
    assert response.json()["content"]["state"] == "CREATED"


def _operation(w: World, _: Any) -> None:
    operation = Operation.objects.get(pk=w.operation.pk)
    assert operation.created_by != "mallory" and operation.tenant_id == w.org.tenant.pk
    assert operation.operation_type == "REBOOT"
    assert operation.state == OperationState.CANCELLED


def _command(w: World, _: Any) -> None:
    command = CommandStatus.objects.get(pk=w.command.pk)
    assert command.version == w.command.version + 1
    assert command.device_id == w.device.device.pk and command.command == w.command.command
    assert command.delivery_count == w.command.delivery_count


def _created_headless(w: World, response: Any) -> None:
    body = response.json()
    assert body["status"] == "scheduled" and body["id"] != "op_mine" and body["command_id"] is None
    assert HeadlessOperation.objects.get(pk=body["id"]).tenant_id == w.org.tenant.pk


def _cancelled_headless(w: World, _: Any) -> None:
    assert HeadlessOperation.objects.get(pk=w.headless.pk).status == "cancelled"


def _created_job(w: World, response: Any) -> None:
    job = MaintenanceJob.objects.get(pk=response.json()["response"]["job_id"])
    assert str(job.pk) != FAKE_UUID and job.tenant_id == w.org.tenant.pk
    assert job.created_by_user == "admin" and job.active


def _job(w: World, _: Any) -> None:
    job = MaintenanceJob.objects.get(pk=w.job.pk)
    assert job.created_by_user == "tests" and job.time_expression == "0 0 3 ? * MON"
    assert not job.active


def _token(w: World, response: Any) -> None:
    assert response.json()["content"].get("token") != "ddt_0000000000000000_stolen"
    assert Device.objects.get(pk=w.second_device.device.pk).token_prefix != "0000000000000000"


def _created_webhook(w: World, response: Any) -> None:
    body = response.json()["content"]
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert str(endpoint.pk) != FAKE_UUID and endpoint.tenant_id == w.org.tenant.pk
    assert body["secret"] != STOLEN_SECRET and body["disabled_reason"] == ""
    assert endpoint.disabled_at is None and endpoint.locked_until is None


def _webhook(w: World, response: Any) -> None:
    endpoint = WebhookEndpoint.objects.get(pk=w.webhook.pk)
    assert endpoint.secret_sealed == w.webhook.secret_sealed and endpoint.disabled_reason == ""
    assert endpoint.tenant_id == w.org.tenant.pk and endpoint.consecutive_failures == 0


def _rotated(w: World, response: Any) -> None:
    assert response.json()["content"]["secret"] != STOLEN_SECRET


def _pinged(w: World, _: Any) -> None:
    event = WebhookEvent.objects.filter(endpoint=w.webhook).order_by("-id").first()
    assert event is not None and event.type == "webhook.ping" and event.tenant_id == w.org.tenant.pk


def _redelivered(w: World, _: Any) -> None:
    pending = PendingDelivery.objects.get(endpoint=w.webhook, event_id=w.delivery.event_id)
    assert pending.attempt == 2


def _approved(w: World, _: Any) -> None:
    operation = Operation.objects.get(pk=w.waiting.pk)
    assert operation.state == OperationState.CREATED and operation.approval_state == "APPROVED"
    assert operation.approval_decided_by == "admin" and operation.approval_decider != "mallory"
    assert operation.operation_type == "WIPE" and operation.tenant_id == w.org.tenant.pk


def _denied(w: World, _: Any) -> None:
    operation = Operation.objects.get(pk=w.waiting.pk)
    assert operation.state == OperationState.APPROVAL_DENIED and operation.approval_state == "DENIED"
    assert operation.approval_decided_by == "admin" and operation.approval_remark == "no"


def _policy(w: World, _: Any) -> None:
    policy = ApprovalPolicy.objects.get()
    assert policy.tenant_id == w.org.tenant.pk and policy.updated_by == "admin"
    assert policy.operation_types == ["WIPE"]


def _preview(w: World, _: Any) -> None:
    made = set(Operation.objects.filter(tenant=w.org.tenant).values_list("pk", flat=True))
    assert made == {w.operation.pk, w.waiting.pk}  # the world's: the preview made none


def _created_template(w: World, response: Any) -> None:
    template = OperationTemplate.objects.get(pk=response.json()["content"]["id"])
    assert str(template.pk) != FAKE_UUID and template.tenant_id == w.org.tenant.pk
    assert template.created_by == "admin" and template.created_at.year != 2001


def _template(w: World, _: Any) -> None:
    template = OperationTemplate.objects.get(pk=w.template.pk)
    assert template.tenant_id == w.org.tenant.pk and template.created_by == "tests"
    assert template.created_at.year != 2001 and template.updated_by == "admin"


#: (method, path) -> (the legitimate body, status, what must hold afterwards).
CASES: dict[tuple[str, str], tuple[Callable[[World], Any], int, Callable[[World, Any], None]]] = {
    ("POST", "/v0/devices/"): (lambda w: {"id": "ma-new"}, 201, _created_device),
    ("PUT", "/v0/devices/{id}/"): (lambda w: {"id": w.device.device.device_id, "name": "n"}, 200, _device),
    ("PATCH", "/v0/devices/{id}/"): (lambda w: {"name": "n"}, 200, _device),
    ("POST", "/v0/devices/bulk/"): (lambda w: [{"id": "ma-bulk"}], 201, _bulk),
    ("POST", "/v0/devices/{id}/rotate-token/"): (lambda w: {}, 200, _token),
    ("POST", "/v0/devices/{id}/revoke-token/"): (lambda w: {}, 200, _token),
    ("POST", "/v0/groups/"): (lambda w: {"name": "ma-group", "id": FAKE_UUID}, 201, _created_group),
    ("PUT", "/v0/groups/{id}/"): (lambda w: {"name": "renamed", "id": FAKE_UUID}, 200, _group),
    ("PATCH", "/v0/groups/{id}/"): (lambda w: {"id": FAKE_UUID}, 200, _group),
    ("POST", "/v0/operations/"): (
        lambda w: {
            "id": FAKE_UUID,
            "state": "SUCCESS",
            "state_code": 9,
            "operation_type": "REBOOT",
            "operation_device_query": {"all": True},
        },
        201,
        _created_operation,
    ),
    ("PUT", "/v0/operations/{id}/"): (
        lambda w: {"state": "CANCELLED", "operation_type": "WIPE", "operation": "WIPE"},
        200,
        _operation,
    ),
    # The world's operation is unfinished: refused (400 not_finished), and nothing of the body is taken.
    ("POST", "/v0/operations/{id}/rerun/"): (
        lambda w: {
            "id": FAKE_UUID,
            "rerun_of": FAKE_UUID,
            "target_selection": "CONTINUOUS",
            "only": ["FAILED"],
        },
        400,
        _no_rerun,
    ),
    ("POST", "/v0/operations/preview/"): (lambda w: {"operation_device_query": {"all": True}}, 200, _preview),
    ("POST", "/v0/operations/{id}/approve/"): (
        lambda w: {
            "state": "SUCCESS",
            "approval_state": "DENIED",
            "approval": {"decided_by": "mallory"},
            "decided_by": "mallory",
            "approval_decider": "mallory",
            "operation_type": "REBOOT",
        },
        200,
        _approved,
    ),
    ("POST", "/v0/operations/{id}/deny/"): (
        lambda w: {"remark": "no", "state": "CREATED", "approval_state": "APPROVED", "decided_by": "mallory"},
        200,
        _denied,
    ),
    ("PUT", "/v0/approval-policy/"): (
        lambda w: {"operation_types": ["WIPE"], "id": 7, "updated_at": PAST},
        200,
        _policy,
    ),
    ("POST", "/v0/operation-templates/"): (
        lambda w: {"name": "ma-template", "operation_type": "REBOOT", "id": FAKE_UUID},
        201,
        _created_template,
    ),
    ("PUT", "/v0/operation-templates/{id}/"): (
        lambda w: {"name": "renamed", "operation_type": "REBOOT", "id": FAKE_UUID},
        200,
        _template,
    ),
    ("PATCH", "/v0/operation-templates/{id}/"): (lambda w: {"id": FAKE_UUID}, 200, _template),
    ("POST", "/v0/webhooks/"): (
        lambda w: {
            "url": "https://93.184.216.34/new",
            "events": ["*"],
            "id": FAKE_UUID,
            "secret": STOLEN_SECRET,
            "disabled_reason": "x",
            "locked_until": "2999-01-01T00:00:00Z",
        },
        201,
        _created_webhook,
    ),
    ("PATCH", "/v0/webhooks/{id}/"): (
        lambda w: {
            "id": FAKE_UUID,
            "secret": STOLEN_SECRET,
            "disabled_reason": "x",
            "consecutive_failures": 9,
        },
        200,
        _webhook,
    ),
    ("POST", "/v0/webhooks/{id}/rotate-secret/"): (lambda w: {"secret": STOLEN_SECRET}, 200, _rotated),
    ("POST", "/v0/webhooks/{id}/ping/"): (lambda w: {"type": "device.deleted"}, 202, _pinged),
    ("POST", "/v0/webhooks/{id}/deliveries/{delivery_id}/redeliver/"): (
        lambda w: {"attempt": 99},
        202,
        _redelivered,
    ),
    ("PUT", "/commands/v0/status/{id}/"): (
        lambda w: {
            "state": "Command Acknowledged",
            "device": "w-dev-2",
            "command": "WIPE",
            "is_internal": True,
        },
        200,
        _command,
    ),
    ("POST", "/api/v1/inventory_device_headless_operation/"): (
        lambda w: {
            "device_id": w.device.device.device_id,
            "operation_type": "reboot",
            "id": "op_mine",
            "status": "completed",
        },
        201,
        _created_headless,
    ),
    ("POST", "/api/v1/inventory_device_headless_operation/{id}/cancel/"): (
        lambda w: {"status": "completed"},
        200,
        _cancelled_headless,
    ),
    ("POST", "/aggregates/maintenance/scheduler/jobs/orgId/{org_id}"): (
        lambda w: {"time_expression": "0 0 1 ? * TUE", "scheduler_type": "time-based", "job_id": FAKE_UUID},
        200,
        _created_job,
    ),
    ("PATCH", "/api/1.0/aggregates/maintenance-schedule/jobs/orgId/{org_id}/jobId/{job_id}"): (
        lambda w: {"active": False, "time_expression": "0 0 0 ? * SUN", "job_id": FAKE_UUID},
        200,
        _job,
    ),
}

WRITES = [(m, p) for p, m in OPERATIONS if m in {"POST", "PUT", "PATCH"}]


@pytest.fixture
def world(org: Org, other_org: Org) -> World:
    return build_world(org)


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_server_owned_fields_cannot_be_set(world: World, other_org: Org, method: str, path: str) -> None:
    assert (method, path) in CASES, f"{method} {path}: add it to CASES with the fields it must protect"
    make_body, status, holds = CASES[(method, path)]
    body = make_body(world)
    if isinstance(body, list):
        body = [{**hostile(other_org), **row} for row in body]
    else:
        body = {**hostile(other_org), **body}
    target = fill(path, path_parameters(path, world))

    response = getattr(world.org.admin, method.lower())(target, body)

    assert response.status_code == status, response.content
    holds(world, response)
