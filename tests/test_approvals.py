"""Four eyes for destructive work (issue 25, contract section 13), through the API.

The default policy holds a WIPE in WAITING_FOR_APPROVAL with nothing written; only an admin
principal other than the requester decides (each key is a principal of its own); approval
starts the fan-out as if the operation had just been created; denial and expiry end it; the
policy is per tenant and audited; a device threshold counts at creation; and the races (two
admins, approve against expiry, approve against cancel) end with exactly one outcome, one
event and one audit row, under threads on their own connections.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from commands.models import CommandStatus
from inventory.models import AuditEntry, WebhookEvent
from inventory.services import create_api_key
from inventory.webhooks.services import create_endpoint
from operations import approvals
from operations.choices import DESTRUCTIVE_TYPES, OperationState
from operations.models import Operation
from tests.conftest import Api, CeleryProcesses, Org, add_device, add_devices, wait_until
from tests.helpers import content, error

S = OperationState
OPS = "/v0/operations/"
POLICY = "/v0/approval-policy/"


def second_admin(org: Org, name: str = "second admin") -> Api:
    """Another admin key of the tenant: another principal, who may decide."""
    return Api(create_api_key(org.tenant, "admin", name)[1])


def wipe(org: Org, caller: Api | None = None, **data: Any) -> dict[str, Any]:
    if not org.tenant.devices.exists():
        add_device(org.tenant, "kiosk-1")
    body = {"operation_type": "WIPE", "operation_device_query": {"all": True}, **data}
    return dict(content((caller or org.admin).post(OPS, body), 201))


def subscribe(org: Org) -> None:
    """A webhook endpoint taking every event, so that events are recorded (a public address
    literal: the guard lets it through without DNS, and nothing here sends to it)."""
    create_endpoint(org.tenant.pk, "https://93.184.216.34/hooks", ["*"])


def events(org: Org, kind: str) -> list[dict[str, Any]]:
    return list(WebhookEvent.objects.filter(tenant=org.tenant, type=kind).values_list("data", flat=True))


def decisions(path: str) -> list[int]:
    """Status codes of the audit entries of requests to ``path``."""
    return list(AuditEntry.objects.filter(path=path).values_list("status_code", flat=True))


# --- the policy holds, and nothing happens --------------------------------------------------------


def test_the_default_policy_holds_a_wipe_with_nothing_resolved_or_written(org: Org) -> None:
    subscribe(org)
    add_devices(org.tenant, 3)

    held = wipe(org)

    assert (held["state"], held["state_code"]) == ("WAITING_FOR_APPROVAL", 140)
    assert held["approval"]["required"] is True
    assert held["approval"]["state"] == "WAITING"
    assert held["approval"]["requested_by"] == "admin"
    assert held["approval"]["decided_by"] is None and held["approval"]["decided_at"] is None
    assert held["approval"]["expires_at"] is not None
    assert [a["operation_state"] for a in held["operation_activity"]] == ["WAITING_FOR_APPROVAL"]
    assert held["operation_stats"]["device_operation_statuses_count"]["resolved_device_count"] == 0
    assert not CommandStatus.objects.filter(operation_id=held["id"]).exists()
    # ?state=140 lists what waits, and only that
    reboot = content(
        org.admin.post(OPS, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}), 201
    )
    assert reboot["state"] == "CREATED" and reboot["approval"]["required"] is False
    waiting = content(org.admin.get(OPS, {"state": "140"}))
    assert [row["id"] for row in waiting["results"]] == [held["id"]]
    assert content(org.admin.get(OPS, {"state": "WAITING_FOR_APPROVAL"}))["count"] == 1
    # the events say so
    [requested] = events(org, "operation.approval_requested")
    assert requested["id"] == held["id"] and requested["approval"]["state"] == "WAITING"


def test_every_destructive_type_is_held_by_default(org: Org) -> None:
    add_device(org.tenant, "kiosk-1")
    policy = content(org.admin.get(POLICY))
    assert policy == {
        "operation_types": [str(t) for t in DESTRUCTIVE_TYPES],
        "min_devices": None,
        "expires_after_hours": 72,
    }
    for kind in DESTRUCTIVE_TYPES:
        body = {"operation_type": str(kind), "operation_device_query": {"all": True}}
        assert content(org.operator.post(OPS, body), 201)["state"] == "WAITING_FOR_APPROVAL", kind


# --- who decides --------------------------------------------------------------------------------


def test_only_an_admin_other_than_the_requester_decides(org: Org, other_org: Org) -> None:
    held = wipe(org)
    approve = f"{OPS}{held['id']}/approve/"

    error(org.viewer.post(approve, {}), 403, "permission_denied")
    error(org.operator.post(approve, {}), 403, "permission_denied")
    own = error(org.admin.post(approve, {}), 403, "requester_cannot_decide")
    assert "another admin" in own["message"]
    error(org.admin.post(f"{OPS}{held['id']}/deny/", {"remark": "no"}), 403, "requester_cannot_decide")
    error(other_org.admin.post(approve, {}), 404, "not_found")
    # a second key with the same name is still another principal
    same_name = Api(create_api_key(org.tenant, "admin", "admin")[1])
    approved = content(same_name.post(approve, {"remark": "checked the list"}))

    assert approved["state"] == "CREATED"
    assert approved["approval"]["state"] == "APPROVED"
    assert approved["approval"]["decided_by"] == "admin"
    assert approved["approval"]["remark"] == "checked the list"
    assert approved["approval"]["decided_at"] is not None


def test_an_operator_request_is_approved_by_an_admin(org: Org) -> None:
    held = wipe(org, org.operator)
    assert held["approval"]["requested_by"] == "operator"

    approved = content(org.admin.post(f"{OPS}{held['id']}/approve/", {}))

    assert approved["approval"]["state"] == "APPROVED" and approved["state"] == "CREATED"
    assert [a["operation_state"] for a in approved["operation_activity"]] == [
        "WAITING_FOR_APPROVAL",
        "CREATED",
    ]


def test_deny_needs_a_remark_and_is_final(org: Org) -> None:
    subscribe(org)
    held = wipe(org, org.operator)
    deny = f"{OPS}{held['id']}/deny/"

    refused = error(org.admin.post(deny, {}), 400, "invalid")
    assert "remark" in refused["errors"]
    error(org.admin.post(deny, {"remark": "   "}), 400)
    denied = content(org.admin.post(deny, {"remark": "wrong store"}))

    assert (denied["state"], denied["state_code"]) == ("APPROVAL_DENIED", 150)
    assert denied["reason"] == "wrong store"
    assert denied["approval"]["state"] == "DENIED" and denied["approval"]["remark"] == "wrong store"
    assert not CommandStatus.objects.filter(operation_id=held["id"]).exists()
    # final: no second decision, no cancel, no pause
    error(second_admin(org).post(f"{OPS}{held['id']}/approve/", {}), 409, "not_waiting")
    error(org.admin.put(f"{OPS}{held['id']}/", {"state": "CANCELLED"}), 400, "invalid_transition")
    [event] = events(org, "operation.denied")
    assert event["approval"]["state"] == "DENIED"
    assert sorted(decisions(deny)) == [200, 400, 400]


def test_an_operation_that_needs_no_approval_cannot_be_approved(org: Org) -> None:
    add_device(org.tenant, "kiosk-1")
    reboot = content(
        org.operator.post(OPS, {"operation_type": "REBOOT", "operation_device_query": {"all": True}}), 201
    )
    error(org.admin.post(f"{OPS}{reboot['id']}/approve/", {}), 409, "not_waiting")


def test_a_waiting_operation_cannot_be_paused_and_may_be_withdrawn(org: Org) -> None:
    held = wipe(org)
    error(org.admin.put(f"{OPS}{held['id']}/", {"state": "PAUSED"}), 400, "invalid_transition")

    answer = org.admin.put(f"{OPS}{held['id']}/", {"state": "CANCELLED", "reason": "typo"})
    cancelled = content(answer)

    assert cancelled["state"] == "CANCELLED" and cancelled["approval"]["state"] == "WITHDRAWN"
    error(second_admin(org).post(f"{OPS}{held['id']}/approve/", {}), 409, "not_waiting")


# --- the policy ---------------------------------------------------------------------------------


def test_the_policy_is_per_tenant_admin_only_and_audited(org: Org, other_org: Org) -> None:
    error(org.operator.put(POLICY, {"operation_types": []}), 403)
    error(org.viewer.get(POLICY), 403)
    error(org.admin.put(POLICY, {"operation_types": ["WIPE", "EXPLODE"]}), 400)
    refused = error(org.admin.put(POLICY, {"operation_types": [], "min_devices": 0}), 400)
    assert "min_devices" in refused["errors"]
    refused = error(org.admin.put(POLICY, {"operation_types": [], "expires_after_hours": 0}), 400)
    assert "expires_after_hours" in refused["errors"]

    cleared = content(org.admin.put(POLICY, {"operation_types": []}))

    assert cleared == {"operation_types": [], "min_devices": None, "expires_after_hours": 72}
    assert content(org.admin.get(POLICY)) == cleared
    assert content(other_org.admin.get(POLICY))["operation_types"] == [str(t) for t in DESTRUCTIVE_TYPES]
    assert wipe(org)["state"] == "CREATED"
    assert wipe(other_org)["state"] == "WAITING_FOR_APPROVAL"
    audited = AuditEntry.objects.filter(path=POLICY, method="PUT", tenant=org.tenant)
    assert sorted(audited.values_list("status_code", flat=True)) == [200, 400, 400, 400, 403]


def test_a_threshold_counts_the_devices_at_creation(org: Org) -> None:
    content(org.admin.put(POLICY, {"operation_types": [], "min_devices": 3, "expires_after_hours": 2}))
    add_devices(org.tenant, 2)
    body = {"operation_type": "REBOOT", "operation_device_query": {"all": True}}

    assert content(org.operator.post(OPS, body), 201)["state"] == "CREATED"
    add_device(org.tenant, "third")
    held = content(org.operator.post(OPS, body), 201)

    assert held["state"] == "WAITING_FOR_APPROVAL"
    expires = dt.datetime.fromisoformat(held["approval"]["expires_at"])
    assert dt.timedelta(hours=1, minutes=59) < expires - timezone.now() <= dt.timedelta(hours=2)
    # a query that picks fewer devices is not held
    narrow = {"operation_type": "REBOOT", "operation_device_query": {"devices": ["third"]}}
    assert content(org.operator.post(OPS, narrow), 201)["state"] == "CREATED"


# --- expiry -------------------------------------------------------------------------------------


def _past_due(operation_id: str) -> None:
    """Make an approval's expiry lie in the past (what 72 hours of waiting would do)."""
    Operation.objects.filter(pk=operation_id).update(
        approval_expires_at=timezone.now() - dt.timedelta(seconds=1)
    )


