"""Running headless operations: due sweep, priority order, exactly-once, status sync, helpers."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection
from django.db.models import Count, QuerySet
from django.utils import timezone

from commands.choices import CommandState, Priority
from commands.models import CommandStatus
from operations import headless
from operations.models import HeadlessOperation, HeadlessStatus
from tests.conftest import add_device

C = CommandState
H = HeadlessStatus
URL = "/api/v1/inventory_device_headless_operation/"


def schedule(
    device: Any, when: dt.datetime, priority: int = Priority.NORMAL, **fields: Any
) -> HeadlessOperation:
    return HeadlessOperation.objects.create(
        tenant_id=device.tenant_id,
        device=device,
        operation_type=fields.pop("operation_type", "backup_configuration"),
        scheduled_at=when,
        priority=priority,
        parameters=fields.pop("parameters", {"n": 1}),
        **fields,
    )


def ago(seconds: float) -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=seconds)


def test_runs_only_what_is_due_as_an_internal_command(device):
    due = schedule(device.device, ago(1), parameters={"firmware_version": "2.1.3"})
    later = schedule(device.device, ago(-3600))

    assert headless.run_due() == 1

    due.refresh_from_db()
    later.refresh_from_db()
    assert due.status == H.PENDING and due.attempts == 1 and due.claimed_at is not None
    assert later.status == H.SCHEDULED and later.command_id is None
    command = CommandStatus.objects.get()
    assert due.command_id == command.pk
    assert command.request == due.id and command.is_internal
    assert command.command == "backup_configuration"
    assert command.arguments == {"firmware_version": "2.1.3"}
    assert command.state == C.QUEUED and command.device_id == device.device.pk
    assert headless.run_due() == 0  # nothing runs twice


def test_due_operations_run_in_priority_order_then_earliest(org, device):
    low = schedule(device.device, ago(50), Priority.LOW)
    normal = schedule(device.device, ago(40), Priority.NORMAL)
    late_critical = schedule(device.device, ago(10), Priority.CRITICAL)
    high = schedule(device.device, ago(30), Priority.HIGH)
    early_critical = schedule(device.device, ago(20), Priority.CRITICAL)
    expected = [early_critical.id, late_critical.id, high.id, normal.id, low.id]

    headless.run_due(batch_size=2)  # across several batches, too

    issued = list(CommandStatus.objects.order_by("id").values_list("request_ref", flat=True))
    assert issued == expected
    inbox = device.api.get("/v2/command-inbox/", {"device_id": "dev-1"}).json()["content"]["results"]
    assert [c["request"] for c in inbox] == expected
    assert [c["priority"] for c in inbox][:2] == ["critical", "critical"]


def test_a_crash_while_running_only_delays_the_run(device, monkeypatch):
    op = schedule(device.device, ago(1))

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("worker died")

    monkeypatch.setattr(headless, "issue_internal_command", broken)
    with pytest.raises(RuntimeError):
        headless.run_due()
    op.refresh_from_db()
    assert op.status == H.SCHEDULED and op.command_id is None and op.attempts == 0

    monkeypatch.undo()
    assert headless.run_due() == 1
    assert CommandStatus.objects.filter(request_ref=op.id).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_racing_sweeps_run_each_operation_exactly_once():
    from inventory.models import Tenant
    from inventory.services import create_device

    tenant = Tenant.objects.create(slug="race")
    devices = [create_device(tenant.pk, {"device_id": f"race-{i}"})[0] for i in range(5)]
    ops = [schedule(devices[i % 5], ago(i)) for i in range(300)]
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    counts: list[int] = []

    def sweep() -> None:
        try:
            start.wait()
            counts.append(headless.run_due(batch_size=25))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors
    assert sum(counts) == len(ops)
    per_op = dict(CommandStatus.objects.values_list("request_ref").order_by().annotate(n=Count("id")))
    assert per_op == {op.id: 1 for op in ops}
    assert not HeadlessOperation.objects.exclude(status=H.PENDING).exists()
    assert not HeadlessOperation.objects.filter(command=None).exists()


@pytest.mark.django_db(transaction=True)
def test_a_sweep_skips_rows_another_sweep_holds():
    """Two connections: while one sweep's transaction holds an operation, another sweep
    neither waits for it nor runs it; after the first commits there is nothing left to run."""
    from django.db import transaction

    from inventory.models import Tenant
    from inventory.services import create_device

    tenant = Tenant.objects.create(slug="hold")
    device = create_device(tenant.pk, {"device_id": "held"})[0]
    op = schedule(device, ago(5))
    holding, release = threading.Event(), threading.Event()
    result: dict[str, int] = {}

    def first() -> None:
        try:
            with transaction.atomic():
                result["first"] = headless._run_batch(timezone.now(), 10)
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(10)
    try:
        result["second"] = headless.run_due()
    finally:
        release.set()
        thread.join(10)
    assert result == {"first": 1, "second": 0}
    assert headless.run_due() == 0
    assert CommandStatus.objects.filter(request_ref=op.id).count() == 1


# --- status ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command_state", "expected"),
    [
        (C.QUEUED, H.PENDING),
        (C.SCHEDULED, H.PENDING),
        (C.INITIATED, H.RUNNING),
        (C.ACKNOWLEDGED, H.RUNNING),
        (C.IN_PROGRESS, H.RUNNING),
        (C.SUCCESS, H.COMPLETED),
        (C.FAILURE, H.FAILED),
        (C.TIMEOUT, H.FAILED),
        (C.CANCELLED, H.CANCELLED),
    ],
)
def test_status_follows_the_command(device, command_state, expected):
    op = schedule(device.device, ago(1))
    headless.run_due()
    op.refresh_from_db()
    CommandStatus.objects.filter(request_ref=op.id).update(state=command_state, reason="device said so")

    headless.sync_statuses(HeadlessOperation.objects.all())

    op.refresh_from_db()
    assert op.status == expected
    if expected in (H.FAILED, H.CANCELLED):
        assert op.reason == "device said so"


def test_status_never_moves_back(device):
    op = schedule(device.device, ago(1))
    headless.run_due()
    op.refresh_from_db()
    CommandStatus.objects.filter(request_ref=op.id).update(state=C.INITIATED)
    headless.sync_statuses(HeadlessOperation.objects.all())
    CommandStatus.objects.filter(request_ref=op.id).update(state=C.QUEUED)  # handed out again

    headless.sync_statuses(HeadlessOperation.objects.all())

    op.refresh_from_db()
    assert op.status == H.RUNNING
    HeadlessOperation.objects.filter(pk=op.pk).update(status=H.COMPLETED)
    CommandStatus.objects.filter(request_ref=op.id).update(state=C.FAILURE)
    headless.sync_statuses(HeadlessOperation.objects.all())
    op.refresh_from_db()
    assert op.status == H.COMPLETED


def test_sync_touches_only_the_given_operations(device):
    a, b = schedule(device.device, ago(2)), schedule(device.device, ago(1))
    headless.run_due()
    CommandStatus.objects.update(state=C.SUCCESS)

    assert headless.sync_statuses(HeadlessOperation.objects.filter(pk=a.pk)) == 1

    assert HeadlessOperation.objects.get(pk=a.pk).status == H.COMPLETED
    assert HeadlessOperation.objects.get(pk=b.pk).status == H.PENDING


def test_the_sweep_syncs_statuses_without_update_status(org, device):
    op = schedule(device.device, ago(1))
    headless.sweep()
    op.refresh_from_db()
    CommandStatus.objects.filter(request_ref=op.id).update(state=C.SUCCESS)

    assert headless.sweep() == {"ran": 0, "synced": 1}

    assert org.admin.get(URL, {"id": op.id}).json()["results"][0]["status"] == "completed"


def test_update_status_true_brings_the_listed_status_up_to_date(org, device):
    made = org.admin.post(URL, {"device_id": "dev-1", "operation_type": "reboot"}).json()
    headless.run_due()
    command = CommandStatus.objects.get(request_ref=made["id"])
    device.api.get("/v2/command-inbox/", {"device_id": "dev-1"})
    device.api.put(f"/commands/v0/status/{command.pk}/", {"state": "Command Acknowledged"})

    assert org.admin.get(URL, {"id": made["id"]}).json()["results"][0]["status"] == "pending"
    listed = org.admin.get(URL, {"id": made["id"], "update_status": "true"}).json()
    assert listed["results"][0]["status"] == "running"

    for state in ("Command In Progress", "Command Success"):
        device.api.put(f"/commands/v0/status/{command.pk}/", {"state": state})
    got = org.admin.get(f"{URL}{made['id']}/", {"update_status": "true"}).json()
    assert got["status"] == "completed"
    assert got["command_id"] == str(command.pk)


def test_update_status_fails_overdue_operations_and_times_out_their_command(org, device, settings):
    settings.HEADLESS_OVERDUE_SECONDS = 60
    stuck = schedule(device.device, ago(300))
    fresh = schedule(device.device, ago(1))
    headless.run_due()
    HeadlessOperation.objects.filter(pk=stuck.pk).update(claimed_at=ago(120))

    listed = org.admin.get(URL, {"update_status": "true"}).json()["results"]

    by_id = {r["id"]: r for r in listed}
    assert by_id[stuck.id]["status"] == "failed"
    assert "overdue" in by_id[stuck.id]["reason"]
    assert by_id[fresh.id]["status"] == "pending"
    assert CommandStatus.objects.get(request_ref=stuck.id).state == C.TIMEOUT
    assert CommandStatus.objects.get(request_ref=fresh.id).state == C.QUEUED


helper_calls: list[set[str]] = []


def record_helper(operations: QuerySet[HeadlessOperation]) -> None:
    """A custom helper: what a deployment would write to ask another system."""
    helper_calls.append(set(operations.values_list("id", flat=True)))
    operations.filter(status=H.SCHEDULED).update(reason="checked by the custom helper")


def count_helper(operations: QuerySet[HeadlessOperation]) -> None:
    helper_calls.append(set(operations.values_list("id", flat=True)))


def broken_helper(operations: QuerySet[HeadlessOperation]) -> None:
    operations.update(reason="half done")
    raise RuntimeError("the remote system is down")


def test_custom_helpers_run_over_exactly_the_returned_operations(org, device, settings):
    settings.HEADLESS_STATUS_HELPERS = [
        "operations.headless.update_from_commands",
        "tests.test_headless_runs.record_helper",
    ]
    helper_calls.clear()
    ops = [schedule(device.device, ago(-3600)) for _ in range(3)]

    org.admin.get(URL)
    assert helper_calls == []  # only on request

    page = org.admin.get(URL, {"update_status": "true", "limit": 2}).json()

    returned = {r["id"] for r in page["results"]}
    assert helper_calls == [returned] and len(returned) == 2
    assert {r["reason"] for r in page["results"]} == {"checked by the custom helper"}
    untouched = ({op.id for op in ops} - returned).pop()
    assert HeadlessOperation.objects.get(pk=untouched).reason == ""


def test_a_failing_helper_is_rolled_back_and_the_others_still_run(org, device, settings):
    settings.HEADLESS_STATUS_HELPERS = [
        "tests.test_headless_runs.record_helper",
        "tests.test_headless_runs.broken_helper",
        "tests.test_headless_runs.count_helper",
    ]
    helper_calls.clear()
    op = schedule(device.device, ago(-3600))

    resp = org.admin.get(URL, {"update_status": "1"})

    assert resp.status_code == 200
    assert resp.json()["results"][0]["reason"] == "checked by the custom helper"
    assert helper_calls == [{op.id}, {op.id}]


# --- admin --------------------------------------------------------------------------------------


def test_admin_lists_shows_and_cancels(device, admin_client):
    scheduled = schedule(device.device, ago(-3600))
    running = schedule(device.device, ago(1))
    headless.run_due()
    done = schedule(device.device, ago(-3600), status=H.COMPLETED)
    base = "/admin/operations/headlessoperation/"

    assert admin_client.get(base).status_code == 200
    assert admin_client.get(base, {"status__exact": "scheduled", "q": "dev-1"}).status_code == 200
    assert admin_client.get(f"{base}{scheduled.pk}/change/").status_code == 200

    resp = admin_client.post(
        base,
        {"action": "cancel", "_selected_action": [scheduled.pk, running.pk, done.pk]},
        follow=True,
    )

    assert resp.status_code == 200
    statuses = dict(HeadlessOperation.objects.values_list("id", "status"))
    assert statuses == {scheduled.pk: H.CANCELLED, running.pk: H.CANCELLED, done.pk: H.COMPLETED}
    assert CommandStatus.objects.get(request_ref=running.pk).state == C.CANCELLED


def test_another_tenants_device_never_gets_the_command(org, other_org):
    mine = add_device(org.tenant, "mine")
    theirs = add_device(other_org.tenant, "theirs")
    op = schedule(mine.device, ago(1))

    headless.run_due()

    assert CommandStatus.objects.get(request_ref=op.id).device_id == mine.device.pk
    assert theirs.api.get("/v2/command-inbox/", {"device_id": "theirs"}).json()["content"]["count"] == 0