def test_an_undecided_approval_expires_once(org: Org) -> None:
    subscribe(org)
    held = wipe(org)
    kept = wipe(org)
    _past_due(held["id"])

    assert approvals.expire_due() == 1
    assert approvals.expire_due() == 0

    expired = content(org.admin.get(f"{OPS}{held['id']}/"))
    assert expired["state"] == "APPROVAL_DENIED" and expired["reason"] == "approval expired"
    assert expired["approval"]["state"] == "EXPIRED" and expired["approval"]["decided_by"] == "system"
    assert content(org.admin.get(f"{OPS}{kept['id']}/"))["state"] == "WAITING_FOR_APPROVAL"
    [event] = events(org, "operation.denied")
    assert event["id"] == held["id"] and event["reason"] == "approval expired"
    entry = AuditEntry.objects.get(object_id=held["id"], method="SYSTEM")
    assert (entry.actor_kind, entry.actor, entry.tenant_id) == ("system", "system", org.tenant.pk)


def test_an_approval_after_the_expiry_is_refused_and_expires_it(org: Org) -> None:
    held = wipe(org)
    _past_due(held["id"])

    error(second_admin(org).post(f"{OPS}{held['id']}/approve/", {}), 409, "approval_expired")

    assert content(org.admin.get(f"{OPS}{held['id']}/"))["approval"]["state"] == "EXPIRED"
    assert approvals.expire_due() == 0


def test_the_beat_expires_and_a_worker_fans_out_the_approved(
    org: Org, celery_processes: CeleryProcesses, settings: Any
) -> None:
    """With the real beat and worker: the sweep in the beat schedule expires what waited too
    long, and an approved WINDOW operation and an IMMEDIATE one go on as if just created."""
    assert settings.CELERY_BEAT_SCHEDULE["expire-approvals"]["task"] == "operations.tasks.expire_approvals"
    devices = add_devices(org.tenant, 2)
    late = wipe(org)
    _past_due(late["id"])
    now = timezone.now()
    window = {
        "schedule_type": "WINDOW",
        "schedule_args": {
            "start_datetime": (now + dt.timedelta(days=1)).isoformat(),
            "end_datetime": (now + dt.timedelta(days=2)).isoformat(),
        },
    }
    windowed = wipe(org, org.operator, **window)
    immediate = wipe(org, org.operator)
    assert not CommandStatus.objects.filter(operation__tenant=org.tenant).exists()
    celery_processes.worker()
    celery_processes.beat()
    approver = org.admin

    content(approver.post(f"{OPS}{windowed['id']}/approve/", {}))
    content(approver.post(f"{OPS}{immediate['id']}/approve/", {}))

    def state(operation_id: str) -> int:
        return Operation.objects.get(pk=operation_id).state

    wait_until(lambda: state(immediate["id"]) == S.DISPATCHED, timeout=60, what="the approved one dispatched")
    wait_until(lambda: state(windowed["id"]) == S.SCHEDULED, timeout=60, what="the approved WINDOW scheduled")
    wait_until(lambda: state(late["id"]) == S.APPROVAL_DENIED, timeout=60, what="the beat's expiry")
    assert CommandStatus.objects.filter(operation_id=immediate["id"]).count() == len(devices)
    assert CommandStatus.objects.filter(operation_id=windowed["id"]).count() == len(devices)
    assert not CommandStatus.objects.filter(operation_id=late["id"]).exists()
    assert Operation.objects.get(pk=late["id"]).reason == "approval expired"


# --- races ----------------------------------------------------------------------------------------


def race(*calls: Callable[[], Any]) -> list[Any]:
    """Run ``calls`` at once on threads of their own (each with its own database connection),
    started together by a barrier; their results in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    failures: list[BaseException] = []

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as failure:  # reported to the test below
            failures.append(failure)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    return results


ROUNDS = 5


@pytest.mark.django_db(transaction=True)
def test_two_admins_approving_at_once_one_wins(org: Org) -> None:
    subscribe(org)
    admins = [second_admin(org, "alice"), second_admin(org, "bob")]
    for _ in range(ROUNDS):
        held = wipe(org, org.operator)
        path = f"{OPS}{held['id']}/approve/"

        answers = race(*(functools.partial(api.post, path, {}) for api in admins))

        assert sorted(a.status_code for a in answers) == [200, 409], [a.content for a in answers]
        loser = next(a for a in answers if a.status_code == 409)
        assert loser.json()["error_code"] == "not_waiting"
        assert Operation.objects.get(pk=held["id"]).state == S.CREATED
        approved = [e for e in events(org, "operation.approved") if e["id"] == held["id"]]
        assert len(approved) == 1
        assert sorted(decisions(path)) == [200, 409]


@pytest.mark.django_db(transaction=True)
def test_an_approval_racing_the_expiry_has_one_outcome(org: Org) -> None:
    subscribe(org)
    approver = second_admin(org)
    outcomes = set()
    for _ in range(ROUNDS):
        held = wipe(org, org.operator)
        path = f"{OPS}{held['id']}/approve/"
        # the sweep runs as if its expiry had passed, while the admin approves before it
        later = timezone.now() + dt.timedelta(days=4)

        answer, expired = race(
            functools.partial(approver.post, path, {}), functools.partial(approvals.expire, held["id"], later)
        )

        row = Operation.objects.get(pk=held["id"])
        approved = [e for e in events(org, "operation.approved") if e["id"] == held["id"]]
        denied = [e for e in events(org, "operation.denied") if e["id"] == held["id"]]
        if answer.status_code == 200:
            assert not expired and row.state == S.CREATED and row.approval_state == "APPROVED"
            assert (len(approved), len(denied)) == (1, 0)
            assert not AuditEntry.objects.filter(object_id=held["id"], actor_kind="system").exists()
        else:
            assert answer.status_code == 409 and expired
            assert row.state == S.APPROVAL_DENIED and row.approval_state == "EXPIRED"
            assert (len(approved), len(denied)) == (0, 1)
            assert AuditEntry.objects.filter(object_id=held["id"], actor_kind="system").count() == 1
        outcomes.add(answer.status_code)
    assert outcomes <= {200, 409}


@pytest.mark.django_db(transaction=True)
def test_an_approval_racing_a_cancel_has_one_outcome(org: Org) -> None:
    subscribe(org)
    approver = second_admin(org)
    for _ in range(ROUNDS):
        held = wipe(org, org.operator)
        path = f"{OPS}{held['id']}/approve/"

        approve, cancel = race(
            functools.partial(approver.post, path, {}),
            functools.partial(org.operator.put, f"{OPS}{held['id']}/", {"state": "CANCELLED"}),
        )

        row = Operation.objects.get(pk=held["id"])
        approved = [e for e in events(org, "operation.approved") if e["id"] == held["id"]]
        assert row.state == S.CANCELLED and cancel.status_code == 200, cancel.content
        if approve.status_code == 200:  # approved first, then cancelled: both happened, in order
            assert row.approval_state == "APPROVED" and len(approved) == 1
            assert decisions(path) == [200]
        else:  # cancelled first: nothing to approve any more
            assert approve.status_code == 409 and approve.json()["error_code"] == "not_waiting"
            assert row.approval_state == "WAITING" and approved == []
            assert content(org.admin.get(f"{OPS}{held['id']}/"))["approval"]["state"] == "WITHDRAWN"
            assert decisions(path) == [409]


def test_a_webhook_subscribes_to_the_approval_events_by_name(org: Org) -> None:
    names = ["operation.approval_requested", "operation.approved", "operation.denied"]
    endpoint = content(
        org.admin.post("/v0/webhooks/", {"url": "https://93.184.216.34/x", "events": names}), 201
    )
    assert endpoint["events"] == names
    held = wipe(org, org.operator)

    content(org.admin.post(f"{OPS}{held['id']}/approve/", {}))

    sent = WebhookEvent.objects.filter(tenant=org.tenant).values_list("type", flat=True)
    assert sorted(sent) == ["operation.approval_requested", "operation.approved"]


def test_no_operator_move_but_a_stop_takes_an_operation_out_of_waiting(org: Org) -> None:
    """Review of the merges: PUT SCHEDULED (a WINDOW's way back) moved a waiting WIPE on to
    SCHEDULED with no second admin. Only approve and deny move it on; a stop withdraws it."""
    start = timezone.now() + dt.timedelta(hours=1)
    window = {
        "start_datetime": start.isoformat(),
        "end_datetime": (start + dt.timedelta(hours=2)).isoformat(),
        "time_type": "console",
    }
    created = wipe(org, schedule_type="WINDOW", schedule_args=window)
    url = f"/v0/operations/{created['id']}/"

    for state in ("SCHEDULED", "PAUSED"):
        body = error(org.admin.put(url, {"state": state}), 400, "invalid_transition")
        assert "waits for approval" in body["errors"]["state"][0]
    assert Operation.objects.get(pk=created["id"]).state == OperationState.WAITING_FOR_APPROVAL
    assert content(org.admin.put(url, {"state": "CANCELLED"}))["state"] == "CANCELLED"
